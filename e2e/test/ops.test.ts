import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession } from '@va/actor';
import { Bus } from '@va/bus';
import { sessionId } from '@va/protocol';
import { METRIC } from '@va/telemetry';
import {
  spawnNode,
  startNatsServer,
  startOtlpReceiver,
  waitFor,
  type ChildHandle,
  type NatsServerHandle,
  type OtlpReceiver,
} from '@va/testkit';
import { serviceEntry } from '../src/pipeline.js';

/**
 * What an orchestrator sees of a service: the health endpoint (liveness, readiness with its reason) and the
 * metrics it exports over OTLP — from the built services, as Kubernetes and compose run them.
 */
let nats: NatsServerHandle;
let otlp: OtlpReceiver;
let client: Bus;

beforeAll(async () => {
  nats = await startNatsServer();
  otlp = await startOtlpReceiver();
  client = await Bus.connect({ stage: 'ops-test', servers: nats.url });
});

afterAll(async () => {
  await client?.close().catch(() => undefined);
  await nats?.stop();
  await otlp?.stop();
});

function start(stage: string, env: Record<string, string> = {}): ChildHandle {
  return spawnNode(serviceEntry(stage), {
    name: stage,
    maxLifetimeSec: 120,
    env: {
      NATS_URL: nats.url,
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint,
      OTEL_METRIC_EXPORT_INTERVAL: '200',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      LOG_LEVEL: 'info',
      VA_HEALTH_HOST: '127.0.0.1',
      VA_HEALTH_PORT: '0',
      ...env,
    },
  });
}

async function healthUrl(child: ChildHandle): Promise<string> {
  const line = await child.waitForJson<{ url: string }>((l) => l.msg === 'health endpoint ready', 30_000);
  return line.url;
}

async function probe(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** The latest value of a sum/gauge metric a service exported (OTLP JSON data point). */
function latest(name: string, service: string): number | undefined {
  const points = otlp
    .metrics()
    .filter((m) => m.name === name && m.serviceName === service)
    .flatMap((m) => m.dataPoints as { asInt?: string | number; asDouble?: number }[]);
  const last = points[points.length - 1];
  return last === undefined ? undefined : Number(last.asInt ?? last.asDouble);
}

describe('health and metrics of the built services', () => {
  it('a stage is live and ready, counts its sessions in its readiness and its exported gauge, and is not ready without NATS', async () => {
    const child = start('session-context');
    try {
      const url = await healthUrl(child);
      expect(await probe(`${url}/healthz`)).toMatchObject({
        status: 200,
        body: { status: 'ok', stage: 'session-context' },
      });
      expect(await probe(`${url}/readyz`)).toMatchObject({ status: 200, body: { ready: true, sessions: 0 } });

      const sid = sessionId('ops-s1');
      const acks = await openSession(
        client,
        sid,
        { sampleRate: 16000 },
        { stages: ['session-context'], timeoutMs: 10_000 },
      );
      expect(acks.map((a) => a.stage)).toEqual(['session-context']);
      expect(await probe(`${url}/readyz`)).toMatchObject({ status: 200, body: { ready: true, sessions: 1 } });
      // The active-sessions gauge the dashboards and the autoscaler read, per instance, over OTLP.
      await waitFor(() => latest(METRIC.sessionsOwned, 'session-context') === 1, {
        message: `${METRIC.sessionsOwned} = 1 exported`,
        timeoutMs: 10_000,
      });
      await waitFor(() => (latest(METRIC.sessionsClaimed, 'session-context') ?? 0) >= 1, {
        message: `${METRIC.sessionsClaimed} exported`,
      });

      // NATS goes away: not ready (the orchestrator stops sending work), but alive (a restart would not help).
      await nats.stop();
      await waitFor(
        async () => {
          const r = await probe(`${url}/readyz`);
          return r.status === 503 && r.body.reason === 'nats disconnected';
        },
        { message: 'readyz 503 while NATS is down' },
      );
      expect((await probe(`${url}/healthz`)).status).toBe(200);
    } finally {
      await child.stop(5000);
    }
  });
});

describe('health of the media gateway', () => {
  it('the web gateway is ready, and stops cleanly on SIGTERM', async () => {
    const fresh = await startNatsServer();
    const child = start('media-gateway', { NATS_URL: fresh.url, GATEWAY_TRANSPORT: 'web', GATEWAY_WEB_PORT: '0' });
    try {
      const url = await healthUrl(child);
      expect(await probe(`${url}/readyz`)).toMatchObject({ status: 200, body: { ready: true, transport: 'web' } });
      expect(await child.stop(10_000)).toEqual({ code: 0, signal: null });
    } finally {
      await child.stop(1000);
      await fresh.stop();
    }
  });
});
