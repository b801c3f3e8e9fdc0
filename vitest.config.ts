import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'libs/*/test/**/*.test.ts',
      'services/*/test/**/*.test.ts',
      'scripts/test/**/*.test.ts',
      'bench/test/**/*.test.ts',
      'deploy/test/**/*.test.ts',
    ],
    // Tests start real nats-servers and child processes: give them room, and keep files apart.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
    // In-process services log at warn; children that tests read logs from set LOG_LEVEL themselves.
    env: { LOG_LEVEL: 'warn' },
  },
});
