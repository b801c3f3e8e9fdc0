// What the engine modules (flite.ts, espeak.ts) share: running their binary, and the Plan each one returns.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Pcm } from '@va/audio';
import type { PauseStyle } from './types.js';

export const RATE = 16000;

/** A change at one point of the synthesized audio: `remove` samples taken out at `at`, `insert` samples of quiet put in. */
export interface Splice {
  at: number;
  remove: number;
  insert: number;
}

/** Where each marker's quiet is in the engine's audio (16 kHz samples), before trimming and splicing. */
export interface PlannedPause {
  quietStart: number;
  /** Length of the quiet after splicing. */
  quietLength: number;
  style: PauseStyle;
}

export interface Plan {
  /** The engine's audio at 16 kHz, its own leading and trailing silence included. */
  pcm: Pcm;
  splices: Splice[];
  pauses: PlannedPause[];
}

export async function run(binary: string, debianPackage: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)(binary, args);
    return stdout;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`speakMarked: the \`${binary}\` binary is not installed (apt-get install ${debianPackage})`);
    }
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new Error(`speakMarked: ${binary} failed: ${stderr || (err as Error).message}`);
  }
}

/** A comma would follow other punctuation: there is a phrase break there already. */
export const endsInPunctuation = (s: string) => /[,.;:!?]$/.test(s);
