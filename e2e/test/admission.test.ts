import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { dither } from '@va/audio';
import { startPipeline, startWebGateway, type Pipeline, type RunningGateway } from '@va/e2e';
import { ATTR, METRIC } from '@va/telemetry';
import { speak, waitFor } from '@va/testkit';

/**
 * Load-aware admission end to end: the turn-detector holds two sessions (VA_SESSION_CAPACITY, the same refusal
 * path the load monitor takes when an instance is overloaded); the talk page's third and fourth callers hear
 * "busy, try again" while the two admitted conversations go on unharmed; a second turn-detector instance makes
 * room and the next caller is admitted.
 */
const FRAME = 320;

interface PageClient {
  ws: WebSocket;
  events: { type: string; [k: string]: unknown }[];
  closed: Promise<{ code: number; reason: string }>;
}

function open(gateway: RunningGateway): Promise<PageClient> {
  const ws = new WebSocket(`${gateway.url.replace('http', 'ws')}/ws`);
  const c: PageClient = {
    ws,
    events: [],
    closed: new Promise((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString() }))),
  };
  ws.on('message', (data: Buffer, isBinary) => {
    if (!isBinary) c.events.push(JSON.parse(data.toString()) as PageClient['events'][number]);
  });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(c));
    ws.once('error', reject);
  });
}

/** Speaks `pcm` into the page's socket in real time (20 ms frames), then a second of quiet. */
async function talk(c: PageClient, pcm: Int16Array): Promise<void> {
  const quiet = dither(new Int16Array(50 * FRAME), 6, 5);
  const all = new Int16Array(pcm.length + quiet.length);
  all.set(pcm);
  all.set(quiet, pcm.length);
  const start = performance.now();
  for (let i = 0; i * FRAME < all.length; i++) {
    const f = all.subarray(i * FRAME, (i + 1) * FRAME);
    c.ws.send(Buffer.from(f.buffer, f.byteOffset, f.byteLength));
    const wait = start + (i + 1) * 20 - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
}

let pipeline: Pipeline;
let gateway: RunningGateway;

beforeAll(async () => {
  pipeline = await startPipeline({
    fastLlm: { ttftMs: 50, tokensPerSecond: 200 },
    deepLlm: { ttftMs: 80, tokensPerSecond: 200 },
    env: {
      STT_PROVIDER: 'timed',
      TIMED_STT_TEXTS: JSON.stringify(['what is the weather like today']),
      TTS_PROVIDER: 'fake',
      TTS_FAKE_MS_PER_CHAR: '5',
      VA_HEARTBEAT_MS: '200',
      VA_LEASE_MS: '700',
    },
    stageEnv: { 'turn-detector': { VA_SESSION_CAPACITY: '2' } },
  });
  gateway = await startWebGateway(pipeline, { env: { GATEWAY_OPEN_TIMEOUT_MS: '3000', LOG_LEVEL: 'info' } });
}, 120_000);

afterAll(async () => {
  await gateway?.stop();
  await pipeline?.stop();
});

describe('admission when a stage is full', () => {
  it('refuses the callers beyond capacity with "busy, try again", keeps the admitted ones whole, and admits again when a second instance starts', async () => {
    const speech = (await speak('what is the weather like today')).samples;
    const admitted = [await open(gateway), await open(gateway)];
    for (const c of admitted) await waitFor(() => c.events.some((e) => e.type === 'ready'), { message: 'ready' });

    // Beyond capacity: the page is told why, and the socket closes with 1013 (Try Again Later).
    const turnedAway = [await open(gateway), await open(gateway)];
    for (const c of turnedAway) {
      const closed = await c.closed;
      expect(closed).toEqual({ code: 1013, reason: 'busy, try again' });
      const error = c.events.find((e) => e.type === 'error');
      expect(error).toMatchObject({ code: 'busy' });
      expect(String(error!.message)).toMatch(/turn-detector/);
      expect(c.events.some((e) => e.type === 'ready')).toBe(false);
    }

    // The admitted conversations lose nothing: each turn is heard, answered and played.
    await Promise.all(admitted.map((c) => talk(c, speech)));
    for (const c of admitted) {
      const played = await waitFor(() => c.events.find((e) => e.type === 'playout' && e.interrupted === false), {
        timeoutMs: 20_000,
        message: 'the admitted session’s turn was answered and played',
      });
      expect(typeof played.e2eMs).toBe('number');
    }

    // A second turn-detector instance has room: the next caller is admitted.
    const second = pipeline.spawnStage('turn-detector');
    await second.child.waitForJson((l) => l.msg === 'actor host started', 60_000);
    const next = await waitFor(
      async () => {
        const c = await open(gateway);
        const outcome = await Promise.race([
          waitFor(() => c.events.some((e) => e.type === 'ready'), { timeoutMs: 5000 }).then(() => 'ready'),
          c.closed.then(() => 'closed'),
        ]);
        return outcome === 'ready' ? c : undefined;
      },
      { timeoutMs: 20_000, message: 'a caller admitted after the second instance started' },
    );
    expect(next.events.some((e) => e.type === 'error')).toBe(false);
    for (const c of [...admitted, next]) c.ws.close(1000, 'done');

    // Which stage was full is counted and logged by the gateway.
    await gateway.stop();
    const refusals = await waitFor(() => {
      const points = pipeline.otlp
        .metrics()
        .filter((m) => m.name === METRIC.sessionsRefused && m.serviceName === 'media-gateway')
        .flatMap(
          (m) =>
            m.dataPoints as {
              asInt?: string | number;
              asDouble?: number;
              attributes?: { key: string; value: { stringValue?: string } }[];
            }[],
        );
      const last = points.filter((p) =>
        p.attributes?.some((a) => a.key === ATTR.stage && a.value.stringValue === 'turn-detector'),
      );
      const point = last[last.length - 1];
      return point ? Number(point.asInt ?? point.asDouble) : undefined;
    });
    expect(refusals).toBeGreaterThanOrEqual(2);
    const logged = gateway.child
      .jsonLines()
      .filter((l) => (l as { msg?: string }).msg === 'session refused: the pipeline is full');
    expect(logged[0]).toMatchObject({ stage: 'turn-detector' });
  }, 180_000);
});
