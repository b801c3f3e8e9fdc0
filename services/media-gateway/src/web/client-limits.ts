/** How much of the talk page one client (an IP address) may use, so that no one client can lock others out. */
export interface ClientLimits {
  /** Sessions one client may hold at once. */
  maxSessionsPerClient: number;
  /** New connections one client may open per minute (a burst of a quarter of it at once). */
  connectsPerMinute: number;
}

export const CLIENT_LIMITS_DEFAULTS = {
  maxSessionsPerClient: 2,
  connectsPerMinute: 30,
} as const satisfies ClientLimits;

export type ClientRefusal = 'sessions-per-client' | 'connect-rate';

interface ClientEntry {
  open: number;
  /** Connect tokens left, refilled continuously up to the burst. */
  tokens: number;
  at: number;
}

/** Clients remembered at most: beyond it, those with no session and a full bucket are forgotten. */
const MAX_TRACKED = 10_000;

/** Per-client session count and connect rate (a token bucket per address). */
export class ClientLimiter {
  private readonly clients = new Map<string, ClientEntry>();
  private readonly burst: number;
  private readonly perMs: number;

  constructor(
    private readonly limits: ClientLimits = CLIENT_LIMITS_DEFAULTS,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.burst = Math.max(1, Math.ceil(limits.connectsPerMinute / 4));
    this.perMs = limits.connectsPerMinute / 60_000;
  }

  /** Takes a slot for `client`, or says why not; a taken slot is given back with `release`. */
  admit(client: string): ClientRefusal | undefined {
    const t = this.now();
    let e = this.clients.get(client);
    if (!e) {
      if (this.clients.size >= MAX_TRACKED) this.sweep(t);
      e = { open: 0, tokens: this.burst, at: t };
      this.clients.set(client, e);
    }
    e.tokens = Math.min(this.burst, e.tokens + (t - e.at) * this.perMs);
    e.at = t;
    if (e.tokens < 1) return 'connect-rate';
    e.tokens -= 1;
    if (e.open >= this.limits.maxSessionsPerClient) return 'sessions-per-client';
    e.open++;
    return undefined;
  }

  release(client: string): void {
    const e = this.clients.get(client);
    if (e && e.open > 0) e.open--;
  }

  /** Sessions `client` holds now. */
  openBy(client: string): number {
    return this.clients.get(client)?.open ?? 0;
  }

  private sweep(t: number): void {
    for (const [k, e] of this.clients) {
      if (e.open === 0 && e.tokens + (t - e.at) * this.perMs >= this.burst) this.clients.delete(k);
    }
  }
}
