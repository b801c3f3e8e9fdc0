import { existsSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Kvm } from '@nats-io/kv';
import { connect as connectNats } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import {
  freePort,
  spawnNode,
  startNatsServer,
  startOtlpReceiver,
  waitFor,
  type ChildHandle,
  type NatsServerHandle,
  type OtlpReceiver,
} from '../src/index.js';

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

/** Alive = exists and is not a zombie waiting for its (new) parent to reap it. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Connects and returns the first line the server sends, or the connection error code. */
function firstLine(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      data += chunk;
      if (data.includes('\n')) {
        socket.destroy();
        resolve(data.split('\n')[0]!);
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code}`));
  });
}

// Everything a test starts is stopped even when an assertion fails midway.
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.allSettled(cleanups.splice(0).map((stop) => stop()));
});
function track<T extends NatsServerHandle | OtlpReceiver | ChildHandle>(handle: T): T {
  cleanups.push(() => handle.stop());
  return handle;
}

describe('waitFor / freePort', () => {
  it('resolves with the first truthy value and times out with the message', async () => {
    let calls = 0;
    await expect(waitFor(() => (++calls >= 3 ? `done after ${calls}` : false))).resolves.toBe('done after 3');
    await expect(
      waitFor(
        () => {
          throw new Error('not listening');
        },
        { timeoutMs: 100, message: 'the thing' },
      ),
    ).rejects.toThrow(/timed out after 100 ms: the thing \(last error: Error: not listening\)/);
  });

  it('freePort returns a bindable loopback port', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    expect(await firstLine(port)).toBe('error ECONNREFUSED');
  });
});

describe('startNatsServer', () => {
  it('starts a JetStream server that answers INFO, and stop() removes it completely', async () => {
    const nats = track(await startNatsServer());
    expect(nats.url).toBe(`nats://127.0.0.1:${nats.port}`);
    expect(readFileSync(`/proc/${nats.pid}/comm`, 'utf8').trim()).toBe('nats-server');
    expect(existsSync(nats.storeDir)).toBe(true);

    const info = await firstLine(nats.port);
    expect(info.startsWith('INFO {')).toBe(true);
    expect(JSON.parse(info.slice('INFO '.length))).toMatchObject({ jetstream: true, port: nats.port });

    await nats.stop();
    expect(await firstLine(nats.port)).toBe('error ECONNREFUSED');
    expect(isAlive(nats.pid)).toBe(false);
    expect(existsSync(nats.storeDir)).toBe(false);
  });

  it('can start without JetStream, and two servers get different ports', async () => {
    const [a, b] = [track(await startNatsServer({ jetstream: false })), track(await startNatsServer())];
    expect(a.port).not.toBe(b.port);
    const info = JSON.parse((await firstLine(a.port)).slice('INFO '.length)) as { jetstream?: boolean };
    expect(info.jetstream ?? false).toBe(false);
  });

  it('restart() brings the server back on the same port with its JetStream store (a KV value survives)', async () => {
    const nats = track(await startNatsServer());
    const nc = await connectNats({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    try {
      const kv = await new Kvm(nc).create('restart_test');
      await kv.put('k', 'kept');
      const before = nats.pid;
      await nats.restart();
      expect(nats.pid).not.toBe(before);
      expect(isAlive(before)).toBe(false);
      expect(JSON.parse((await firstLine(nats.port)).slice('INFO '.length))).toMatchObject({ jetstream: true });
      // The client reconnects by itself and reads what was stored before the restart.
      const value = await waitFor(async () => (await kv.get('k'))?.string(), { message: 'KV value after restart' });
      expect(value).toBe('kept');
    } finally {
      await nc.close();
    }
  });

  it('stops itself after maxLifetimeSec', async () => {
    const nats = track(await startNatsServer({ maxLifetimeSec: 1 }));
    expect(isAlive(nats.pid)).toBe(true);
    await waitFor(() => !isAlive(nats.pid), { timeoutMs: 15_000, message: 'nats-server to end its own life' });
  });
});

