import { describe, expect, it } from 'vitest';
import { segmentSentences, SentenceSegmenter, type TextSegment } from '../src/tts/segmenter.js';

/** Segments of `parts` fed as deltas, plus what each push returned (to see when a segment became available). */
function run(parts: readonly string[], opts?: ConstructorParameters<typeof SentenceSegmenter>[0]) {
  const s = new SentenceSegmenter(opts);
  const perPush = parts.map((p) => s.push(p).map((x) => x.text));
  const rest = s.flush();
  const all = [...perPush.flat(), ...rest.map((x) => x.text)];
  return { perPush, rest: rest.map((x) => x.text), all };
}

function segments(text: string, opts?: ConstructorParameters<typeof SentenceSegmenter>[0]): TextSegment[] {
  const s = new SentenceSegmenter(opts);
  return [...s.push(text), ...s.flush()];
}

describe('segmentSentences', () => {
  it('emits the first sentence as soon as it is complete, the rest at input end, with end offsets', () => {
    const parts = ['Sure', ', let me', ' check that. The answer is', ' forty two.'];
    const s = new SentenceSegmenter();
    const got = parts.map((p) => s.push(p));
    expect(got.slice(0, 2)).toEqual([[], []]);
    expect(got[2]).toEqual([{ text: 'Sure, let me check that.', end: 24 }]);
    expect(got[3]).toEqual([]); // "two." might still become "two.5"
    expect(s.flush()).toEqual([{ text: 'The answer is forty two.', end: parts.join('').length }]);
  });

  it('breaks the first segment at a clause of at least 4 words, later ones only at sentence ends', () => {
    expect(segments('Well, I think that, honestly, it works; and then, we go.').map((x) => x.text)).toEqual([
      'Well, I think that,',
      'honestly, it works; and then, we go.',
    ]);
    expect(run(['Yes; ok: ', 'sure, fine, ', 'right.']).all).toEqual(['Yes; ok: sure, fine,', 'right.']);
    expect(segments('One two three four, five.', { firstClauseMinWords: 5 }).map((x) => x.text)).toEqual([
      'One two three four, five.',
    ]);
  });

  it('does not split abbreviations, initials or numbers', () => {
    expect(
      segments('Mr. Smith met Dr. Jones, e.g. at noon in the U.S. office. Then he left.').map((x) => x.text),
    ).toEqual(['Mr. Smith met Dr. Jones,', 'e.g. at noon in the U.S. office.', 'Then he left.']);
    expect(segments('J. R. R. Tolkien wrote it. So am I. Yes.').map((x) => x.text)).toEqual([
      'J. R. R. Tolkien wrote it.',
      'So am I.',
      'Yes.',
    ]);
    // Split right after the "." or ",": wait for the next delta before deciding.
    expect(run(['It costs 3.', '5 dollars. Pi is 3.14.', ' Ok.']).perPush).toEqual([
      [],
      ['It costs 3.5 dollars.'],
      ['Pi is 3.14.'],
    ]);
    expect(run(['We have 3,', '000 of them, more or less.']).all).toEqual(['We have 3,000 of them,', 'more or less.']);
  });

  it('handles quotes, ellipses, mixed marks and line breaks', () => {
    expect(segments('She said "stop." Then left. Really?! Wait... ok.').map((x) => x.text)).toEqual([
      'She said "stop."',
      'Then left.',
      'Really?!',
      'Wait...',
      'ok.',
    ]);
    expect(segments('Here are options:\n- one\n\n- two').map((x) => x.text)).toEqual([
      'Here are options:',
      '- one',
      '- two',
    ]);
  });

  it('partitions the text: offsets increase, each segment is its slice trimmed, the last ends at the length', () => {
    const text =
      'Sure thing, here is what I found. The flight leaves at 9.45 a.m. from gate B12! Is that ok? ' +
      'Mr. Brown, your host, will meet you (e.g. at the exit). Enjoy… \n\nBye';
    const single = segments(text);
    expect(single.length).toBeGreaterThan(4);
    // Any split into deltas gives the same segments.
    for (const size of [1, 2, 3, 7, 13]) {
      const parts = text.match(new RegExp(`[\\s\\S]{1,${size}}`, 'g'))!;
      const s = new SentenceSegmenter();
      expect([...parts.flatMap((p) => s.push(p)), ...s.flush()], `size ${size}`).toEqual(single);
    }
    let prev = 0;
    for (const seg of single) {
      expect(seg.end).toBeGreaterThan(prev);
      expect(seg.text).toBe(text.slice(prev, seg.end).trim());
      prev = seg.end;
    }
    expect(prev).toBe(text.length);
  });

  it('flushes the remainder; keeps trailing unspeakable text only after something was said', () => {
    expect(segments('no full stop at the end')).toEqual([{ text: 'no full stop at the end', end: 23 }]);
    expect(segments('')).toEqual([]);
    expect(segments('   \n ')).toEqual([]);
    expect(segments('... !? —')).toEqual([]);
    // Trailing spaces or marks after the last sentence still count (textOffset reaches the text length).
    expect(run(['Hello there.', '  ']).all).toEqual(['Hello there.', '']);
    expect(segments('Hello there. ...')).toEqual([
      { text: 'Hello there.', end: 12 },
      { text: '...', end: 16 },
    ]);
    // A lone "..." mid-stream is not a segment of its own: it joins the next one.
    expect(segments('Hi there. ... Ok then.').map((x) => x.text)).toEqual(['Hi there.', '... Ok then.']);
  });

  it('cuts text without breaks at word boundaries, at most maxChars long', () => {
    const words = Array.from({ length: 300 }, (_, i) => `w${i}`);
    const text = words.join(' ');
    const s = new SentenceSegmenter({ maxChars: 100 });
    const got = [...text.split(/(?<= )/).flatMap((p) => s.push(p)), ...s.flush()];
    expect(got.length).toBeGreaterThan(5);
    for (const seg of got) expect(seg.text.length).toBeLessThanOrEqual(100);
    expect(got.map((x) => x.text).join(' ')).toBe(text); // no word split or lost
    // Also when the long run arrives at once and ends in a mark that waits for the next character.
    const runOn = segments(`${'word '.repeat(100)}end.`, { maxChars: 100 });
    expect(runOn[0]!.text.length).toBeLessThanOrEqual(100);
    expect(runOn.at(-1)).toEqual({ text: expect.stringMatching(/ end\.$/), end: 504 });
    // A clause mark inside the window is the preferred cut.
    const clause = `Hi there. ${'a '.repeat(30)}b, ${'c '.repeat(40)}`;
    expect(segments(clause, { maxChars: 100 })[1]!.text.endsWith('b,')).toBe(true);
  });

  it('streams: a segment is yielded while the source is still waiting', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let ended = false;
    async function* source() {
      yield 'Hello there. How';
      await released;
      yield ' are you?';
      ended = true;
    }
    const it = segmentSentences(source());
    const first = await it.next();
    expect(first.value).toEqual({ text: 'Hello there.', end: 12 });
    expect(ended).toBe(false);
    release();
    expect((await it.next()).value).toEqual({ text: 'How are you?', end: 25 });
    expect((await it.next()).done).toBe(true);
  });
});
