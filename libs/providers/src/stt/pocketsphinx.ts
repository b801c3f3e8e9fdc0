import { existsSync } from 'node:fs';
import path from 'node:path';
import { load as loadLibrary } from 'koffi';

/**
 * pocketsphinx through koffi (Debian `libpocketsphinx3` 0.8+5prealpha, `libsphinxbase3`). Blocking native calls:
 * only ever used inside the decoder worker (pocketsphinx-worker.ts).
 *
 * The Debian library is the 5prealpha API despite its 0.8 version: `ps_start_utt(ps)` and `ps_seg_iter(ps)` take
 * one argument and `ps_get_hyp(ps, &score)` two (checked by disassembly; there are no headers installed). Pointers
 * are BigInts in koffi 3 and carry no C type, so a wrong pointer is a crash, not an exception: keep this surface small.
 */

/** pocketsphinx's feature frame (100 frames/s); its VAD counts in these. */
export const DECODER_FRAME_MS = 10;
/** Speech frames its VAD needs before it reports speech, and silence frames before it reports the end. */
export const VAD_START_FRAMES = 10;
export const VAD_END_FRAMES = 50;

type Ptr = bigint;

interface Api {
  err_set_logfp: (stream: Ptr | null) => void;
  cmd_ln_init: (...args: unknown[]) => Ptr | null;
  cmd_ln_free_r: (cfg: Ptr) => number;
  ps_args: () => Ptr;
  ps_init: (cfg: Ptr) => Ptr | null;
  ps_free: (ps: Ptr) => number;
  ps_start_utt: (ps: Ptr) => number;
  ps_end_utt: (ps: Ptr) => number;
  ps_process_raw: (ps: Ptr, data: Int16Array, n: number, noSearch: number, fullUtt: number) => number;
  ps_get_in_speech: (ps: Ptr) => number;
  ps_get_hyp: (ps: Ptr, score: number[]) => string | null;
  ps_get_logmath: (ps: Ptr) => Ptr;
  logmath_exp: (logmath: Ptr, logProb: number) => number;
  ps_seg_iter: (ps: Ptr) => Ptr | null;
  ps_seg_next: (seg: Ptr) => Ptr | null;
  ps_seg_word: (seg: Ptr) => string;
  ps_seg_prob: (seg: Ptr, ascr: null, lscr: null, lback: null) => number;
}

let api: Api | undefined;

function bind(): Api {
  if (api) return api;
  const sphinxbase = loadLibrary('libsphinxbase.so.3');
  const ps = loadLibrary('libpocketsphinx.so.3');
  api = {
    // Variadic: koffi takes (type, value) pairs after the fixed arguments; the list ends with a NULL string.
    err_set_logfp: sphinxbase.func('void err_set_logfp(void *stream)'),
    cmd_ln_init: sphinxbase.func('void *cmd_ln_init(void *inout, void *defn, int strict, ...)'),
    cmd_ln_free_r: sphinxbase.func('int cmd_ln_free_r(void *cfg)'),
    logmath_exp: sphinxbase.func('double logmath_exp(void *logmath, int logProb)'),
    ps_args: ps.func('void *ps_args(void)'),
    ps_init: ps.func('void *ps_init(void *cfg)'),
    ps_free: ps.func('int ps_free(void *ps)'),
    ps_start_utt: ps.func('int ps_start_utt(void *ps)'),
    ps_end_utt: ps.func('int ps_end_utt(void *ps)'),
    ps_process_raw: ps.func('int ps_process_raw(void *ps, const int16_t *data, size_t n, int noSearch, int fullUtt)'),
    ps_get_in_speech: ps.func('uint8_t ps_get_in_speech(void *ps)'),
    ps_get_hyp: ps.func('const char *ps_get_hyp(void *ps, _Out_ int *score)'),
    ps_get_logmath: ps.func('void *ps_get_logmath(void *ps)'),
    ps_seg_iter: ps.func('void *ps_seg_iter(void *ps)'),
    ps_seg_next: ps.func('void *ps_seg_next(void *seg)'),
    ps_seg_word: ps.func('const char *ps_seg_word(void *seg)'),
    ps_seg_prob: ps.func('int ps_seg_prob(void *seg, int *ascr, int *lscr, int *lback)'),
  } as unknown as Api;
  return api;
}

