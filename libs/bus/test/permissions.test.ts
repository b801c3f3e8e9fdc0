import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus, natsAuthFromEnv, type NatsAuth } from '@va/bus';
import {
  BUCKETS,
  channels,
  inboxPrefix,
  NATS_USERS,
  passwordVariable,
  requests,
  sessionRequests,
  sessionId,
  subjects,
  type AudioFrame,
} from '@va/protocol';
import { startNatsServer, waitFor, type NatsServerHandle } from '@va/testkit';

const AUTH_CONF = fileURLToPath(new URL('../../../deploy/nats/auth.conf', import.meta.url));
const sid = sessionId('perm-1');
/** A fresh password per user and run: distinctive, so a leak into any log is easy to spot. */
const passwords = Object.fromEntries(NATS_USERS.map((u) => [u, `pw-PRIVACY-${u}-${randomBytes(6).toString('hex')}`]));
const cred = (user: string): NatsAuth => natsAuthFromEnv({ NATS_USER: user, NATS_PASSWORD: passwords[user] });

let nats: NatsServerHandle;
const buses: Bus[] = [];
/** Every log line of every connection of this file. */
const logged: string[] = [];
const logger = (name: string) =>
  pino(
    { name, level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        logged.push(chunk.toString());
        done();
      },
    }),
  );

async function connect(user: string, auth: NatsAuth = cred(user)): Promise<Bus> {
  const bus = await Bus.connect({ stage: user, servers: nats.url, auth, logger: logger(user) });
  buses.push(bus);
  return bus;
}

/** The permission errors the server reported to a connection. */
function violations(bus: Bus): string[] {
  const seen: string[] = [];
  void (async () => {
    for await (const s of bus.nc.status()) if (s.type === 'error') seen.push(String(s.error.message));
  })();
  return seen;
}

const frame = (): AudioFrame => ({ samples: new Int16Array(320), sampleRate: 16000, seq: 0, tsMs: 0 });
const settle = async (...bs: Bus[]) => {
  for (const b of bs) await b.nc.flush();
  await new Promise((r) => setTimeout(r, 100));
};

beforeAll(async () => {
  nats = await startNatsServer({
    config: readFileSync(AUTH_CONF, 'utf8'),
    env: Object.fromEntries(NATS_USERS.map((u) => [passwordVariable(u), passwords[u]!])),
  });
});

afterAll(async () => {
  await Promise.all(buses.map((b) => b.close()));
  await nats?.stop();
});

