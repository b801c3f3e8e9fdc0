import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInbox } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActorHost, closeSession, openSession } from '@va/actor';
import { Bus, natsAuthFromEnv } from '@va/bus';
import { runConversation } from '@va/e2e';
import { inboxPrefix, NATS_USERS, passwordVariable, sessionId, STAGES, subjects } from '@va/protocol';
import { startNatsServer, waitFor, wordAccuracy, type NatsServerHandle } from '@va/testkit';

/**
 * The generated least-privilege config (deploy/nats/auth.conf) is enough for the product: every stage claims
 * sessions, keeps its leases and state, and a whole conversation runs with each process on its own user.
 */
const AUTH_CONF = readFileSync(fileURLToPath(new URL('../../deploy/nats/auth.conf', import.meta.url)), 'utf8');
const passwords = Object.fromEntries(NATS_USERS.map((u) => [u, `pw-PRIVACY-${u}-${randomBytes(6).toString('hex')}`]));
const serverEnv = Object.fromEntries(NATS_USERS.map((u) => [passwordVariable(u), passwords[u]!]));
const ACTOR_STAGES = STAGES.filter((s) => s !== 'media-gateway');

const dir = mkdtempSync(join(tmpdir(), 'va-nats-auth-'));
/** session-context reads its password from a file (NATS_PASSWORD_FILE); the others from NATS_PASSWORD. */
function credentials(user: string): Record<string, string> {
  if (user !== 'session-context') return { NATS_USER: user, NATS_PASSWORD: passwords[user]! };
  const file = join(dir, `${user}.password`);
  writeFileSync(file, `${passwords[user]}\n`, { mode: 0o600 });
  return { NATS_USER: user, NATS_PASSWORD_FILE: file };
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the stages on a server with one user per stage', () => {
  let nats: NatsServerHandle;
  const buses: Bus[] = [];
  const hosts: ActorHost[] = [];
  /** Server errors (permission violations) any connection received. */
  const errors: string[] = [];
  const connect = async (user: string) => {
    const bus = await Bus.connect({
      stage: user,
      servers: nats.url,
      auth: natsAuthFromEnv(credentials(user)),
      logger: pino({ level: 'silent' }),
    });
    void (async () => {
      for await (const s of bus.nc.status()) if (s.type === 'error') errors.push(`${user}: ${s.error.message}`);
    })();
    buses.push(bus);
    return bus;
  };

  beforeAll(async () => {
    nats = await startNatsServer({ config: AUTH_CONF, env: serverEnv });
  });
  afterAll(async () => {
    await Promise.all(buses.map((b) => b.close()));
    await nats?.stop();
  });

  it('claims a session on all six stages, answers the micro-service pings, closes and drains cleanly', async () => {
    for (const stage of ACTOR_STAGES) {
      const host = new ActorHost({ stage, bus: await connect(stage), createActor: () => ({}), heartbeatMs: 200 });
      await host.start();
      hosts.push(host);
    }
    const gateway = await connect('media-gateway');
    const sid = sessionId('auth-1');
    const acks = await openSession(gateway, sid, { sampleRate: 16000 }, { stages: ACTOR_STAGES, timeoutMs: 5000 });
    expect(acks.map((a) => a.stage).sort()).toEqual([...ACTOR_STAGES].sort());
    for (const host of hosts) expect(host.sessionIds).toEqual([sid]);

    // The observer finds every stage's service and asks one instance for its sessions.
    const observer = await connect('observer');
    const inbox = createInbox(inboxPrefix('observer'));
    const pongs: string[] = [];
    const sub = observer.nc.subscribe(inbox, { callback: (_e, m) => void pongs.push(m.json<{ name: string }>().name) });
    observer.nc.publish('$SRV.PING', '', { reply: inbox });
    await waitFor(() => pongs.length === ACTOR_STAGES.length, { timeoutMs: 3000 });
    sub.unsubscribe();
    expect(pongs.sort()).toEqual([...ACTOR_STAGES].sort());
    const tts = hosts.find((h) => h.stage === 'tts')!;
    const owned = await observer.nc.request(subjects.svcSessions('tts', tts.instanceId), '', { timeout: 2000 });
    expect(owned.json<{ sessions: string[] }>().sessions).toEqual([sid]);

    closeSession(gateway, sid);
    await waitFor(() => hosts.every((h) => h.sessionIds.length === 0), { timeoutMs: 3000 });
    await Promise.all(hosts.map((h) => h.drain()));
    await Promise.all(buses.map((b) => b.nc.flush()));
    expect(errors).toEqual([]);
  });
});

describe('a conversation with each process on its own NATS user', () => {
  it('answers the turn; no stage hits a permission it lacks, and no password reaches a log or a span', async () => {
    // Answered with the deep responder's tool: the `tool` channel (deep → context) is exercised too.
    const say = 'what time is it';
    const { report, stages, spans, exits } = await runConversation({
      script: { turns: [{ say, pauseMs: 400 }] },
      outDir: join(dir, 'out'),
      llmTtftMs: 100,
      llmTokensPerSecond: 80,
      nats: { config: AUTH_CONF, env: serverEnv },
      credentials,
    });
    expect(report.turns).toHaveLength(1);
    const turn = report.turns[0]!;
    expect(wordAccuracy(say, turn.transcript)).toBeGreaterThanOrEqual(0.8);
    expect(turn.opener.length).toBeGreaterThan(0);
    expect(turn.answer).toMatch(/\d{1,2}:\d{2} [AP]M/);
    expect(turn.tools).toEqual([{ name: 'get_local_time', outcome: 'ok', durationMs: expect.any(Number) }]);
    expect(new Set(spans.filter((s) => s.traceId === turn.traceId).map((s) => s.serviceName)).size).toBe(7);
    for (const [stage, exit] of Object.entries(exits)) expect(exit, stage).toEqual({ code: 0, signal: null });

    const gateway = stages.find((s) => s.stage === 'media-gateway')!.child;
    const opened = gateway.lines.map((l) => JSON.parse(l) as { msg?: string; stages?: string[] });
    const acks = opened.find((l) => l.msg === 'session opened')?.stages ?? [];
    expect(acks.map((a) => a.split('@')[0]).sort()).toEqual([...ACTOR_STAGES].sort());

    for (const { stage, child } of stages) {
      const connected = child.lines.find((l) => l.includes('"msg":"nats connected"'));
      expect(connected, stage).toContain(`"user":"${stage}"`);
      const logs = [...child.lines, ...child.stderr];
      const refused = logs.filter((l) => /"msg":"nats error"|subscription refused|Permissions Violation/i.test(l));
      expect(refused, stage).toEqual([]);
      const text = logs.join('\n');
      for (const pw of Object.values(passwords)) expect(text, stage).not.toContain(pw);
    }
    const spanText = JSON.stringify(spans);
    for (const pw of Object.values(passwords)) expect(spanText).not.toContain(pw);
  }, 180_000);
});
