import type { ActorContext, SessionActor } from '@va/actor';
import { traceFields, traceFromFields } from '@va/bus';
import {
  channels,
  RESPONDER_SOURCES,
  sessionRequests,
  type Reply,
  type ReplyReplayReply,
  type ResponderSource,
  type SpeechReplayReply,
  type SpeechReplayRequest,
} from '@va/protocol';
import type { SpeechChunk, TTS } from '@va/providers';
import { ATTR, counter, METRIC, type Context } from '@va/telemetry';
import { SessionSpeaker, TTS_DEFAULTS, type SessionSpeakerIo, type TtsActorOptions } from './session-speaker.js';
import { STAGE, type SpeechProgress } from './turn-speaker.js';

export { STAGE } from './turn-speaker.js';
export { MAX_SPOKEN_CHARS, TTS_DEFAULTS, type TtsActorOptions } from './session-speaker.js';

/** Where the turn being spoken is kept for a successor (va_state). */
const SPEAKING_STATE = 'speaking';
/** How long a new owner waits for the responders' replies so far before going on with the live deltas alone. */
const REPLY_REPLAY_TIMEOUT_MS = 500;
/** How often, at most, how far the turn being spoken has gone out is written. */
const SPEAKING_SAVE_MS = 200;

/** The queue name of dropped text in `va.messages.dropped`. */
const TEXT_QUEUE = 'tts.text';

/** Speaks `text` once, whole: a filler phrase (in `voice`, or the adapter's own). */
export async function synthesizeAll(tts: TTS, text: string, voice?: string): Promise<SpeechChunk[]> {
  const chunks: SpeechChunk[] = [];
  const input = (async function* () {
    yield text;
  })();
  for await (const c of tts.synthesize(input, new AbortController().signal, voice ? { voice } : undefined)) {
    chunks.push(c);
  }
  return chunks;
}

/**
 * Wires one session's voice (session-speaker.ts, turn-speaker.ts) to the bus: reply deltas, turn and VAD events in;
 * agent audio, `speech` messages, errors and metrics out.
 */
export function ttsActor(tts: TTS, options: Partial<TtsActorOptions> = {}) {
  const opts: TtsActorOptions = { ...TTS_DEFAULTS, ...options };
  // Fillers are the same few phrases for every session of this instance: synthesized once per voice.
  const fillerAudio = new Map<string, Promise<SpeechChunk[]>>();
  const fillerChunks = (text: string, voice?: string): Promise<SpeechChunk[]> => {
    const key = `${voice ?? ''}\u0000${text}`;
    let audio = fillerAudio.get(key);
    if (!audio) {
      audio = synthesizeAll(tts, text, voice);
      // A failed synthesis is retried next time rather than cached.
      audio.catch(() => fillerAudio.delete(key));
      fillerAudio.set(key, audio);
    }
    return audio;
  };

  return (ctx: ActorContext): SessionActor => {
    // Connect now (a provider's WebSocket, a TLS connection), not when the first answer is ready.
    void tts.prewarm?.();
    for (const text of opts.fillers) {
      fillerChunks(text, ctx.config.agent?.voice).catch((err: unknown) =>
        ctx.log.warn({ err, text }, 'filler synthesis failed'),
      );
    }
    // How far the turn being spoken has gone out (va_state), for the instance that takes the session over.
    let speaking: string | undefined;
    let unsaved: { turnId: string; sent: SpeechProgress; context: Context } | undefined;
    let saveTimer: NodeJS.Timeout | undefined;
    const save = (turnId: string, sent: SpeechProgress, context: Context) =>
      ctx.state.keep(SPEAKING_STATE, { turnId, sent, trace: traceFields(context) } satisfies SpeakingState);
    const io: SessionSpeakerIo = {
      sessionId: ctx.sessionId,
      sampleRate: ctx.config.sampleRate,
      audio: (frame, context) => ctx.publishAudio('out', frame, { context }),
      speech: (done, context) => ctx.publish(channels.speech, done, { context }),
      failed: (turnId, err) => {
        ctx.log.error({ err, turnId }, 'synthesis failed');
        ctx.bus.publishError(
          channels.speech.subject(ctx.sessionId),
          'provider-failed',
          `${tts.provider}: ${String(err)}`,
        );
      },
      filler: (turnId, text, err) => {
        if (err !== undefined) return ctx.log.warn({ err, turnId }, 'no filler: synthesis failed');
        counter(METRIC.fillers).add(1, { [ATTR.stage]: STAGE });
        ctx.log.info({ turnId, text }, 'answer late: filler spoken');
      },
      // Written at most every SPEAKING_SAVE_MS (a provider may report progress every frame): a successor repeats
      // at most that much.
      progress: (turnId, sent, context) => {
        // A turn's first progress is written at once: a successor then knows the turn even if this dies now.
        if (speaking !== turnId) {
          speaking = turnId;
          save(turnId, sent, context);
          return;
        }
        unsaved = { turnId, sent, context };
        saveTimer ??= setTimeout(() => {
          saveTimer = undefined;
          if (unsaved) save(unsaved.turnId, unsaved.sent, unsaved.context);
          unsaved = undefined;
        }, SPEAKING_SAVE_MS);
      },
      turnSignal: (turnId) => ctx.turnSignal(turnId),
      endTurn: (turnId) => {
        ctx.endTurn(turnId);
        if (speaking !== turnId) return;
        speaking = undefined;
        unsaved = undefined;
        ctx.state.drop(SPEAKING_STATE);
      },
      track: (work) => void ctx.track(work),
      textDropped: (source) =>
        ctx.dropped(TEXT_QUEUE, 'too-long', source === 'fast' ? channels.replyFast.name : channels.replyDeep.name),
      fillerAudio: fillerChunks,
    };
    const voice = new SessionSpeaker(tts, opts, io);
    // The agent's voice, and a handoff's (the new agent speaks from its first reply on).
    voice.voice = ctx.config.agent?.voice;
    ctx.subscribe(channels.agent, (change) => {
      voice.voice = change.agent.voice;
    });
    ctx.subscribe(channels.turn, (t) => voice.turn(t));
    ctx.subscribe(channels.vad, (v) => voice.vad(v));
    // Taken over: replies wait until the turn in flight is resumed (its deltas so far first, then these).
    let held: [ResponderSource, Reply, Context][] | undefined = ctx.reclaimed ? [] : undefined;
    for (const source of RESPONDER_SOURCES) {
      const channel = source === 'fast' ? channels.replyFast : channels.replyDeep;
      ctx.subscribe(channel, (m, meta) => {
        if (held) held.push([source, m, meta.context]);
        else voice.reply(source, m, meta.context);
      });
    }
    ctx.serve(sessionRequests.speechReplay, (req, meta) => replaySpeech(ctx, voice, req, meta.context));
    if (ctx.reclaimed) {
      void ctx.track(
        resumeSpeaking(ctx, voice).finally(() => {
          for (const [source, m, context] of held ?? []) voice.reply(source, m, context);
          held = undefined;
        }),
      );
    }
    return {
      stop: () => {
        clearTimeout(saveTimer);
        voice.stop();
      },
    };
  };
}

