import { availableParallelism } from 'node:os';
import type { Pcm } from '@va/audio';
import { PROSODY_WINDOW_MS, type SpeechTail } from '@va/providers';
import { speakMarked, type MarkedUtterance } from '@va/testkit';
import type { EotTake } from './corpus.js';

/**
 * Synthesizes every take (a few at a time: flite and espeak-ng are one process each) and hands each result, or
 * the error that made it unusable (a pause the synthesizer would not place), to `each` in the takes' order.
 */
export async function synthesizeTakes(
  all: readonly EotTake[],
  each: (take: EotTake, heard: MarkedUtterance | Error) => void,
  /** Quiet before and after each take's speech. */
  quiet: { leadMs: number; tailMs: number } = { leadMs: 300, tailMs: 300 },
  concurrency = availableParallelism(),
): Promise<void> {
  const results = new Array<MarkedUtterance | Error | undefined>(all.length);
  let next = 0;
  let delivered = 0;
  const deliver = () => {
    while (delivered < all.length && results[delivered] !== undefined) {
      each(all[delivered]!, results[delivered]!);
      results[delivered] = undefined;
      delivered++;
    }
  };
  const worker = async () => {
    while (next < all.length) {
      const i = next++;
      const take = all[i]!;
      results[i] = await speakMarked(take.text, take.pausesMs, take.voice, { styles: take.styles, ...quiet }).catch(
        (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
      );
      deliver();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
}

/** The audio a turn detector has of the speech before `atMs`: the last PROSODY_WINDOW_MS of it. */
export function tailBefore(pcm: Pcm, atMs: number): SpeechTail {
  const end = Math.min(pcm.samples.length, Math.round((atMs / 1000) * pcm.sampleRate));
  const start = Math.max(0, end - Math.round((PROSODY_WINDOW_MS / 1000) * pcm.sampleRate));
  return { samples: pcm.samples.subarray(start, end), sampleRate: pcm.sampleRate };
}