describe('the generated NATS users (deploy/nats/auth.conf) on a real server', () => {
  it('lets stt publish transcripts but not replies or agent audio', async () => {
    const stt = await connect('stt');
    const errors = violations(stt);
    const observer = await connect('observer');
    const seen: string[] = [];
    observer.subscribeRaw(subjects.sessionAll(sid), (m) => void seen.push(m.subject));
    await settle(observer);

    stt.publish(channels.transcript, sid, {
      text: 'hello',
      final: true,
      stable: true,
      confidence: 1,
      startMs: 0,
      endMs: 10,
    });
    stt.publish(channels.replyFast, sid, { turnId: 't1', seq: 0, delta: 'not mine', done: false });
    stt.publishAudio('out', sid, frame());
    await settle(stt, observer);

    expect(seen).toEqual([subjects.transcript(sid)]);
    expect(errors).toEqual([
      `Permissions Violation for Publish to "${subjects.replyFast(sid)}"`,
      `Permissions Violation for Publish to "${subjects.audioOut(sid)}"`,
    ]);
  });

  it('lets tts speak but not put words in the user’s mouth', async () => {
    const tts = await connect('tts');
    const errors = violations(tts);
    const gateway = await connect('media-gateway');
    const heard: string[] = [];
    gateway.subscribeAudio('out', sid, () => void heard.push('audio.out'));
    gateway.subscribe(channels.transcript, sid, () => void heard.push('transcript'));
    await settle(gateway);

    tts.publishAudio('out', sid, frame());
    tts.publish(channels.transcript, sid, {
      text: 'forged',
      final: true,
      stable: true,
      confidence: 1,
      startMs: 0,
      endMs: 10,
    });
    await settle(tts, gateway);
    expect(heard).toEqual(['audio.out']);
    expect(errors).toEqual([`Permissions Violation for Publish to "${subjects.transcript(sid)}"`]);
  });

  it('refuses subscriptions outside a stage’s channels, and other users’ reply inboxes', async () => {
    const stt = await connect('stt');
    const errors = violations(stt);
    for (const subject of [subjects.replyDeep(sid), '_INBOX.>', `${inboxPrefix('session-context')}.>`, 'va.v1.>']) {
      stt.subscribeRaw(subject, () => undefined);
    }
    await settle(stt);
    await waitFor(() => errors.length === 4, { timeoutMs: 2000 });
    expect(errors).toEqual([
      `Permissions Violation for Subscription to "${subjects.replyDeep(sid)}"`,
      'Permissions Violation for Subscription to "_INBOX.>"',
      `Permissions Violation for Subscription to "${inboxPrefix('session-context')}.>"`,
      'Permissions Violation for Subscription to "va.v1.>"',
    ]);
  });

  it('scopes KV to a stage’s own keys: its leases and state, not another stage’s', async () => {
    const stt = await connect('stt');
    const leases = await stt.kv(BUCKETS.leases);
    const state = await stt.kv(BUCKETS.state);
    expect(await leases.create(`stt.${sid}`, '{}')).toBeGreaterThan(0);
    expect((await leases.get(`stt.${sid}`))?.string()).toBe('{}');
    await expect(leases.put(`tts.${sid}`, '{}')).rejects.toThrow(/Permissions Violation/);
    await expect(leases.get(`tts.${sid}`)).rejects.toThrow(/Permissions Violation/);
    // session-context's history is out of reach, for reading and for watching.
    await expect(state.get(`session-context.${sid}.history`)).rejects.toThrow(/Permissions Violation/);
    await expect(state.watch({ key: 'session-context.>' })).rejects.toThrow(/Permissions Violation/);
    const watch = await leases.watch({ key: 'stt.>' });
    const keys: string[] = [];
    void (async () => {
      for await (const e of watch) keys.push(`${e.key} ${e.operation}`);
    })();
    await waitFor(() => keys.length === 1, { timeoutMs: 3000 });
    await leases.delete(`stt.${sid}`);
    await waitFor(() => keys.length === 2, { timeoutMs: 3000 });
    watch.stop();
    expect(keys).toEqual([`stt.${sid} PUT`, `stt.${sid} DEL`]);
  });

  it('lets the responders read and watch session-context’s history, never write it', async () => {
    const context = await connect('session-context');
    const written = await context.kv(BUCKETS.state);
    await written.put(`session-context.${sid}.history`, '{"summary":null,"summarized":0,"entries":[]}');
    for (const user of ['fast-responder', 'deep-responder']) {
      const responder = await connect(user);
      const state = await responder.kv(BUCKETS.state);
      expect((await state.get(`session-context.${sid}.history`))?.string()).toContain('"entries":[]');
      const watch = await state.watch({ key: 'session-context.>' });
      const seen: string[] = [];
      void (async () => {
        for await (const e of watch) seen.push(e.key);
      })();
      await waitFor(() => seen.includes(`session-context.${sid}.history`), { timeoutMs: 3000 });
      watch.stop();
      await expect(state.put(`session-context.${sid}.history`, '{}')).rejects.toThrow(/Permissions Violation/);
      // Its own keys as before; tts's state stays out of reach.
      expect(await state.put(`${user}.${sid}.answering`, '{}')).toBeGreaterThan(0);
      await expect(state.get(`tts.${sid}.x`)).rejects.toThrow(/Permissions Violation/);
    }
  });

  it('lets only the gateway open sessions and ask for context, and only session-context answer', async () => {
    const stt = await connect('stt');
    const errors = violations(stt);
    stt.publishGlobal(channels.sessionOpen, { sessionId: sid, config: { sampleRate: 16000 } });
    await expect(stt.request(requests.ctxGet, { sessionId: sid, maxTokens: 10 }, { timeoutMs: 500 })).rejects.toThrow(
      /Permissions Violation/,
    );
    stt.subscribeRaw(subjects.ctxGet, () => undefined);
    await settle(stt);
    await waitFor(() => errors.length === 3, { timeoutMs: 2000 });
    expect(errors.sort()).toEqual(
      [
        `Permissions Violation for Publish to "${subjects.sessionOpen}"`,
        `Permissions Violation for Publish to "${subjects.ctxGet}"`,
        `Permissions Violation for Subscription to "${subjects.ctxGet}"`,
      ].sort(),
    );

    const context = await connect('session-context');
    context.serve(requests.ctxGet, () => ({ messages: [], summary: '' }));
    await settle(context);
    const gateway = await connect('media-gateway');
    await expect(gateway.request(requests.ctxGet, { sessionId: sid, maxTokens: 10 })).resolves.toEqual({
      messages: [],
      summary: '',
    });
  });

  it('lets stt ask the gateway to replay the microphone, and no other stage', async () => {
    const gateway = await connect('media-gateway');
    gateway.serveSession(sessionRequests.audioReplay, sid, ({ fromMs }) => ({
      fromMs,
      sampleRate: 16000 as const,
      seq: 0,
      nextSeq: 0,
      pcm: '',
    }));
    await settle(gateway);
    const stt = await connect('stt');
    await expect(stt.requestSession(sessionRequests.audioReplay, sid, { fromMs: 40 })).resolves.toMatchObject({
      fromMs: 40,
    });
    const tts = await connect('tts');
    await expect(
      tts.requestSession(sessionRequests.audioReplay, sid, { fromMs: 0 }, { timeoutMs: 500 }),
    ).rejects.toThrow(/Permissions Violation/);
  });

  it('refuses a wrong password, an unknown user and no credentials at all', async () => {
    await expect(connect('stt', { kind: 'password', user: 'stt', password: 'wrong' })).rejects.toThrow(
      /Authorization Violation/,
    );
    await expect(connect('intruder', { kind: 'password', user: 'intruder', password: 'x' })).rejects.toThrow(
      /Authorization Violation/,
    );
    await expect(connect('anon', { kind: 'none' })).rejects.toThrow(/Authorization Violation/);
  });

  it('never logs a password', () => {
    expect(logged.some((l) => l.includes('"msg":"nats connected"') && l.includes('"user":"stt"'))).toBe(true);
    const text = logged.join('\n');
    for (const pw of Object.values(passwords)) expect(text).not.toContain(pw);
  });
});

