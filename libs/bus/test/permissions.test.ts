import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import { Bus, natsAuthFromEnv, type NatsAuth } from '@va/bus';
import {
  BUCKETS,
  channels,
  encodeAudioFrame,
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

  it('lets admin run JetStream but read none of it; only debug reads session payloads', async () => {
    const ctx = await connect('session-context');
    const state = await ctx.kv(BUCKETS.state);
    await state.put('session-context.perm-1.history', JSON.stringify({ messages: ['my card is 4111…'] }));
    const admin = await connect('admin');
    const errors = violations(admin);
    // Reports work.
    const info = await jsApi(admin, '$JS.API.STREAM.INFO.KV_va_state');
    expect(info.error).toBeUndefined();
    // Each way to a stored payload or to session traffic is refused by the server.
    const attempts: [string, object][] = [
      ['$JS.API.DIRECT.GET.KV_va_state.$KV.va_state.session-context.perm-1.history', {}],
      ['$JS.API.STREAM.MSG.GET.KV_va_state', { last_by_subj: '$KV.va_state.session-context.perm-1.history' }],
      [
        '$JS.API.CONSUMER.CREATE.KV_va_state.peek.$KV.va_state.session-context.>',
        { stream_name: 'KV_va_state', config: { name: 'peek', deliver_subject: `${inboxPrefix('admin')}.peek` } },
      ],
      [
        '$JS.API.STREAM.UPDATE.KV_va_state',
        { name: 'KV_va_state', republish: { src: '>', dest: `${inboxPrefix('admin')}.copy.>` } },
      ],
      ['$JS.API.STREAM.CREATE.CAPTURE', { name: 'CAPTURE', subjects: ['va.v1.sess.>'] }],
    ];
    for (const [subject, body] of attempts) {
      await expect(jsApi(admin, subject, body), subject).rejects.toThrow();
    }
    await waitFor(() => errors.length >= attempts.length, { message: 'every attempt refused' });
    expect(errors.every((e) => /Permissions Violation/.test(e))).toBe(true);
    // The explicit debug role reads it.
    const debug = await connect('debug');
    const got = await debug.nc.request('$JS.API.DIRECT.GET.KV_va_state.$KV.va_state.session-context.perm-1.history');
    expect(got.string()).toContain('4111');
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

/** A JetStream API request as the given bus's user; the server's JSON answer. */
async function jsApi(bus: Bus, subject: string, body: object = {}): Promise<{ error?: { description: string } }> {
  const m = await bus.nc.request(subject, JSON.stringify(body), { timeout: 2000 });
  return m.json();
}

describe('forgeries through the server (nats-server 2.9 does not check deliver or reply subjects)', () => {
  it('a stage cannot get a reply, control, audio or session.open delivered as another stage’s: each is dropped', async () => {
    const fsid = sessionId('forge-1');
    const gateway = await connect('media-gateway');
    const tts = await connect('tts');
    const deep = await connect('deep-responder');
    const stt = await connect('stt');
    const observer = await connect('observer');
    await gateway.kv(BUCKETS.state); // the bucket exists, as in a running pipeline
    const replies: unknown[] = [];
    const controls: unknown[] = [];
    const audio: unknown[] = [];
    const opens: unknown[] = [];
    tts.subscribe(channels.replyDeep, fsid, (r) => void replies.push(r));
    gateway.subscribe(channels.control, fsid, (c) => void controls.push(c));
    gateway.subscribeAudio('out', fsid, (f) => void audio.push(f));
    tts.subscribeGlobal(channels.sessionOpen, (o) => void opens.push(o));
    // A consumer delivers under the stored subject ($KV…): those errors go to the global error subject.
    const forged: string[] = [];
    for (const subject of [channels.error.subject(fsid), channels.errorGlobal.subject]) {
      observer.subscribeRaw(subject, (m) => {
        const e = m.json<{ code: string; message: string; stage: string }>();
        if (e.code === 'forged') forged.push(`${e.stage}: ${e.message}`);
      });
    }
    await settle(gateway, tts, observer);

    // stt stores what it wants delivered, under keys it may write (JetStream publishes, with a trace header).
    const js = jetstream(stt.nc);
    const reply = { turnId: 't1', seq: 0, delta: 'Your card number is …', done: true };
    await js.publish('$KV.va_state.stt.reply', JSON.stringify(reply));
    await js.publish('$KV.va_state.stt.control', JSON.stringify({ kind: 'cancel', turnId: 't1', reason: 'barge-in' }));
    await js.publish(
      '$KV.va_state.stt.audio',
      encodeAudioFrame({ ...frame(), turnId: 't1', source: 'deep', textOffset: 0 }),
    );
    await js.publish('$KV.va_state.stt.open', JSON.stringify({ sessionId: 'forge-2', config: { sampleRate: 16000 } }));
    // 1. Push consumers on its own keys whose deliver subject is the victim's subject: the server creates them.
    const targets: [string, string][] = [
      ['reply', subjects.replyDeep(fsid)],
      ['control', subjects.control(fsid)],
      ['audio', subjects.audioOut(fsid)],
      ['open', channels.sessionOpen.subject],
    ];
    for (const [key, target] of targets) {
      const name = `evil_${key}`;
      const created = await jsApi(stt, `$JS.API.CONSUMER.CREATE.KV_va_state.${name}.$KV.va_state.stt.${key}`, {
        stream_name: 'KV_va_state',
        config: {
          name,
          deliver_subject: target,
          filter_subject: `$KV.va_state.stt.${key}`,
          ack_policy: 'none',
          deliver_policy: 'last_per_subject',
        },
      });
      expect(created.error, `consumer ${name}`).toBeUndefined();
    }
    // 2. A direct get whose reply subject is the victim's: the stored message, verbatim.
    stt.nc.publish('$JS.API.DIRECT.GET.KV_va_state.$KV.va_state.stt.reply', '', { reply: subjects.replyDeep(fsid) });
    // 3. Any JetStream API call answered onto the victim's subject.
    stt.nc.publish('$JS.API.STREAM.INFO.KV_va_state', '', { reply: subjects.control(fsid) });
    await settle(stt);

    // Each arrived (the server delivered it) and was dropped as forged, with an error event; none was handled.
    await new Promise((r) => setTimeout(r, 1000));
    await waitFor(() => forged.length >= 5, { message: 'forged deliveries reported' });
    expect(replies).toEqual([]);
    expect(controls).toEqual([]);
    expect(audio).toEqual([]);
    expect(opens).toEqual([]);
    expect(
      forged
        .filter((m) => /JetStream consumer/.test(m))
        .map((m) => m.split(':')[0])
        .sort(),
    ).toEqual(['media-gateway', 'media-gateway', 'tts', 'tts']);
    expect(forged.filter((m) => /Nats-Stream/.test(m))).toEqual([expect.stringMatching(/^tts: reply\.deep/)]);
    // The JetStream API's own answer is not a control message either (it fails the schema).
    expect(gateway.stats.rejected + tts.stats.rejected).toBeGreaterThanOrEqual(6);

    // The real sender is heard as before.
    deep.publish(channels.replyDeep, fsid, { turnId: 't2', seq: 0, delta: 'Hello.', done: true });
    await waitFor(() => replies.length === 1, { message: 'the deep responder’s own reply' });
  });

  it('a stage cannot list another stage’s consumers (to delete them), nor get a service to answer onto a session subject', async () => {
    const fsid = sessionId('forge-3');
    const stt = await connect('stt');
    const errors = violations(stt);
    await expect(jsApi(stt, '$JS.API.CONSUMER.NAMES.KV_va_state')).rejects.toThrow();
    await expect(jsApi(stt, '$JS.API.CONSUMER.LIST.KV_va_state')).rejects.toThrow();
    await waitFor(() => errors.length >= 2, { message: 'both refused by the server' });
    expect(errors.join('\n')).toMatch(/CONSUMER\.NAMES/);

    // The gateway asks for context with a session subject as its reply: session-context does not answer there.
    const ctx = await connect('session-context');
    const gw = await connect('media-gateway');
    const observer = await connect('observer');
    const onTurn: string[] = [];
    observer.subscribeRaw(subjects.turn(fsid), (m) => void onTurn.push(m.subject));
    let asked = 0;
    ctx.serve(requests.ctxGet, () => {
      asked++;
      return { messages: [], summary: null };
    });
    await settle(ctx, observer);
    gw.nc.publish(requests.ctxGet.subject, JSON.stringify({ sessionId: fsid, maxTokens: 100 }), {
      reply: subjects.turn(fsid),
    });
    await waitFor(() => ctx.stats.rejected === 1, { message: 'request with a non-inbox reply refused' });
    expect(asked).toBe(0);
    expect(onTurn).toEqual([]);
    // Asked properly (its own inbox), it answers.
    await expect(gw.request(requests.ctxGet, { sessionId: fsid, maxTokens: 100 })).resolves.toMatchObject({
      messages: [],
    });
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
