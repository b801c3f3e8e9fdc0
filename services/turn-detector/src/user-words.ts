import { LIMITS, type Transcript } from '@va/protocol';

/** A final ending this far past the silence being judged belongs to speech after it. */
export const RESUMED_MARGIN_MS = 200;
/** A final counts for the speech being judged if it ends no earlier than this before the speech stopped. */
export const FINAL_COVER_MS = 300;

/**
 * The words of the user's turn being collected, as the recogniser gives them: its finals, then its newest partial
 * (and whether that has stopped changing); how far it has heard, and where its last final ended.
 */
export class UserWords {
  finals: string[] = [];
  private partial = '';
  private partialStable = false;
  lastFinalEndMs = -1;
  /** How far the recogniser has heard (the newest transcript's end): behind the speech end = words still coming. */
  private heardMs = -1;

  constructor(saved?: { finals: string[]; lastFinalEndMs: number }) {
    if (!saved) return;
    this.finals = saved.finals;
    this.lastFinalEndMs = saved.lastFinalEndMs;
  }

  /** A transcript's clock only: how far the recogniser has heard. */
  heardUpTo(t: Transcript): void {
    this.heardMs = Math.max(this.heardMs, t.endMs);
  }

  /** A transcript that belongs to the turn being collected. */
  add(t: Transcript): void {
    if (!t.final) {
      this.partial = t.text;
      this.partialStable = t.stable;
      return;
    }
    if (t.text.trim() !== '') this.finals.push(t.text.trim());
    // A turn's text is at most LIMITS.textChars: a user who never pauses keeps their latest words.
    while (this.finals.length > 1 && this.finals.join(' ').length > LIMITS.textChars) this.finals.shift();
    this.partial = '';
    this.partialStable = false;
    this.lastFinalEndMs = Math.max(this.lastFinalEndMs, t.endMs);
  }

  /** The words so far, at most what one turn message may carry (the newest). */
  get text(): string {
    return [...this.finals, this.partial]
      .filter((t) => t.trim() !== '')
      .join(' ')
      .trim()
      .slice(-LIMITS.textChars)
      .trim();
  }

  /** The finals alone (what a partial adds to). */
  get settledText(): string {
    return this.finals.join(' ');
  }

  /** The recogniser's final for speech that stopped at `endMs` is in, and nothing newer is being heard. */
  finalFor(endMs: number, upToResumed = true): boolean {
    return (
      this.lastFinalEndMs >= endMs - FINAL_COVER_MS &&
      (!upToResumed || this.lastFinalEndMs <= endMs + RESUMED_MARGIN_MS) &&
      this.partial === ''
    );
  }

  /** A partial the recogniser has stopped changing. */
  get stablePartial(): boolean {
    return this.partialStable && this.partial !== '';
  }

  /** The recogniser has not yet heard up to the end of speech that stopped at `endMs`. */
  behind(endMs: number): boolean {
    return this.heardMs < endMs - FINAL_COVER_MS;
  }

  /** Words said before these (a turn sent unfinished that the user carried on). */
  prepend(text: string): void {
    this.finals.unshift(text);
  }

  clear(): void {
    this.finals = [];
    this.partial = '';
  }
}
