// A custom deep responder: the stage `deep-responder` of the protocol, answering from a fixed FAQ instead of a
// model (docs/custom-stage.md). main.ts runs it: `node dist/main.js` (NATS_URL from env).
import type { ActorContext } from '@va/actor';
import { channels, type Turn } from '@va/protocol';

/** Questions it knows, by the words that give them away. */
const FAQ: { words: RegExp; answer: string }[] = [
  { words: /\b(open|opening|hours|close|closing)\b/i, answer: 'We are open every evening from six to eleven.' },
  { words: /\b(where|address|find you)\b/i, answer: 'We are at 12 Quai des Fleurs, by the river.' },
  { words: /\b(book|booking|table|reserve|reservation)\b/i, answer: 'Happy to book a table. For how many people?' },
];
const FALLBACK = 'I can tell you our opening hours, where we are, or book you a table.';

export function answerFor(text: string): string {
  return FAQ.find((q) => q.words.test(text))?.answer ?? FALLBACK;
}

/** One session: every committed user turn gets its answer on reply.deep, as the protocol says a deep responder does. */
export function faqActor(ctx: ActorContext) {
  ctx.subscribe(channels.turn, (turn: Turn, meta) => {
    // An agent turn (a greeting) is said as written; a preview waits for its commit (`end`).
    const text = turn.kind === 'agent' ? turn.text : turn.kind === 'end' ? answerFor(turn.text) : undefined;
    if (!text || ctx.isCancelled(turn.turnId)) return;
    // Words a few at a time, as a model would stream them: tts starts speaking on the first.
    const words = text.split(/(?<=\s)/);
    words.forEach((delta, seq) => {
      const done = seq === words.length - 1;
      ctx.publish(channels.replyDeep, { turnId: turn.turnId, seq, delta, done }, { context: meta.context });
    });
    ctx.log.info({ turnId: turn.turnId }, 'answered from the FAQ');
  });
  return {};
}
