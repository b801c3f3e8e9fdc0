import { existsSync } from 'node:fs';
import { load as loadLibrary } from 'koffi';
import { DEFAULT_MODEL_DIR } from '../stt/worker-protocol.js';

/**
 * The trigram language model Debian ships with pocketsphinx (`pocketsphinx-en-us`: en-us.lm.bin), read through
 * sphinxbase's n-gram API with koffi. It answers one question for end of turn: after the words heard so far, how
 * likely does the sentence end (`</s>`) rather than go on. Pure lookups: microseconds a call, on the caller's thread.
 */
export const DEFAULT_LM_PATH = `${DEFAULT_MODEL_DIR}/en-us.lm.bin`;

type Ptr = bigint;

interface NgramApi {
  err_set_logfp: (stream: null) => void;
  logmath_init: (base: number, shift: number, useTable: number) => Ptr | null;
  logmath_free: (lmath: Ptr) => number;
  logmath_log_to_ln: (lmath: Ptr, logb: number) => number;
  ngram_model_read: (config: null, file: string, type: number, lmath: Ptr) => Ptr | null;
  ngram_model_free: (model: Ptr) => number;
  ngram_wid: (model: Ptr, word: string) => number;
  ngram_unknown_wid: (model: Ptr) => number;
  ngram_ng_prob: (model: Ptr, wid: number, history: Int32Array, nHist: number, nUsed: number[]) => number;
}

let api: NgramApi | undefined;

function bind(): NgramApi {
  if (api) return api;
  const lib = loadLibrary('libsphinxbase.so.3');
  api = {
    err_set_logfp: lib.func('void err_set_logfp(void *stream)'),
    logmath_init: lib.func('void *logmath_init(double base, int shift, int use_table)'),
    logmath_free: lib.func('int logmath_free(void *lmath)'),
    logmath_log_to_ln: lib.func('double logmath_log_to_ln(void *lmath, int logb_x)'),
    ngram_model_read: lib.func('void *ngram_model_read(void *config, const char *file, int type, void *lmath)'),
    ngram_model_free: lib.func('int ngram_model_free(void *model)'),
    ngram_wid: lib.func('int ngram_wid(void *model, const char *word)'),
    ngram_unknown_wid: lib.func('int ngram_unknown_wid(void *model)'),
    // History most recent word first; n_used: the order of the n-gram found (backed off below the trigram).
    ngram_ng_prob: lib.func(
      'int ngram_ng_prob(void *model, int wid, const int32_t *history, int n_hist, _Out_ int *n_used)',
    ),
  } as unknown as NgramApi;
  return api;
}

/** `ngram_file_type_t`: NGRAM_AUTO guesses ARPA or binary from the file. */
const NGRAM_AUTO = 0;

/** How the sentence could end after some words: the model's natural-log probabilities of `</s>`. */
export interface SentenceEnd {
  /** ln P(</s> | the last two words) — backing off where the trigram was never seen. */
  lnEnd: number;
  /** ln P(</s> | the last word) alone: whether that word ends sentences at all. */
  lnEndAfterWord: number;
  /** The n-gram order the model had for `lnEnd` (3: the trigram was seen; 1: only the unigram). */
  order: number;
  /** Words of the text the model does not know. */
  unknownWords: number;
}

/** Lower-case words as the model spells them: apostrophes kept ("i'd", "what's"), other marks dropped. */
export function lmWords(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/[’]/g, "'")
    .replace(/[^a-z' ]+/g, ' ')
    .split(/\s+/)
    .filter((w) => w !== '' && w !== "'");
}

/** One loaded n-gram model; `free()` releases its ~30 MB. */
export class NgramLanguageModel {
  private readonly endWid: number;
  private readonly startWid: number;
  private readonly unknownWid: number;

  private constructor(
    private readonly ng: NgramApi,
    private lmath: Ptr | null,
    private model: Ptr | null,
  ) {
    this.endWid = ng.ngram_wid(model!, '</s>');
    this.startWid = ng.ngram_wid(model!, '<s>');
    this.unknownWid = ng.ngram_unknown_wid(model!);
  }

  static load(file = DEFAULT_LM_PATH): NgramLanguageModel {
    if (!existsSync(file)) throw new Error(`language model not found: ${file} (apt-get install pocketsphinx-en-us)`);
    const ng = bind();
    // sphinxbase logs to stderr by default; its log is process-wide, and the recogniser turns it off too.
    ng.err_set_logfp(null);
    // Base 1.0001 as pocketsphinx uses: integer log scores fine enough for probabilities down to ~1e-30.
    const lmath = ng.logmath_init(1.0001, 0, 0);
    if (!lmath) throw new Error('sphinxbase: logmath_init failed');
    const model = ng.ngram_model_read(null, file, NGRAM_AUTO, lmath);
    if (!model) {
      ng.logmath_free(lmath);
      throw new Error(`sphinxbase could not read the language model ${file}`);
    }
    return new NgramLanguageModel(ng, lmath, model);
  }

  private get handle(): Ptr {
    if (!this.model) throw new Error('language model already freed');
    return this.model;
  }

  private wid(word: string): number {
    return this.ng.ngram_wid(this.handle, word);
  }

  /** ln P(word | history), history most recent first. */
  private lnProb(wid: number, history: readonly number[]): { ln: number; order: number } {
    const used = [0];
    const logb = this.ng.ngram_ng_prob(this.handle, wid, Int32Array.from(history), history.length, used);
    return { ln: this.ng.logmath_log_to_ln(this.lmath!, logb), order: used[0]! };
  }

  /** How likely the sentence ends right after `text` (`<s>` stands before the first word). */
  sentenceEnd(text: string): SentenceEnd {
    const words = lmWords(text);
    const wids = words.map((w) => this.wid(w));
    const unknownWords = wids.filter((w) => w === this.unknownWid).length;
    const history = [this.startWid, ...wids].slice(-2).reverse();
    const end = this.lnProb(this.endWid, history);
    const afterWord = this.lnProb(this.endWid, history.slice(0, 1));
    return { lnEnd: end.ln, lnEndAfterWord: afterWord.ln, order: end.order, unknownWords };
  }

  free(): void {
    if (this.model) this.ng.ngram_model_free(this.model);
    if (this.lmath) this.ng.logmath_free(this.lmath);
    this.model = null;
    this.lmath = null;
  }
}