describe('startOtlpReceiver', () => {
  const traceId = '5b8efff798038103d269b633813fc60c';
  const rootId = 'eee19b7ec3c1b174';
  const childId = 'eee19b7ec3c1b173';
  const payload = {
    resourceSpans: [
      {
        resource: {
          attributes: [
            { key: 'service.name', value: { stringValue: 'stt' } },
            { key: 'process.pid', value: { intValue: 4242 } },
          ],
        },
        scopeSpans: [
          {
            scope: { name: '@va/telemetry', version: '0.1.0' },
            spans: [
              {
                traceId,
                spanId: rootId,
                parentSpanId: '',
                name: 'turn',
                kind: 1,
                startTimeUnixNano: '1700000000000000000',
                endTimeUnixNano: '1700000000250000000',
                attributes: [{ key: 'va.session_id', value: { stringValue: 's-1' } }],
                status: { code: 0 },
              },
              {
                traceId,
                spanId: childId,
                parentSpanId: rootId,
                name: 'stt.transcribe',
                kind: 3,
                startTimeUnixNano: '1700000000010000000',
                endTimeUnixNano: '1700000000130500000',
                attributes: [
                  { key: 'va.ttfb_ms', value: { intValue: '120' } },
                  { key: 'va.confidence', value: { doubleValue: 0.93 } },
                  { key: 'va.interrupted', value: { boolValue: false } },
                  { key: 'va.words', value: { arrayValue: { values: [{ stringValue: 'hi' }, { intValue: '2' }] } } },
                ],
                status: { code: 2, message: 'boom' },
              },
            ],
          },
        ],
      },
    ],
  };
  const post = (receiver: OtlpReceiver, path: string, body: string, contentType = 'application/json') =>
    fetch(`${receiver.endpoint}${path}`, { method: 'POST', headers: { 'content-type': contentType }, body });

  it('accepts OTLP/HTTP JSON traces and flattens them', async () => {
    const receiver = track(await startOtlpReceiver());
    expect(receiver.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await post(receiver, '/v1/traces', JSON.stringify(payload));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({});

    const spans = await receiver.waitForSpans((all) => all.some((s) => s.name === 'stt.transcribe'));
    const root = spans.find((s) => s.name === 'turn')!;
    const child = spans.find((s) => s.name === 'stt.transcribe')!;
    expect(root).toMatchObject({ traceId, spanId: rootId, serviceName: 'stt', kind: 1, statusCode: 0 });
    expect(root.parentSpanId).toBeUndefined();
    expect(root.resource).toEqual({ 'service.name': 'stt', 'process.pid': 4242 });
    expect(root.attributes).toEqual({ 'va.session_id': 's-1' });
    expect(root.durationMs).toBe(250);
    expect(child).toMatchObject({ traceId, spanId: childId, parentSpanId: rootId, statusCode: 2, kind: 3 });
    expect(child.attributes).toEqual({
      'va.ttfb_ms': 120,
      'va.confidence': 0.93,
      'va.interrupted': false,
      'va.words': ['hi', 2],
    });
    expect(child.startMs).toBe(1_700_000_000_010);
    expect(child.endMs).toBe(1_700_000_000_130.5);
    expect(child.durationMs).toBeCloseTo(120.5, 6);

    receiver.clear();
    expect(receiver.spans()).toEqual([]);
  });

  it('flattens metrics', async () => {
    const receiver = track(await startOtlpReceiver());
    const metrics = {
      resourceMetrics: [
        {
          resource: { attributes: [{ key: 'service.name', value: { stringValue: 'tts' } }] },
          scopeMetrics: [
            {
              metrics: [
                { name: 'va.ttfb_ms', histogram: { dataPoints: [{ count: '2', sum: 30 }], aggregationTemporality: 2 } },
                { name: 'va.turns', sum: { dataPoints: [{ asInt: '5' }], isMonotonic: true } },
              ],
            },
          ],
        },
      ],
    };
    expect((await post(receiver, '/v1/metrics', JSON.stringify(metrics))).status).toBe(200);
    expect(receiver.metrics()).toEqual([
      { name: 'va.ttfb_ms', serviceName: 'tts', dataPoints: [{ count: '2', sum: 30 }] },
      { name: 'va.turns', serviceName: 'tts', dataPoints: [{ asInt: '5' }] },
    ]);
  });

  it('rejects protobuf with 415 and bad JSON with 400, storing nothing', async () => {
    const receiver = track(await startOtlpReceiver());
    const protobuf = await post(receiver, '/v1/traces', 'not really protobuf', 'application/x-protobuf');
    expect(protobuf.status).toBe(415);
    expect(await protobuf.text()).toMatch(/OTEL_EXPORTER_OTLP_PROTOCOL=http\/json/);
    expect((await post(receiver, '/v1/traces', '{"resourceSpans": [')).status).toBe(400);
    expect(receiver.spans()).toEqual([]);
  });

  it('waitForSpans times out naming the spans it did receive', async () => {
    const receiver = track(await startOtlpReceiver());
    await post(receiver, '/v1/traces', JSON.stringify(payload));
    await expect(receiver.waitForSpans((all) => all.some((s) => s.name === 'tts.synthesize'), 200)).rejects.toThrow(
      /received 2 spans: stt:turn, stt:stt.transcribe/,
    );
  });

  it('stop() closes the port', async () => {
    const receiver = await startOtlpReceiver();
    await receiver.stop();
    await expect(post(receiver, '/v1/traces', '{}')).rejects.toThrow();
  });
});

describe('spawnNode', () => {
  it('runs a .ts entry through tsx, collects JSON lines, and stop() reports the exit code', async () => {
    const child = track(
      spawnNode(fixture('json-lines.ts'), { args: ['--flag', 'x'], env: { FIXTURE_GREETING: 'hi' }, name: 'jl' }),
    );
    expect(child.name).toBe('jl');
    const ready = await child.waitForJson<{ pid: number; args: string[]; greeting: string }>((m) => m.type === 'ready');
    expect(ready).toEqual({ type: 'ready', pid: child.pid, args: ['--flag', 'x'], greeting: 'hi' });
    await child.waitForJson((m) => m.type === 'tick' && m.n >= 2);
    expect(await child.waitForLine((line) => line === 'a plain line')).toBe('a plain line');
    // Non-object JSON ('[1, 2]') and plain text are not JSON lines.
    expect(child.jsonLines().every((v) => typeof v === 'object' && v !== null && !Array.isArray(v))).toBe(true);
    expect(child.jsonLines().length).toBe(child.lines.length - 2);
    await waitFor(() => child.stderr.includes('something on stderr'));

    expect(await child.stop()).toEqual({ code: 3, signal: null });
    expect(child.lines.at(-1)).toBe('{"type":"stopping"}');
    expect(isAlive(child.pid)).toBe(false);
  });

  it('reports SIGKILL as the exit signal and the pid is the node process', async () => {
    const child = track(spawnNode(fixture('json-lines.ts')));
    await child.waitForJson((m) => m.type === 'ready');
    expect(readFileSync(`/proc/${child.pid}/comm`, 'utf8').trim()).toBe('node');
    child.kill('SIGKILL');
    expect(await child.exited).toEqual({ code: null, signal: 'SIGKILL' });
  });

  it('runs plain JS; waiting for a line that never comes fails with the last output', async () => {
    const child = track(spawnNode(fixture('exit-early.mjs')));
    await expect(child.waitForLine((line) => line === 'never')).rejects.toThrow(
      /exit-early\.mjs exited \(code 7[\s\S]*hello from exit-early[\s\S]*exit-early says goodbye/,
    );
    expect(await child.exited).toEqual({ code: 7, signal: null });
  });

  it('a waitFor timeout on a live child includes its recent output', async () => {
    const child = track(spawnNode(fixture('json-lines.ts')));
    // Started first (tsx can take a while on a busy machine): the timeout is about a line that never comes.
    await child.waitForJson((m) => m.type === 'tick', 20_000);
    await expect(child.waitForJson((m) => m.type === 'never', 300)).rejects.toThrow(
      /timed out after 300 ms[\s\S]*"type":"tick"/,
    );
  });

  it('kills the child after maxLifetimeSec', async () => {
    const child = track(spawnNode(fixture('json-lines.ts'), { maxLifetimeSec: 1 }));
    expect(await child.exited).toEqual({ code: null, signal: 'SIGKILL' });
  });
});

describe('cleanup when the owning process ends', () => {
  type Started = { natsPid: number; childPid: number; storeDir: string };

  it('exit hooks kill the nats-server and children of a process that exits', async () => {
    const owner = track(spawnNode(fixture('owner.ts'), { args: ['exit'] }));
    const started = await owner.waitForJson<Started>((m) => m.type === 'started', 20_000);
    expect(await owner.exited).toEqual({ code: 0, signal: null });
    await waitFor(() => !isAlive(started.natsPid) && !isAlive(started.childPid), { message: 'orphans to die' });
    expect(existsSync(started.storeDir)).toBe(false);
  });

  it('lifetime guards end them when the owner is SIGKILLed', async () => {
    const owner = track(spawnNode(fixture('owner.ts'), { args: ['hang', '2'] }));
    const started = await owner.waitForJson<Started>((m) => m.type === 'started', 20_000);
    owner.kill('SIGKILL');
    await owner.exited;
    await waitFor(() => !isAlive(started.childPid), { message: 'child to notice its parent is gone' });
    await waitFor(() => !isAlive(started.natsPid), { timeoutMs: 20_000, message: 'nats-server timeout wrapper' });
    // Nobody is left to remove the store directory after a SIGKILL; do it here.
    rmSync(started.storeDir, { recursive: true, force: true });
  });
});
