/**
 * What went wrong with a provider, in terms a caller can act on: fail over (`retryable`), tell the operator
 * (`auth`), or give up on this input (`bad-request`). Every adapter throws these, never a raw SDK or socket error
 * (the original is the `cause`). Messages never contain keys.
 */
export type ProviderErrorKind =
  /** The key was refused (401/403). Not retryable: another attempt fails the same way. */
  | 'auth'
  /** The provider could not be reached, or the connection dropped. */
  | 'connection'
  /** No answer (or first byte/token) within the time allowed. */
  | 'timeout'
  /** 429 / quota. */
  | 'rate-limit'
  /** 5xx, or the provider reported an internal error. */
  | 'server'
  /** The request was refused as invalid (4xx other than the above). */
  | 'bad-request';

const RETRYABLE: ReadonlySet<ProviderErrorKind> = new Set(['connection', 'timeout', 'rate-limit', 'server']);

export class ProviderError extends Error {
  override readonly name = 'ProviderError';
  readonly retryable: boolean;

  constructor(
    readonly provider: string,
    readonly kind: ProviderErrorKind,
    message: string,
    options?: { cause?: unknown; status?: number },
  ) {
    super(`${provider}: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.retryable = RETRYABLE.has(kind);
    this.status = options?.status;
  }

  readonly status: number | undefined;
}

/** The error kind an HTTP status means. */
export function kindOfStatus(status: number): ProviderErrorKind {
  if (status === 401 || status === 403) return 'auth';
  if (status === 408) return 'timeout';
  if (status === 429) return 'rate-limit';
  if (status >= 500) return 'server';
  return 'bad-request';
}

/** Removes anything that looks like a secret from text bound for logs or spans (keys in URLs or headers). */
export function redact(text: string, secrets: readonly (string | undefined)[] = []): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join('***');
  return out
    .replace(
      /(authorization|xi-api-key|api[_-]?key|token)(["']?\s*[:=]\s*["']?)(Bearer |Token )?[^\s"',&]+/gi,
      '$1$2$3***',
    )
    .replace(/\b(sk|gsk|csk)-[A-Za-z0-9_-]{8,}/g, '$1-***');
}
