/**
 * Streaming sentence segmenter: LLM text deltas in, speakable segments out, each as soon as it is complete, so
 * synthesis can start long before the reply has finished streaming.
 */

export interface TextSegment {
  /** The segment's text, trimmed. */
  text: string;
  /**
   * Offset in the full input text (all deltas concatenated) just past this segment's last character (its
   * closing mark); the whitespace after it belongs to the next segment. Segments partition the text, and the
   * same text gives the same segments however it is split into deltas.
   */
  end: number;
}

export interface SentenceSegmenterOptions {
  /** The first segment may end at ", ; :" once it holds this many words, so first audio comes early. Default 4. */
  firstClauseMinWords?: number;
  /** A segment with no break in this many characters is cut at a word boundary (latency; flite slows down). Default 250. */
  maxChars?: number;
}

// Words that end in "." without ending the sentence. Kept small: a missing entry splits a sentence early (odd
// prosody), a wrong one merges two sentences (later audio). "e.g.", "U.S." and initials are caught by shape.
const ABBREVIATIONS = new Set('mr mrs ms dr prof sr jr st mt vs etc approx dept fig cf al'.split(' '));
const TERMINAL = '.!?\u2026';
const CLAUSE = ',;:';
// What may follow a terminal mark and still belong to its sentence: more marks, closing quotes and brackets.
const CLOSERS = '.!?\u2026"\')]}\u2019\u201d';
const SPACE = /\s/;
const SPEAKABLE = /[\p{L}\p{N}]/u;

/** True when the text holds something to say (a letter or digit), not only whitespace and punctuation. */
export function isSpeakable(text: string): boolean {
  return SPEAKABLE.test(text);
}

/** Push-style core of {@link segmentSentences}: feed deltas, take complete segments; `flush` at input end. */
export class SentenceSegmenter {
  private buf = '';
  /** Offset of buf[0] in the full text. */
  private base = 0;
  /** buf index up to which no break exists; scanning resumes here (linear, not quadratic, on long input). */
  private scanned = 0;
  private emitted = 0;
  private readonly minWords: number;
  private readonly maxChars: number;

  constructor(opts: SentenceSegmenterOptions = {}) {
    this.minWords = opts.firstClauseMinWords ?? 4;
    this.maxChars = Math.max(20, opts.maxChars ?? 250);
  }

  push(delta: string): TextSegment[] {
    this.buf += delta;
    const out: TextSegment[] = [];
    for (let seg = this.next(); seg; seg = this.next()) out.push(seg);
    return out;
  }

  /**
   * The rest of the text. It may hold nothing speakable ("..." or trailing spaces): it is still returned when it
   * is not empty, so the caller can account its characters (textOffset reaches the text's length).
   */
  flush(): TextSegment[] {
    const out = this.push('');
    if (this.buf.length > 0 && (isSpeakable(this.buf) || this.emitted > 0)) out.push(this.take(this.buf.length));
    this.buf = '';
    return out;
  }

  private next(): TextSegment | undefined {
    const buf = this.buf;
    let i = this.scanned;
    for (; i < buf.length; i++) {
      const c = buf[i]!;
      let cut = -1;
      if (c === '\n') {
        cut = i + 1; // a line break ends a segment too: LLM lists and headings carry no full stop
      } else if (TERMINAL.includes(c)) {
        let j = i + 1;
        while (j < buf.length && CLOSERS.includes(buf[j]!)) j++;
        if (j === buf.length) break; // "3." may become "3.5": decide when the next character comes
        if (SPACE.test(buf[j]!) && !(c === '.' && isAbbreviation(buf, i))) cut = j;
        i = j - 1;
      } else if (CLAUSE.includes(c) && this.emitted === 0) {
        if (i + 1 === buf.length) break; // "3," may become "3,000"
        if (SPACE.test(buf[i + 1]!) && countWords(buf.slice(0, i)) >= this.minWords) cut = i + 1;
      }
      // A break with nothing speakable before it ("... " or a blank line) joins the next segment instead.
      if (cut > 0 && isSpeakable(buf.slice(0, cut))) return this.take(cut);
    }
    this.scanned = i; // up to the end, or to the mark that waits for its next character
    if (buf.length > this.maxChars) return this.take(forcedCut(buf, this.maxChars));
    return undefined;
  }

  private take(cut: number): TextSegment {
    const seg = { text: this.buf.slice(0, cut).trim(), end: this.base + cut };
    this.buf = this.buf.slice(cut);
    this.base += cut;
    this.scanned = 0;
    this.emitted++;
    return seg;
  }
}

/** Streams `deltas` into segments; see {@link SentenceSegmenter}. */
export async function* segmentSentences(
  deltas: AsyncIterable<string>,
  opts?: SentenceSegmenterOptions,
): AsyncGenerator<TextSegment, void, undefined> {
  const s = new SentenceSegmenter(opts);
  for await (const delta of deltas) yield* s.push(delta);
  yield* s.flush();
}

/** "Mr." "e.g." "U.S." "J." (an initial): the word before the "." at `dot`. */
function isAbbreviation(buf: string, dot: number): boolean {
  let start = dot;
  while (start > 0 && !SPACE.test(buf[start - 1]!)) start--;
  const word = buf.slice(start, dot).replace(/^[("'\u2018\u201c[]+/, '');
  if (ABBREVIATIONS.has(word.toLowerCase())) return true;
  if (/^(?:\p{L}\.)+\p{L}$/u.test(word)) return true; // e.g, i.e, U.S
  return /^\p{Lu}$/u.test(word) && word !== 'I';
}

function countWords(text: string): number {
  return text.split(/\s+/).filter(isSpeakable).length;
}

/** Where to cut an over-long run: after its last ", ; :" or else its last space before `max`; hard cut if none. */
function forcedCut(buf: string, max: number): number {
  let space = -1;
  for (let i = max - 1; i > 0; i--) {
    if (!SPACE.test(buf[i]!)) continue;
    if (CLAUSE.includes(buf[i - 1]!)) return i;
    if (space < 0) space = i;
  }
  return space > 0 ? space : max;
}
