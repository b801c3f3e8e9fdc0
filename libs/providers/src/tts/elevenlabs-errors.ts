import { ElevenLabsError, ElevenLabsTimeoutError } from '@elevenlabs/elevenlabs-js';
import { kindOfStatus, ProviderError, redact, type ProviderErrorKind } from '../errors.js';
import type { Received } from './elevenlabs-wire.js';

/** Typed errors of the ElevenLabs adapter, the API key redacted from every message. */
export class ElevenLabsErrors {
  constructor(
    private readonly provider: string,
    private readonly apiKey: string,
  ) {}

  make(kind: ProviderErrorKind, message: string, cause?: unknown, status?: number): ProviderError {
    return new ProviderError(this.provider, kind, redact(message, [this.apiKey]), { cause, status });
  }

  /** What the SDK threw (http transport). */
  fromSdk(err: unknown): ProviderError {
    if (err instanceof ProviderError) return err;
    if (err instanceof ElevenLabsTimeoutError) return this.make('timeout', err.message, err);
    if (err instanceof ElevenLabsError && err.statusCode !== undefined) {
      const body = typeof err.body === 'string' ? err.body : JSON.stringify(err.body ?? '');
      return this.make(kindOfStatus(err.statusCode), `HTTP ${err.statusCode}: ${body}`, err, err.statusCode);
    }
    return this.make('connection', err instanceof Error ? err.message : String(err), err);
  }

  /** `{"message": …, "error": "input_timeout_exceeded", "code": 1008}` and the like. */
  fromMessage(msg: Received): ProviderError {
    const text = `${msg.error ?? 'error'}: ${msg.message ?? ''}`.trim();
    return this.make(kindOfText(text) ?? 'server', text);
  }

  fromClose(code: number, reason: string): ProviderError {
    const text = `closed ${code}${reason ? ` ${reason}` : ''} before the end of the stream`;
    const kind = kindOfText(reason) ?? (code === 1008 ? 'bad-request' : code === 1011 ? 'server' : 'connection');
    return this.make(kind, text);
  }
}

function kindOfText(text: string): ProviderErrorKind | undefined {
  if (/api[_ -]?key|auth|unauthori[sz]ed|permission/i.test(text)) return 'auth';
  if (/quota|rate.?limit|too many|concurren/i.test(text)) return 'rate-limit';
  if (/timeout|timed out/i.test(text)) return 'timeout';
  if (/invalid|parse|unsupported|not allowed/i.test(text)) return 'bad-request';
  return undefined;
}
