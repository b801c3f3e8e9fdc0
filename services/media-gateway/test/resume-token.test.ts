import { describe, expect, it } from 'vitest';
import { ResumeRefusedError, ResumeTokens } from '../src/web/resume-token.js';

const SECRET = 'a-secret-every-gateway-shares';

function refusal(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof ResumeRefusedError) return err.reason;
    throw err;
  }
  return undefined;
}

describe('resume tokens', () => {
  it('any instance with the shared secret accepts a token for its session until it expires', () => {
    const a = new ResumeTokens(SECRET, 60_000);
    const b = new ResumeTokens(SECRET, 60_000);
    const now = Date.now();
    const token = a.issue('web-abc-123', now);
    expect(b.verify(token, now + 59_000)).toBe('web-abc-123');
    expect(refusal(() => b.verify(token, now + 60_000))).toBe('expired');
  });

  it('refuses a forged token: another session id, a longer life, another secret, or no secret shared', () => {
    const tokens = new ResumeTokens(SECRET, 60_000);
    const token = tokens.issue('web-abc-123');
    const [sid, expiry, signature] = token.split('.') as [string, string, string];
    expect(refusal(() => tokens.verify(`web-other-1.${expiry}.${signature}`))).toBe('forged');
    const later = (parseInt(expiry, 36) + 3_600_000).toString(36);
    expect(refusal(() => tokens.verify(`${sid}.${later}.${signature}`))).toBe('forged');
    expect(refusal(() => new ResumeTokens('another-secret-of-16b', 60_000).verify(token))).toBe('forged');
    expect(refusal(() => new ResumeTokens(undefined, 60_000).verify(token))).toBe('forged');
  });

  it('refuses what is not a token, and a secret too short to be one', () => {
    const tokens = new ResumeTokens(SECRET, 60_000);
    for (const bad of ['', 'abc', 'a.b.c.d', 'web bad.zz.sig', `web-1.${'!'}.sig`]) {
      expect(
        refusal(() => tokens.verify(bad)),
        bad,
      ).toBe('malformed');
    }
    expect(() => new ResumeTokens('short', 60_000)).toThrow(/16 bytes/);
  });
});
