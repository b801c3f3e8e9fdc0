import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { SessionId } from '@va/protocol';

/** Why a resume token was refused (the page is told; the session is not touched). */
export class ResumeRefusedError extends Error {
  constructor(readonly reason: 'malformed' | 'forged' | 'expired') {
    super(`resume token ${reason}`);
    this.name = 'ResumeRefusedError';
  }
}

/**
 * Resume tokens: `<sessionId>.<expiry ms, base36>.<HMAC-SHA256 of both, base64url>`, signed with a secret every
 * gateway instance shares (GATEWAY_RESUME_SECRET), so a page can present its token to any of them and no one
 * without it can attach to a session. Short-lived: the gateway serving the page sends a fresh one well before
 * the last expires.
 */
export class ResumeTokens {
  private readonly key: Buffer;

  constructor(
    secret: string | undefined,
    /** How long a token is good for. */
    readonly ttlMs: number,
  ) {
    if (secret !== undefined && Buffer.byteLength(secret) < 16) {
      throw new Error('GATEWAY_RESUME_SECRET must be at least 16 bytes');
    }
    // Without a shared secret, only this instance can resume its own sessions (the page lost its socket).
    this.key = secret !== undefined ? Buffer.from(secret) : randomBytes(32);
  }

  issue(sessionId: string, now = Date.now()): string {
    const body = `${sessionId}.${(now + this.ttlMs).toString(36)}`;
    return `${body}.${this.sign(body)}`;
  }

  /** The session a token is for; throws ResumeRefusedError when it is malformed, forged or expired. */
  verify(token: string, now = Date.now()): SessionId {
    const parts = token.split('.');
    if (parts.length !== 3) throw new ResumeRefusedError('malformed');
    const [sid, expiry, signature] = parts as [string, string, string];
    const parsed = SessionId.safeParse(sid);
    const expiresAt = parseInt(expiry, 36);
    if (!parsed.success || !Number.isFinite(expiresAt)) throw new ResumeRefusedError('malformed');
    const want = Buffer.from(this.sign(`${sid}.${expiry}`));
    const got = Buffer.from(signature);
    if (got.length !== want.length || !timingSafeEqual(got, want)) throw new ResumeRefusedError('forged');
    if (expiresAt <= now) throw new ResumeRefusedError('expired');
    return parsed.data;
  }

  private sign(body: string): string {
    return createHmac('sha256', this.key).update(body).digest('base64url');
  }
}
