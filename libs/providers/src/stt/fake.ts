import { z } from 'zod';
import type { AudioChunk, STT, TranscriptEvent } from '../types.js';
import { AsyncQueue } from '@va/stream';

/** An event the fake emits `afterMs` after its transcription started (wall clock). */
export interface ScriptedTranscript {
  afterMs: number;
  event: TranscriptEvent;
}

/**
 * Sees every received chunk, then `undefined` once the input has ended; what it returns is emitted at once.
 * A fresh responder is made for each transcription, so it can keep per-stream state in its closure.
 */
export type FakeResponder = (chunk: AudioChunk | undefined) => TranscriptEvent | readonly TranscriptEvent[] | void;

export type FakeSttScript = readonly ScriptedTranscript[] | (() => FakeResponder);

/**
 * Deterministic STT for tests. Reads its input concurrently with emitting (so a slow consumer does not stall the
 * audio reader, like a real recogniser), follows its script, and ends when the input ends. Scripted events that
 * are not yet due when the input ends are emitted at once, as a real recogniser finalises what it heard.
 * Abort ends it at once and drops what is still scheduled.
 */
export class FakeSTT implements STT {
  readonly provider = 'fake';
  readonly sampleRate: number;
  /** Chunks received over all transcriptions. */
  chunksReceived = 0;

  constructor(
    private readonly script: FakeSttScript = [],
    opts: { sampleRate?: number } = {},
  ) {
    this.sampleRate = opts.sampleRate ?? 16000;
  }

  async *transcribe(audio: AsyncIterable<AudioChunk>, signal: AbortSignal): AsyncGenerator<TranscriptEvent> {
    if (signal.aborted) return;
    const events = new AsyncQueue<TranscriptEvent>();
    const respond = typeof this.script === 'function' ? this.script() : undefined;
    const emit = (out: TranscriptEvent | readonly TranscriptEvent[] | void) => {
      if (out === undefined) return;
      for (const event of Array.isArray(out) ? (out as readonly TranscriptEvent[]) : [out as TranscriptEvent]) {
        events.push(event);
      }
    };

    const pending = typeof this.script === 'function' ? [] : [...this.script].sort((a, b) => a.afterMs - b.afterMs);
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const schedule = () => {
      const next = pending[0];
      if (!next) return;
      timer = setTimeout(
        () => {
          while (pending[0] && pending[0].afterMs <= performance.now() - started) emit(pending.shift()!.event);
          schedule();
        },
        Math.max(0, next.afterMs - (performance.now() - started)),
      );
    };
    const flush = () => {
      clearTimeout(timer);
      for (const { event } of pending.splice(0)) emit(event);
    };
    const stop = () => {
      clearTimeout(timer);
      pending.length = 0;
      events.cancel();
    };

    const pump = async () => {
      try {
        for await (const chunk of audio) {
          if (events.closed) return;
          this.chunksReceived++;
          emit(respond?.(chunk));
        }
        if (events.closed) return;
        emit(respond?.(undefined));
        flush();
        events.end();
      } catch (err) {
        clearTimeout(timer);
        events.fail(err);
      }
    };

    signal.addEventListener('abort', stop, { once: true });
    try {
      schedule();
      void pump(); // not awaited: an aborted live input may never end
      yield* events;
    } finally {
      signal.removeEventListener('abort', stop);
      stop();
    }
  }
}

const EventSchema = z.object({
  text: z.string(),
  final: z.boolean(),
  stable: z.boolean().optional(),
  confidence: z.number().min(0).max(1).default(1),
  startMs: z.number().min(0).default(0),
  endMs: z.number().min(0).default(0),
});
const ScriptSchema = z.array(z.object({ afterMs: z.number().min(0), event: EventSchema }));

/**
 * `STT_FAKE_SCRIPT`: JSON `[{afterMs, event: {text, final, stable?, confidence?, startMs?, endMs?}}]`
 * (stable defaults to final). Unset: the fake reads its input and says nothing.
 */
export function fakeSttFromEnv(env: NodeJS.ProcessEnv): FakeSTT {
  const raw = env.STT_FAKE_SCRIPT;
  if (!raw) return new FakeSTT([]);
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw new Error(`invalid STT_FAKE_SCRIPT: not JSON (${(err as Error).message})`);
  }
  const parsed = ScriptSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'} ${i.message}`);
    throw new Error(`invalid STT_FAKE_SCRIPT: ${problems.join('; ')}`);
  }
  return new FakeSTT(
    parsed.data.map(({ afterMs, event }) => ({ afterMs, event: { ...event, stable: event.stable ?? event.final } })),
  );
}
