import { AUDIO_BACKLOG_MS, type ActorContext, type AsyncQueue, type SessionActor } from '@va/actor';
import { FrameClock } from '@va/audio';
import { channels, LIMITS } from '@va/protocol';
import type { AudioChunk, STT, TranscriptEvent } from '@va/providers';
import { ATTR, context, SPAN, startStageSpan, trace, traceText, type Context } from '@va/telemetry';

export const STAGE = 'stt';
/** After a provider failure, wait this long before listening again (the session keeps going). */
const RESTART_DELAY_MS = 500;
/** Audio-time changes of the turn context remembered for late finals (besides the one-minute window). */
const MAX_CONTEXTS = 256;

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
 * wrong rate is refused with an error event; a provider failure is reported and the stream restarts.
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
    // The gateway stamps each frame with the open turn's root span. Words belong to the turn their audio was
    // part of — not to whatever frame is newest when a slow final arrives — so contexts are kept by audio time.
    const contexts: { fromMs: number; context: Context }[] = [];
    let latest: Context = context.active();
    let latestSpan: string | undefined;
    const contextAt = (ms: number): Context => {
      for (let i = contexts.length - 1; i >= 0; i--) if (contexts[i]!.fromMs <= ms) return contexts[i]!.context;
      return latest;
    };
    // Audio clock → wall clock, from the newest frame (frames arrive in real time).
    const clock = new FrameClock();

    ctx.subscribeAudio('in', (frame, meta) => {
      if (frame.sampleRate !== ctx.config.sampleRate) {
        ctx.rejectAudio(meta, `stt: frame at ${frame.sampleRate} Hz, session is ${ctx.config.sampleRate} Hz`);
        return;
      }
      const spanId = trace.getSpanContext(meta.context)?.spanId;
      if (spanId !== latestSpan || contexts.length === 0) {
        latestSpan = spanId;
        latest = meta.context;
        contexts.push({ fromMs: frame.tsMs, context: meta.context });
        // A minute of changes is plenty: a final never comes that late (and a clock that never moves on must not
        // keep every change).
        while (contexts.length > 1 && (contexts[0]!.fromMs < frame.tsMs - 60_000 || contexts.length > MAX_CONTEXTS)) {
          contexts.shift();
        }
      }
      clock.observe(frame.tsMs, frame.samples.length, frame.sampleRate);
      frames.push({ samples: frame.samples, sampleRate: frame.sampleRate, tsMs: frame.tsMs });
    });

    const publish = ({ servedBy, ...ev }: TranscriptEvent) => {
      const text = ev.text.slice(0, LIMITS.textChars);
      // The context of the last frame of these words (frames are 20 ms; the end is exclusive).
      const turnContext = contextAt(Math.max(ev.startMs, ev.endMs - 20));
      ctx.publish(
        channels.transcript,
        { ...ev, text, endMs: Math.max(ev.endMs, ev.startMs) },
        { context: turnContext },
      );
      if (!ev.final || text.trim() === '') return;
      // One span per utterance, from its first word on the audio clock to the final transcript.
      const span = startStageSpan(SPAN.sttTranscribe, {
        parent: turnContext,
        sessionId: ctx.sessionId,
        stage: STAGE,
        startTime: new Date(Math.min(clock.wallOf(ev.startMs), Date.now())),
        attributes: {
          [ATTR.provider]: servedBy?.provider ?? stt.provider,
          ...(servedBy ? { [ATTR.fallback]: servedBy.fallback } : {}),
          [ATTR.finalDelayMs]: Math.round(Date.now() - clock.wallOf(ev.endMs)),
        },
      });
      if (traceText()) span.setAttribute(ATTR.text, text);
      span.end();
    };

    const listen = async () => {
      while (!ctx.signal.aborted) {
        try {
          for await (const ev of stt.transcribe(frames, ctx.signal)) publish(ev);
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
          await new Promise((r) => setTimeout(r, RESTART_DELAY_MS));
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
