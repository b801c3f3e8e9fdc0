import { AUDIO_BACKLOG_MS, type ActorContext, type SessionActor } from '@va/actor';
import type { AsyncQueue } from '@va/stream';
import { channels, sessionRequests } from '@va/protocol';
import type { AudioChunk, STT } from '@va/providers';
import { ATTR, SPAN, startStageSpan, traceText } from '@va/telemetry';
import { replayChunks, SessionHearing, type Recognised } from './hearing.js';

export const STAGE = 'stt';
/** After a provider failure, wait this long before listening again (the session keeps going). */
const RESTART_DELAY_MS = 500;
/** Where the audio already turned into final words ends (va_state): a new owner re-hears from there. */
const HEARD_STATE = 'heard';
interface HeardState {
  finalUpToMs: number;
}
/** How long a new owner waits for the gateway's replay of what it missed before listening on without it. */
const REPLAY_TIMEOUT_MS = 1_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface SttActorOptions {
  /**
   * Audio (ms) that may wait for a recogniser slower than real time before the oldest is dropped
   * (`va.audio.dropped`, reason `behind`); default AUDIO_BACKLOG_MS.
   */
  maxBufferedMs: number;
}

/** The name of the recogniser's input queue in `ActorContext.queueStats()`. */
export const FRAMES_QUEUE = 'stt.frames';

/**
 * One session's recogniser: audio.in frames stream into the provider, transcripts stream out. A frame at the
 * wrong rate is refused with an error event; a provider failure is reported and the stream restarts. What is
 * heard and which turn it belongs to is hearing.ts; this wires it and the recogniser to the bus.
 */
export function sttActor(makeStt: () => Promise<STT>, options: Partial<SttActorOptions> = {}) {
  const maxBufferedMs = options.maxBufferedMs ?? AUDIO_BACKLOG_MS;
  return async (ctx: ActorContext): Promise<SessionActor> => {
    const stt = await makeStt();
    // Connect now, not when the user first speaks.
    void stt.prewarm?.();
    // Frames wait here for the recogniser; one slower than real time loses the oldest, not the process's memory.
    const newFrames = (): AsyncQueue<AudioChunk> => ctx.audioQueue<AudioChunk>(FRAMES_QUEUE, maxBufferedMs);
    let frames = newFrames();
    const hearing = new SessionHearing(
      ctx.reclaimed,
      (chunk) => frames.push(chunk),
      () => ctx.dropped(FRAMES_QUEUE, 'behind'),
    );

    ctx.subscribeAudio('in', (frame, meta) => {
      if (frame.sampleRate !== ctx.config.sampleRate) {
        ctx.rejectAudio(meta, `stt: frame at ${frame.sampleRate} Hz, session is ${ctx.config.sampleRate} Hz`);
        return;
      }
      hearing.frame(
        { samples: frame.samples, sampleRate: frame.sampleRate, tsMs: frame.tsMs },
        frame.seq,
        meta.context,
      );
    });

    if (hearing.phase === 'catching-up') {
      void ctx.track(catchUp(ctx, hearing, () => frames, maxBufferedMs));
    }

    /** The newest finals, for a turn-detector instance that takes the session over (`transcript.replay`). */
    ctx.serve(sessionRequests.transcriptReplay, ({ afterMs }) => ({ finals: hearing.finalsAfter(afterMs) }));

    const publish = transcriptPublisher(ctx, hearing);

    const listen = async () => {
      while (!ctx.signal.aborted) {
        try {
          for await (const ev of stt.transcribe(frames, ctx.signal)) {
            publish(hearing.recognised(ev), ev.servedBy ?? { provider: stt.provider });
          }
          if (!ctx.signal.aborted) frames = newFrames();
        } catch (err) {
          if (ctx.signal.aborted) return;
          ctx.log.error({ err }, 'stt provider failed; restarting');
          ctx.bus.publishError(
            channels.transcript.subject(ctx.sessionId),
            'provider-failed',
            `${stt.provider}: ${String(err)}`,
          );
          frames = newFrames();
          await sleep(RESTART_DELAY_MS);
        }
      }
    };
    const listening = listen();

    return {
      stop: async () => {
        frames.end();
        await listening;
        // A recogniser holds a decoder (a worker thread and its model) or a connection: free it with the session.
        await (stt as STT & { close?: () => Promise<void> }).close?.().catch((err: unknown) => {
          ctx.log.warn({ err }, 'stt provider close failed');
        });
      },
    };
  };
}

/** Taken over from an instance that died: what it had not finished hearing goes to the recogniser first. */
async function catchUp(
  ctx: ActorContext,
  hearing: SessionHearing,
  frames: () => AsyncQueue<AudioChunk>,
  maxBufferedMs: number,
): Promise<void> {
  // Paced to the recogniser: the bounded queue would drop the oldest of a burst.
  const feed = async (chunk: AudioChunk) => {
    while (frames().stats.weight > maxBufferedMs / 2 && !ctx.signal.aborted) await sleep(10);
    frames().push(chunk);
  };
  const saved = await ctx.state.get<HeardState>(HEARD_STATE).catch(() => undefined);
  hearing.finalUpToMs = saved?.finalUpToMs ?? 0;
  let replay: { chunks: AudioChunk[]; nextSeq: number } | undefined;
  try {
    const r = await ctx.request(
      sessionRequests.audioReplay,
      { fromMs: hearing.finalUpToMs },
      { timeoutMs: REPLAY_TIMEOUT_MS },
    );
    if (r.sampleRate !== ctx.config.sampleRate) throw new Error(`replay at ${r.sampleRate} Hz`);
    replay = { chunks: replayChunks(r.pcm, r.sampleRate, r.fromMs), nextSeq: r.nextSeq };
    const ms = replay.chunks.reduce((n, c) => n + (c.samples.length * 1000) / r.sampleRate, 0);
    ctx.log.info({ fromMs: r.fromMs, ms: Math.round(ms) }, 'replayed audio the previous owner had not finished');
  } catch (err) {
    ctx.log.warn(
      { err: String(err), fromMs: hearing.finalUpToMs },
      'no replay from the gateway: listening on from now',
    );
  }
  await hearing.catchUp(replay, feed, ctx.signal);
}

/** Sends what was recognised; a final also saves how far the words go and gets its span. */
function transcriptPublisher(ctx: ActorContext, hearing: SessionHearing) {
  return ({ transcript, context, final }: Recognised, servedBy: { provider: string; fallback?: boolean }): void => {
    ctx.publish(channels.transcript, transcript, { context });
    if (!final) return;
    if (final.advanced) ctx.state.keep(HEARD_STATE, { finalUpToMs: hearing.finalUpToMs } satisfies HeardState);
    // One span per utterance, from its first word on the audio clock to the final transcript.
    const span = startStageSpan(SPAN.sttTranscribe, {
      parent: context,
      sessionId: ctx.sessionId,
      stage: STAGE,
      startTime: new Date(final.startWall),
      attributes: {
        [ATTR.provider]: servedBy.provider,
        ...(servedBy.fallback !== undefined ? { [ATTR.fallback]: servedBy.fallback } : {}),
        [ATTR.finalDelayMs]: final.delayMs,
      },
    });
    if (traceText()) span.setAttribute(ATTR.text, transcript.text);
    span.end();
  };
}