/** The turn being spoken, as far as its audio went out (va_state). */
interface SpeakingState {
  turnId: string;
  sent: SpeechProgress;
  /** W3C trace context of the turn, so the successor's spans join its trace. */
  trace: Record<string, string>;
}

/**
 * Taken over from an instance that died speaking a turn: asks both responders for their reply so far and speaks
 * on from where the predecessor's audio stopped (the sentence it was in is said again, whole), so the user hears
 * the whole answer once. Without the replies (a responder gone too), the turn goes on with the live deltas alone.
 */
async function resumeSpeaking(ctx: ActorContext, voice: SessionSpeaker): Promise<void> {
  const saved = await ctx.state.get<SpeakingState>(SPEAKING_STATE).catch(() => undefined);
  if (!saved) return ctx.log.info('taken over with no turn being spoken');
  if (ctx.isCancelled(saved.turnId)) return;
  try {
    const replies = await repliesSoFar(ctx, saved.turnId);
    if (ctx.signal.aborted || ctx.isCancelled(saved.turnId)) return;
    voice.resume(saved.turnId, saved.sent, replies, traceFromFields(saved.trace));
    counter(METRIC.ttsResumed).add(1, { [ATTR.stage]: STAGE });
    ctx.log.info({ turnId: saved.turnId, sentTo: saved.sent.sentTo }, 'resumed the turn where its audio stopped');
  } catch (err) {
    ctx.log.warn({ err: String(err), turnId: saved.turnId }, 'turn not resumed: no reply so far from the responders');
  }
}

/** Both responders' reply to a turn so far (each keeps its latest turns'). */
async function repliesSoFar(ctx: ActorContext, turnId: string): Promise<Record<ResponderSource, ReplyReplayReply>> {
  const ask = (ch: typeof sessionRequests.replyFastReplay | typeof sessionRequests.replyDeepReplay) =>
    ctx.request(ch, { turnId }, { timeoutMs: REPLY_REPLAY_TIMEOUT_MS });
  const [fast, deep] = await Promise.all([ask(sessionRequests.replyFastReplay), ask(sessionRequests.replyDeepReplay)]);
  return { fast, deep };
}

/**
 * A gateway took the session up after the one playing `turnId` died (with what it held in its playout buffer):
 * the turn is spoken again from what was heard of it, if it is still the newest here.
 */
async function replaySpeech(
  ctx: ActorContext,
  voice: SessionSpeaker,
  { turnId, from }: SpeechReplayRequest,
  context: Context,
): Promise<SpeechReplayReply> {
  if (ctx.isCancelled(turnId)) return { replaying: false };
  const replies = await repliesSoFar(ctx, turnId).catch((err: unknown) => {
    ctx.log.warn({ err: String(err), turnId }, 'turn not replayed: no reply so far from the responders');
    return undefined;
  });
  if (!replies || ctx.signal.aborted || ctx.isCancelled(turnId)) return { replaying: false };
  const replaying = voice.replay(turnId, from, replies, context);
  if (replaying) {
    counter(METRIC.ttsReplayed).add(1, { [ATTR.stage]: STAGE });
    ctx.log.info({ turnId, from }, 'turn spoken again from what was heard (its gateway died)');
  }
  return { replaying };
}
