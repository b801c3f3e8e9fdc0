import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines on stdout, one logger per service, with the stage in every line. Level from LOG_LEVEL (default
 * info) unless given.
 */
export function createLogger(service: string, bindings: Record<string, unknown> = {}, level?: string): Logger {
  return pino({
    name: service,
    level: level ?? process.env.LOG_LEVEL ?? 'info',
    base: { service, pid: process.pid, ...bindings },
  });
}
