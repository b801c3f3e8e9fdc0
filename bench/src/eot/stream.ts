import { openSession, closeSession } from '@va/actor';
import { concat, type Pcm } from '@va/audio';
import { Bus } from '@va/bus';
import { startPipeline } from '@va/e2e';
import { CANCEL_REASON, channels, FRAME_MS, type SessionId, type Transcript, type Turn } from '@va/protocol';
import { createLogger } from '@va/telemetry';
import type { MarkedUtterance } from '@va/testkit';
import type { EotTake } from './corpus.js';

/** Quiet after each take before the next one: past the turn detector's longest wait, so every take is one turn. */
export const GAP_MS = 3000;
/** Quiet before each take's speech. */
export const LEAD_MS = 300;

/** Which recogniser hears the takes: pocketsphinx, or the timed fake that "hears" exactly the corpus's words. */
export type Recogniser = 'pocketsphinx' | 'exact';

export interface Heard<T> {
  /** Audio time (the session's clock, ms) when the bench received it. */
  atMs: number;
  msg: T;
}

/** One take as streamed: where it sits on its session's clock, and what stt and the turn detector said of it. */
export interface StreamedTake {
  take: EotTake;
  heard: MarkedUtterance;
  /** Audio time of the take's first sample on its session. */
  offsetMs: number;
  /** Audio time of the next take's first sample (or the end of the session's audio). */
  untilMs: number;
  transcripts: Heard<Transcript>[];
  turns: Heard<Turn>[];
  /** Previews the turn detector cancelled (the user went on, or the final words differed). */
  cancelled: Set<string>;
}

/** The words of a take as the timed fake recogniser says them: one text per stretch of speech. */
export function pieces(take: EotTake): string[] {
  return take.text.split('|').map((p) => p.trim().replace(/\s+/g, ' '));
}

export interface StreamOptions {
  recogniser: Recogniser;
  /** One list of takes per session (a voice each), every list in the same utterance order. */
  sessions: readonly (readonly { take: EotTake; heard: MarkedUtterance }[])[];
  onProgress?: (line: string) => void;
}

/**
 * Streams every session's takes in real time through the real stt and turn-detector services on a fresh
 * nats-server, and records, on the session's audio clock, every transcript and turn message they publish.
 */
export async function streamTakes(opts: StreamOptions): Promise<StreamedTake[][]> {
  const progress = opts.onProgress ?? (() => undefined);
  const script = opts.sessions[0]?.flatMap((t) => pieces(t.take)) ?? [];
  const pipeline = await startPipeline({
    stages: ['stt', 'turn-detector'],
    env: {
      VA_SESSION_CAPACITY: '100',
      ...(opts.recogniser === 'exact'
        ? {
            STT_PROVIDER: 'timed',
            TIMED_STT_TEXTS: JSON.stringify(script),
            // Below the shortest pause, above the gaps inside a phrase: each stretch of speech is one text.
            TIMED_STT_END_SILENCE_MS: '200',
            TIMED_STT_FINAL_MS: '100',
          }
        : { STT_PROVIDER: 'local' }),
    },
    onProgress: progress,
    maxLifetimeSec: 3 * 3600,
  });
  const client = await Bus.connect({
    stage: 'observer',
    servers: pipeline.nats.url,
    logger: createLogger('observer', {}, 'warn'),
  });
  try {
    const sessions = await Promise.all(
      opts.sessions.map(async (list, i) => {
        const sid = `eot-${opts.recogniser}-${i}` as SessionId;
        const clips: Pcm[] = [];
        const streamed: StreamedTake[] = [];
        let at = 0;
        for (const { take, heard } of list) {
          streamed.push({ take, heard, offsetMs: at, untilMs: 0, transcripts: [], turns: [], cancelled: new Set() });
          clips.push(heard.pcm);
          at += (heard.pcm.samples.length * 1000) / heard.pcm.sampleRate;
        }
        streamed.forEach((s, k) => (s.untilMs = streamed[k + 1]?.offsetMs ?? at));
        await openSession(client, sid, {}, { stages: ['stt', 'turn-detector'] });
        return { sid, audio: concat(clips, 16000), streamed };
      }),
    );
    const started = performance.now();
    const nowMs = () => performance.now() - started;
    const takeAt = (list: StreamedTake[], ms: number) => {
      for (let k = list.length - 1; k >= 0; k--) if (list[k]!.offsetMs <= ms) return list[k];
      return undefined;
    };
    for (const s of sessions) {
      client.subscribe(channels.transcript, s.sid, (t) => {
        // Words belong to the take whose audio they are of.
        takeAt(s.streamed, t.startMs)?.transcripts.push({ atMs: nowMs(), msg: t });
      });
      client.subscribe(channels.turn, s.sid, (t) => {
        takeAt(s.streamed, nowMs())?.turns.push({ atMs: nowMs(), msg: t });
        // No agent here to answer: its turn is over at once, as if played out, so the next take is not a barge-in.
        if (t.kind === 'end') {
          const played = { turnId: t.turnId, playedMs: 0, spokenText: '', done: true, interrupted: false };
          client.publish(channels.playout, s.sid, played);
        }
      });
      client.subscribe(channels.control, s.sid, (c) => {
        // A preview the user's going on (or different final words) made void: what eager generation wasted.
        if (c.reason !== CANCEL_REASON.preemptAbandoned && c.reason !== CANCEL_REASON.preemptMismatch) return;
        for (const t of s.streamed) t.cancelled.add(c.turnId);
      });
    }
    await client.nc.flush();
    const frame = (16000 * FRAME_MS) / 1000;
    const frames = Math.max(...sessions.map((s) => Math.ceil(s.audio.samples.length / frame)));
    progress(`streaming ${sessions.length} sessions × ${Math.round((frames * FRAME_MS) / 1000)} s in real time`);
    for (let n = 0; n < frames; n++) {
      // Paced by the clock, not by timers adding up: frame n goes out at n × 20 ms.
      const wait = n * FRAME_MS - nowMs();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      for (const s of sessions) {
        const samples = s.audio.samples.subarray(n * frame, (n + 1) * frame);
        if (samples.length < frame) continue;
        client.publishAudio('in', s.sid, { samples, sampleRate: 16000, seq: n, tsMs: n * FRAME_MS });
      }
      if (n > 0 && n % 3000 === 0) progress(`  ${Math.round((n * FRAME_MS) / 1000)} s streamed`);
    }
    await new Promise((r) => setTimeout(r, 1500));
    for (const s of sessions) closeSession(client, s.sid, 'bench done');
    return sessions.map((s) => s.streamed);
  } finally {
    await client.drain().catch(() => undefined);
    await pipeline.stop();
  }
}