/** `<s>`, `</s>`, `<sil>`, `[NOISE]`, `++BREATH++`: segments that are not words. */
const isFiller = (word: string) => /^(<|\[|\+\+)/.test(word);

/** One pocketsphinx decoder: model loaded once, many utterances. */
export class Decoder {
  private constructor(
    private readonly ps: Api,
    private cfg: Ptr | null,
    private decoder: Ptr | null,
  ) {}

  static load(modelDir: string): Decoder {
    const files = { hmm: 'en-us', lm: 'en-us.lm.bin', dict: 'cmudict-en-us.dict' };
    for (const file of Object.values(files)) {
      if (!existsSync(path.join(modelDir, file))) {
        throw new Error(
          `pocketsphinx model not found: ${path.join(modelDir, file)} (apt-get install pocketsphinx-en-us)`,
        );
      }
    }
    const ps = bind();
    const options: Record<string, string> = {
      '-hmm': path.join(modelDir, files.hmm),
      '-lm': path.join(modelDir, files.lm),
      '-dict': path.join(modelDir, files.dict),
      '-vad_startspeech': String(VAD_START_FRAMES),
      '-vad_postspeech': String(VAD_END_FRAMES),
    };
    // pocketsphinx's log is one process-wide FILE*. `-logfn` made every decoder load open a new one, make it the
    // global and fclose the previous — while decoders in other worker threads were writing to it (a
    // use-after-free: with one shared malloc arena, closing six just-loaded decoders segfaulted 1 run in 2).
    // Logging off for the whole process instead: nothing is opened or closed.
    ps.err_set_logfp(null);
    const varargs = Object.entries(options).flatMap(([flag, value]) => ['str', flag, 'str', value]);
    const cfg = ps.cmd_ln_init(null, ps.ps_args(), 1, ...varargs, 'str', null);
    if (!cfg) throw new Error('pocketsphinx rejected its configuration (cmd_ln_init)');
    const decoder = ps.ps_init(cfg);
    if (!decoder) {
      ps.cmd_ln_free_r(cfg);
      throw new Error(`pocketsphinx could not load the model in ${modelDir} (ps_init)`);
    }
    return new Decoder(ps, cfg, decoder);
  }

  private get handle(): Ptr {
    if (!this.decoder) throw new Error('pocketsphinx decoder already freed');
    return this.decoder;
  }

  startUtterance(): void {
    if (this.ps.ps_start_utt(this.handle) < 0) throw new Error('ps_start_utt failed');
  }

  endUtterance(): void {
    if (this.ps.ps_end_utt(this.handle) < 0) throw new Error('ps_end_utt failed');
  }

  /** Feeds 16 kHz PCM16; returns whether its VAD is inside speech afterwards. */
  process(samples: Int16Array): boolean {
    if (this.ps.ps_process_raw(this.handle, samples, samples.length, 0, 0) < 0)
      throw new Error('ps_process_raw failed');
    return this.ps.ps_get_in_speech(this.handle) !== 0;
  }

  /** Best hypothesis so far (partial) or of the ended utterance; '' when there are no words. */
  hypothesis(): string {
    return this.ps.ps_get_hyp(this.handle, [0]) ?? '';
  }

  /**
   * Mean posterior probability of the hypothesis' words, 0..1. Posteriors come from the lattice pocketsphinx
   * builds when an utterance ends, so this is only meaningful after endUtterance(); undefined when there are no words.
   */
  wordConfidence(): number | undefined {
    const logmath = this.ps.ps_get_logmath(this.handle);
    const posteriors: number[] = [];
    // ps_seg_next frees the iterator when it returns NULL, so walking to the end leaks nothing.
    for (let seg = this.ps.ps_seg_iter(this.handle); seg; seg = this.ps.ps_seg_next(seg)) {
      if (isFiller(this.ps.ps_seg_word(seg))) continue;
      posteriors.push(this.ps.logmath_exp(logmath, this.ps.ps_seg_prob(seg, null, null, null)));
    }
    if (posteriors.length === 0) return undefined;
    const mean = posteriors.reduce((a, b) => a + b, 0) / posteriors.length;
    return Math.min(1, Math.max(0, mean));
  }

  free(): void {
    if (this.decoder) this.ps.ps_free(this.decoder);
    if (this.cfg) this.ps.cmd_ln_free_r(this.cfg);
    this.decoder = null;
    this.cfg = null;
  }
}
