import { AUDIO_BACKLOG_MS, type ActorContext, type AsyncQueue, type SessionActor } from '@va/actor';
import { FrameClock } from '@va/audio';
import { channels, LIMITS, sessionRequests, TRANSCRIPT_REPLAY_MAX, type Transcript } from '@va/protocol';
import type { AudioChunk, STT, TranscriptEvent } from '@va/providers';
import { ATTR, context, SPAN, startStageSpan, trace, traceText, type Context } from '@va/telemetry';

export const STAGE = 'stt';
/** After a provider failure, wait this long before listening again (the session keeps going). */
const RESTART_DELAY_MS = 500;
/** Audio-time changes of the turn context remembered for late finals (besides the one-minute window). */
const MAX_CONTEXTS = 256;
/** Where the audio already turned into final words ends (va_state): a new owner re-hears from there. */
const HEARD_STATE = 'heard';
interface HeardState {
  finalUpToMs: number;
}
/** How long a new owner waits for the gateway's replay of what it missed before listening on without it. */
const REPLAY_TIMEOUT_MS = 1_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Live audio held while the replay is fetched and fed (ms): the replay is bounded, so is this. */
const HELD_LIVE_MAX_MS = 15_000;

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

    /**
     * Taken over from an instance that died: live frames wait here while the gateway's replay of the audio from
     * the last final on (what the dead instance heard but had not finished) goes to the recogniser first.
     */
    let heldLive: { seq: number; chunk: AudioChunk }[] | undefined = ctx.reclaimed ? [] : undefined;
    let finalUpToMs = 0;

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
      const chunk = { samples: frame.samples, sampleRate: frame.sampleRate, tsMs: frame.tsMs };
      if (heldLive) {
        heldLive.push({ seq: frame.seq, chunk });
        if (heldLive.length * 20 > HELD_LIVE_MAX_MS) {
          heldLive.shift();
          ctx.dropped(FRAMES_QUEUE, 'behind');
        }
        return;
      }
      frames.push(chunk);
    });

    /** Feeds the recogniser what the previous owner had not finished hearing, then the live frames held meanwhile. */
    async function catchUp(held: { seq: number; chunk: AudioChunk }[]): Promise<void> {
      // Paced to the recogniser: the bounded queue would drop the oldest of a burst.
      const feed = async (chunk: AudioChunk) => {
        while (frames.stats.weight > maxBufferedMs / 2 && !ctx.signal.aborted) await sleep(10);
        frames.push(chunk);
      };
      const saved = await ctx.state.get<HeardState>(HEARD_STATE).catch(() => undefined);
      finalUpToMs = saved?.finalUpToMs ?? 0;
      let nextSeq = 0;
      try {
        const replay = await ctx.request(
          sessionRequests.audioReplay,
          { fromMs: finalUpToMs },
          { timeoutMs: REPLAY_TIMEOUT_MS },
        );
        if (replay.sampleRate !== ctx.config.sampleRate) throw new Error(`replay at ${replay.sampleRate} Hz`);
        const pcm = Buffer.from(replay.pcm, 'base64');
        const all = new Int16Array(pcm.buffer, pcm.byteOffset, Math.floor(pcm.byteLength / 2));
        const perFrame = (replay.sampleRate * 20) / 1000;
        for (let i = 0; i * perFrame < all.length && !ctx.signal.aborted; i++) {
          const samples = all.slice(i * perFrame, (i + 1) * perFrame);
          await feed({ samples, sampleRate: replay.sampleRate, tsMs: replay.fromMs + i * 20 });
        }
        nextSeq = replay.nextSeq;
        ctx.log.info(
          { fromMs: replay.fromMs, ms: Math.round((all.length / replay.sampleRate) * 1000) },
          'replayed audio the previous owner had not finished',
        );
      } catch (err) {
        ctx.log.warn({ err: String(err), fromMs: finalUpToMs }, 'no replay from the gateway: listening on from now');
      }
      // Then the live frames held meanwhile (more come while these are fed), then live again.
      for (let f = held.shift(); f && !ctx.signal.aborted; f = held.shift()) {
        if (f.seq >= nextSeq) await feed(f.chunk);
      }
      heldLive = undefined;
    }
    if (heldLive) void ctx.track(catchUp(heldLive));

    /** The newest finals, for a turn-detector instance that takes the session over (`transcript.replay`). */
    const recentFinals: Transcript[] = [];
    ctx.serve(sessionRequests.transcriptReplay, ({ afterMs }) => ({
      finals: recentFinals.filter((t) => t.endMs > afterMs),
    }));

    const publish = ({ servedBy, ...ev }: TranscriptEvent) => {
      const text = ev.text.slice(0, LIMITS.textChars);
      // The context of the last frame of these words (frames are 20 ms; the end is exclusive).
      const turnContext = contextAt(Math.max(ev.startMs, ev.endMs - 20));
      const transcript: Transcript = { ...ev, text, endMs: Math.max(ev.endMs, ev.startMs) };
      ctx.publish(channels.transcript, transcript, { context: turnContext });
      if (!ev.final || text.trim() === '') return;
      recentFinals.push(transcript);
      if (recentFinals.length > TRANSCRIPT_REPLAY_MAX) recentFinals.shift();
      if (ev.endMs > finalUpToMs) {
        finalUpToMs = ev.endMs;
        const state: HeardState = { finalUpToMs };
        ctx.state.keep(HEARD_STATE, state);
      }
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
