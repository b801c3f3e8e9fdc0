import { ATTR, counter, METRIC } from '@va/telemetry';
import { HTTP_LIMITS_DEFAULTS, type HttpLimits } from '../http-limits.js';
import { CLIENT_LIMITS_DEFAULTS, type ClientLimits } from './client-limits.js';

/**
 * WebSocket close codes the page acts on. 1013 (Try Again Later): the gateway or the pipeline is full; 1008
 * (Policy Violation): the client broke a limit (message rate); 4000: no microphone audio for the idle timeout.
 * The page reconnects only after other codes (the gateway went away).
 */
export const CLOSE = { normal: 1000, badMessage: 1008, internal: 1011, overloaded: 1013, idle: 4000 } as const;

/** Limits of the web transport; every one has an env variable in `main.ts` (README "Security"). */
export interface WebLimits extends ClientLimits, HttpLimits {
  /** Sessions at once over all clients. */
  maxSessions: number;
  /** Larger messages are refused with an error (a 20 ms frame is 640 bytes). */
  maxMessageBytes: number;
  /** Messages one socket may send per second (the page sends 50); beyond, the socket is closed (1008). */
  maxMessagesPerSecond: number;
  /** A socket that sends no microphone audio for this long is closed (4000). */
  idleTimeoutMs: number;
  /** A ping this often; a socket that has not answered the previous one by then is cut off. */
  pingIntervalMs: number;
  /** Microphone audio waiting for the clock beyond this is dropped, oldest first (bounds the added latency). */
  maxQueueMs: number;
  /** Agent audio is not sent while this much is still unsent to a slow socket. */
  maxBufferedBytes: number;
  /** A socket with this much unsent (a client that does not read) is cut off: memory per client is bounded. */
  maxSendBufferBytes: number;
}

export const WEB_LIMITS_DEFAULTS = {
  ...CLIENT_LIMITS_DEFAULTS,
  ...HTTP_LIMITS_DEFAULTS,
  maxSessions: 8,
  maxMessageBytes: 64 * 1024,
  maxMessagesPerSecond: 200,
  idleTimeoutMs: 30_000,
  pingIntervalMs: 15_000,
  maxQueueMs: 500,
  maxBufferedBytes: 256 * 1024,
  maxSendBufferBytes: 1024 * 1024,
} as const satisfies WebLimits;

/** Counts a refused or cut-off client in `va.web.refused{va.reason}`. */
export function countRefusal(reason: string): void {
  counter(METRIC.webRefused).add(1, { [ATTR.refusal]: reason });
}
