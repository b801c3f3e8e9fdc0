import type { ActorContext, SessionActor } from '@va/actor';
import { channels, RESPONDER_SOURCES } from '@va/protocol';
import type { SpeechChunk, TTS } from '@va/providers';
import { ATTR, counter, METRIC } from '@va/telemetry';
import { SessionSpeaker, TTS_DEFAULTS, type SessionSpeakerIo, type TtsActorOptions } from './session-speaker.js';
import { STAGE } from './turn-speaker.js';

export { STAGE } from './turn-speaker.js';
export { MAX_SPOKEN_CHARS, TTS_DEFAULTS, type TtsActorOptions } from './session-speaker.js';

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
      turnSignal: (turnId) => ctx.turnSignal(turnId),
      endTurn: (turnId) => ctx.endTurn(turnId),
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
    for (const source of RESPONDER_SOURCES) {
      const channel = source === 'fast' ? channels.replyFast : channels.replyDeep;
      ctx.subscribe(channel, (m, meta) => voice.reply(source, m, meta.context));
    }
    return { stop: () => voice.stop() };
  };
}
