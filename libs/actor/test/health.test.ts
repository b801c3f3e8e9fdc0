import { afterEach, describe, expect, it, vi } from 'vitest';
import { startHealthServer, type HealthServer, type Readiness } from '../src/health.js';

let server: HealthServer | undefined;
afterEach(async () => {
  vi.unstubAllGlobals();
  await server?.close();
  server = undefined;
});

async function get(path: string, method = 'GET'): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${server!.url}${path}`, { method });
  return { status: res.status, body: method === 'HEAD' ? {} : ((await res.json()) as Record<string, unknown>) };
}

describe('health endpoint', () => {
  it('liveness always answers; readiness follows the check, 503 with its reason', async () => {
    let readiness: Readiness = { ready: true, sessions: 2 };
    server = await startHealthServer({
      port: 0,
      host: '127.0.0.1',
      stage: 'stt',
      instanceId: 'i1',
      readiness: () => readiness,
    });
    expect(await get('/healthz')).toEqual({ status: 200, body: { status: 'ok', stage: 'stt', instanceId: 'i1' } });
    expect(await get('/readyz')).toEqual({
      status: 200,
      body: { stage: 'stt', instanceId: 'i1', ready: true, sessions: 2 },
    });
    readiness = { ready: false, reason: 'draining' };
    expect(await get('/readyz')).toMatchObject({ status: 503, body: { ready: false, reason: 'draining' } });
    expect((await get('/healthz')).status).toBe(200);
  });

  it('a throwing check is not ready (and says why); other paths 404, other methods 405, HEAD works', async () => {
    server = await startHealthServer({
      port: 0,
      host: '127.0.0.1',
      stage: 'tts',
      readiness: () => {
        throw new Error('boom');
      },
    });
    expect(await get('/readyz')).toMatchObject({
      status: 503,
      body: { ready: false, reason: expect.stringContaining('boom') },
    });
    expect((await get('/metrics')).status).toBe(404);
    expect((await get('/healthz', 'POST')).status).toBe(405);
    expect((await get('/healthz', 'HEAD')).status).toBe(200);
  });

  it('?gc=1 collects before reading the figures, only where the process exposes gc (npm run soak)', async () => {
    let heapUsedBytes = 100;
    server = await startHealthServer({
      port: 0,
      host: '127.0.0.1',
      stage: 'stt',
      readiness: () => ({ ready: true, heapUsedBytes }),
    });
    vi.stubGlobal('gc', undefined);
    expect((await get('/readyz?gc=1')).body).not.toHaveProperty('collected');
    const collections: number[] = [];
    vi.stubGlobal('gc', () => {
      collections.push(heapUsedBytes);
      heapUsedBytes = 40;
    });
    expect((await get('/readyz')).body).toMatchObject({ heapUsedBytes: 100 });
    expect(collections).toEqual([]);
    expect((await get('/readyz?gc=1')).body).toMatchObject({ heapUsedBytes: 40, collected: true });
    expect(collections).toEqual([100]);
  });
});