describe('NATS credentials from the environment', () => {
  it('reads a user and password (or a password file), a token, or a creds file, and rejects contradictions', () => {
    const dir = mkdtempSync(join(tmpdir(), 'va-creds-'));
    try {
      writeFileSync(join(dir, 'pw'), 'from-a-file\n');
      expect(natsAuthFromEnv({})).toEqual({ kind: 'none' });
      expect(natsAuthFromEnv({ NATS_USER: 'stt', NATS_PASSWORD: 'p' })).toEqual({
        kind: 'password',
        user: 'stt',
        password: 'p',
        inboxPrefix: '_INBOX_stt',
      });
      expect(natsAuthFromEnv({ NATS_USER: 'media-gateway', NATS_PASSWORD_FILE: join(dir, 'pw') })).toEqual({
        kind: 'password',
        user: 'media-gateway',
        password: 'from-a-file',
        inboxPrefix: '_INBOX',
      });
      expect(natsAuthFromEnv({ NATS_TOKEN: 't', NATS_INBOX_PREFIX: '_INBOX_x' })).toEqual({
        kind: 'token',
        token: 't',
        inboxPrefix: '_INBOX_x',
      });
      expect(natsAuthFromEnv({ NATS_CREDS: '/x/stt.creds' })).toEqual({ kind: 'creds', credsFile: '/x/stt.creds' });
      expect(() => natsAuthFromEnv({ NATS_USER: 'stt' })).toThrow(/without a password/);
      expect(() => natsAuthFromEnv({ NATS_PASSWORD: 'p' })).toThrow(/without NATS_USER/);
      expect(() => natsAuthFromEnv({ NATS_USER: 'stt', NATS_PASSWORD: 'p', NATS_TOKEN: 't' })).toThrow(/only one/);
      expect(() => natsAuthFromEnv({ NATS_USER: 'stt', NATS_PASSWORD: 'p', NATS_PASSWORD_FILE: 'f' })).toThrow(
        /not both/,
      );
      // The error names the problem, never the secret.
      expect(() => natsAuthFromEnv({ NATS_USER: 'stt', NATS_PASSWORD_FILE: join(dir, 'missing') })).toThrow(
        /cannot read NATS_PASSWORD_FILE: ENOENT/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('connects with a token', async () => {
    const token = `tok-PRIVACY-${randomBytes(6).toString('hex')}`;
    const server = await startNatsServer({
      jetstream: false,
      config: 'authorization { token: $VA_TEST_TOKEN }\n',
      env: { VA_TEST_TOKEN: token },
    });
    try {
      const bus = await Bus.connect({
        stage: 'tok',
        servers: server.url,
        auth: natsAuthFromEnv({ NATS_TOKEN: token }),
        logger: logger('tok'),
      });
      expect(bus.connected).toBe(true);
      await bus.close();
      await expect(
        Bus.connect({
          stage: 'tok',
          servers: server.url,
          auth: { kind: 'token', token: 'nope' },
          logger: logger('tok'),
        }),
      ).rejects.toThrow(/Authorization Violation/);
      expect(logged.join('\n')).not.toContain(token);
    } finally {
      await server.stop();
    }
  });
});
