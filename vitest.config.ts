import { defineConfig } from 'vitest/config';

/**
 * Tests that run the whole pipeline (seven processes, real-time speech): on a 2-core machine two of them at once
 * starve each other and their timing-based turn-taking goes wrong, so they run one after another, after the rest.
 */
const PIPELINE = [
  'e2e/test/**/*.test.ts',
  'services/media-gateway/test/browser.test.ts',
  'services/media-gateway/test/failover.test.ts',
  'bench/test/**/*.test.ts',
];

const shared = {
  // Tests start real nats-servers and child processes: give them room.
  testTimeout: 60_000,
  hookTimeout: 60_000,
  pool: 'forks' as const,
  // In-process services log at warn; children that tests read logs from set LOG_LEVEL themselves. The stages'
  // load limits are lenient here: on a 2-core CI machine running other tests at once, a slow second is the
  // machine's, not the stage's (the load monitor has its own tests; the bench runs with the real limits).
  env: { LOG_LEVEL: 'warn', VA_LOG_CONSOLE: '1', VA_LOAD_MAX_EVENT_LOOP_DELAY_MS: '5000', VA_LOAD_MAX_CPU: '0' },
};

export default defineConfig({
  test: {
    maxWorkers: 2,
    // What a test printed (its services' logs included, see VA_LOG_CONSOLE) is shown only when it fails.
    silent: 'passed-only',
    projects: [
      {
        test: {
          ...shared,
          name: 'unit',
          include: [
            'libs/*/test/**/*.test.ts',
            'services/*/test/**/*.test.ts',
            'examples/tools/*/test/**/*.test.ts',
            'scripts/test/**/*.test.ts',
            'deploy/test/**/*.test.ts',
          ],
          exclude: [...PIPELINE, '**/node_modules/**'],
          fileParallelism: true,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          ...shared,
          name: 'pipeline',
          include: PIPELINE,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
