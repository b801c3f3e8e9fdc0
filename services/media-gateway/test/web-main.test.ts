import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnNode, startNatsServer, type NatsServerHandle } from '@va/testkit';

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

let nats: NatsServerHandle;
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(async () => {
  await nats?.stop();
});

describe('media-gateway with GATEWAY_TRANSPORT=web', () => {
  it('serves the talk page from dist/ and stops cleanly on SIGTERM', async () => {
    const gateway = spawnNode(MAIN, {
      env: { NATS_URL: nats.url, GATEWAY_TRANSPORT: 'web', GATEWAY_WEB_PORT: '0', LOG_LEVEL: 'info' },
      maxLifetimeSec: 60,
    });
    const ready = await gateway.waitForJson<{ url: string }>((l) => l.msg === 'talk page ready', 30_000);
    expect(ready.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+/);
    const page = await fetch(ready.url);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<script');
    expect(await gateway.stop(10_000)).toEqual({ code: 0, signal: null });
  });
});
