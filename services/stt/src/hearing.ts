import { FrameClock } from '@va/audio';
import { FRAME_MS, LIMITS, TRANSCRIPT_REPLAY_MAX, type Transcript } from '@va/protocol';
import type { AudioChunk, TranscriptEvent } from '@va/providers';
import { context, trace, type Context } from '@va/telemetry';

/** Audio-time changes of the turn context remembered for late finals (besides the one-minute window). */
const MAX_CONTEXTS = 256;
/** Live audio held while the replay is fetched and fed (ms): the replay is bounded, so is this. */
const HELD_LIVE_MAX_MS = 15_000;

/**
 * Which turn a stretch of audio belongs to. The gateway stamps each frame with the open turn's root span; words
 * belong to the turn their audio was part of — not to whatever frame is newest when a slow final arrives — so
 * contexts are kept by audio time.
 */
export class TurnContexts {
  private readonly changes: { fromMs: number; context: Context }[] = [];
  private latest: Context = context.active();
  private latestSpan: string | undefined;

  observe(tsMs: number, frameContext: Context): void {
    const spanId = trace.getSpanContext(frameContext)?.spanId;
    if (spanId === this.latestSpan && this.changes.length > 0) return;
    this.latestSpan = spanId;
    this.latest = frameContext;
    this.changes.push({ fromMs: tsMs, context: frameContext });
    // A minute of changes is plenty: a final never comes that late (and a clock that never moves on must not keep
    // every change).
    const c = this.changes;
    while (c.length > 1 && (c[0]!.fromMs < tsMs - 60_000 || c.length > MAX_CONTEXTS)) c.shift();
  }

  /** The context of the audio at `ms`. */
  at(ms: number): Context {
    for (let i = this.changes.length - 1; i >= 0; i--)
      if (this.changes[i]!.fromMs <= ms) return this.changes[i]!.context;
    return this.latest;
  }
}

/** A recognised stretch of words, ready to send: the transcript, its turn, and the final's timing. */
export interface Recognised {
  transcript: Transcript;
  context: Context;
  /**
   * Set for a non-empty final: when its first word was spoken and how late the final came (wall clock), and
   * whether it moved `finalUpToMs` on (worth saving for a successor).
   */
  final?: { startWall: number; delayMs: number; advanced: boolean };
}

/**
 * One session's hearing, without the recogniser: audio frames in (held while a new owner `catching-up` feeds the
 * previous owner's unfinished audio first, then `live`), transcripts out with the turn they belong to, the newest
 * finals for a turn detector that takes over, and where the audio already turned into final words ends.
 */
export class SessionHearing {
  phase: 'catching-up' | 'live';
  readonly contexts = new TurnContexts();
  /** Audio clock → wall clock, from the newest frame (frames arrive in real time). */
  private readonly clock = new FrameClock();
  /** Live frames held while catching up. */
  private held: { seq: number; chunk: AudioChunk }[] = [];
  private readonly recentFinals: Transcript[] = [];
  /** Where the audio already turned into final words ends: a new owner re-hears from there. */
  finalUpToMs = 0;

  /**
   * @param live where live frames go (the recogniser's bounded queue)
   * @param dropped a held frame was dropped (the catch-up took too long)
   */
  constructor(
    reclaimed: boolean,
    private readonly live: (chunk: AudioChunk) => void,
    private readonly dropped: () => void,
  ) {
    this.phase = reclaimed ? 'catching-up' : 'live';
  }

  /** A microphone frame (on the session's audio clock). */
  frame(chunk: AudioChunk & { tsMs: number }, seq: number, frameContext: Context): void {
    this.contexts.observe(chunk.tsMs, frameContext);
    this.clock.observe(chunk.tsMs, chunk.samples.length, chunk.sampleRate);
    if (this.phase === 'live') return this.live(chunk);
    this.held.push({ seq, chunk });
    if (this.held.length * FRAME_MS > HELD_LIVE_MAX_MS) {
      this.held.shift();
      this.dropped();
    }
  }

  /**
   * catching-up → live: the previous owner's unfinished audio (`replay`, from `finalUpToMs` on), then the live
   * frames held meanwhile from `nextSeq` on (more may come while these are fed), each through `feed`.
   */
  async catchUp(
    replay: { chunks: AudioChunk[]; nextSeq: number } | undefined,
    feed: (chunk: AudioChunk) => Promise<void>,
    signal: AbortSignal,
  ): Promise<void> {
    for (const chunk of replay?.chunks ?? []) {
      if (signal.aborted) break;
      await feed(chunk);
    }
    const nextSeq = replay?.nextSeq ?? 0;
    for (let f = this.held.shift(); f && !signal.aborted; f = this.held.shift()) {
      if (f.seq >= nextSeq) await feed(f.chunk);
    }
    this.phase = 'live';
  }

  /** A recogniser event as it goes out; a non-empty final also moves `finalUpToMs` and the replay list. */
  recognised({ servedBy: _servedBy, ...ev }: TranscriptEvent): Recognised {
    const text = ev.text.slice(0, LIMITS.textChars);
    // The context of the last frame of these words (the end is exclusive).
    const turnContext = this.contexts.at(Math.max(ev.startMs, ev.endMs - FRAME_MS));
    const transcript: Transcript = { ...ev, text, endMs: Math.max(ev.endMs, ev.startMs) };
    if (!ev.final || text.trim() === '') return { transcript, context: turnContext };
    this.recentFinals.push(transcript);
    if (this.recentFinals.length > TRANSCRIPT_REPLAY_MAX) this.recentFinals.shift();
    const advanced = ev.endMs > this.finalUpToMs;
    if (advanced) this.finalUpToMs = ev.endMs;
    const now = Date.now();
    return {
      transcript,
      context: turnContext,
      final: {
        startWall: Math.min(this.clock.wallOf(ev.startMs), now),
        delayMs: Math.round(now - this.clock.wallOf(ev.endMs)),
        advanced,
      },
    };
  }

  /** Finals ending after `afterMs` (`transcript.replay`). */
  finalsAfter(afterMs: number): Transcript[] {
    return this.recentFinals.filter((t) => t.endMs > afterMs);
  }
}

/** The gateway's replay (base64 PCM16 from `fromMs`) as frames of FRAME_MS. */
export function replayChunks(pcmBase64: string, sampleRate: number, fromMs: number): AudioChunk[] {
  const pcm = Buffer.from(pcmBase64, 'base64');
  const all = new Int16Array(pcm.buffer, pcm.byteOffset, Math.floor(pcm.byteLength / 2));
  const perFrame = (sampleRate * FRAME_MS) / 1000;
  const chunks: AudioChunk[] = [];
  for (let i = 0; i * perFrame < all.length; i++) {
    chunks.push({ samples: all.slice(i * perFrame, (i + 1) * perFrame), sampleRate, tsMs: fromMs + i * FRAME_MS });
  }
  return chunks;
}
