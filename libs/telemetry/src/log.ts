import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Through `console.log` instead of straight to the stdout file descriptor: the test runner captures it per test and
 * shows it only for a test that failed (VA_LOG_CONSOLE=1, set by vitest.config.ts), so passing tests are quiet.
 */
const consoleDestination = { write: (line: string) => console.log(line.trimEnd()) };

/**
 * JSON lines on stdout, one logger per service, with the stage in every line. Level from LOG_LEVEL (default
 * info) unless given.
 */
export function createLogger(service: string, bindings: Record<string, unknown> = {}, level?: string): Logger {
  const options = {
    name: service,
    level: level ?? process.env.LOG_LEVEL ?? 'info',
    base: { service, pid: process.pid, ...bindings },
  };
  return process.env.VA_LOG_CONSOLE === '1' ? pino(options, consoleDestination) : pino(options);
}
