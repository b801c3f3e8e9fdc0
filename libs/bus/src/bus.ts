import { readFileSync } from 'node:fs';
import {
  connect,
  credsAuthenticator,
  headers as natsHeaders,
  type ConnectionOptions,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
} from '@nats-io/transport-node';
import { Kvm, type KV, type KvOptions } from '@nats-io/kv';
import { context as otelContext, type Context } from '@opentelemetry/api';
import {
  anySessionSubject,
  inboxPrefix,
  isInbox,
  channels,
  decodeAudioFrame,
  encodeAudioFrame,
  parseSessionSubject,
  subjects,
  type AudioFrame,
  type ErrorEvent,
  type GlobalChannel,
  type JsonChannel,
  type RequestChannel,
  type SessionRequestChannel,
  type SessionChannel,
  type SessionId,
  TURN_HEADER as PROTOCOL_TURN_HEADER,
} from '@va/protocol';
import { ATTR, counter, createLogger, METRIC, observableCounter, type Logger } from '@va/telemetry';
import type { z } from 'zod';
import { serverRelay } from './origin.js';
import { extractTrace, injectTrace, TraceHeaderCache, TraceReader } from './trace-headers.js';

export interface BusOptions {
  /** NATS server URL(s); default NATS_URL or nats://127.0.0.1:4222. */
  servers?: string | string[];
  /** The stage (service kind) this process serves: it names the connection and the `stage` of error events. */
  stage: string;
  /** Distinguishes instances of one stage in logs and in the connection name. */
  instanceId?: string;
  logger?: Logger;
  /** How to authenticate; default read from the environment ({@link natsAuthFromEnv}). */
  auth?: NatsAuth;
}

/**
 * The bucket, if its stream is what a KV bucket needs and no more. Whoever creates a bucket first sets its stream's
 * config, and in nats-server 2.9 that config can copy every value elsewhere (a republish to any subject, the
 * creator's inbox included; a mirror; sources) or capture other subjects. A stage that could create a bucket
 * before the others could thus read what they store: every user of a bucket checks it and refuses such a one, so
 * nothing is ever written into it.
 */
async function plainBucket(kv: KV, bucket: string): Promise<KV> {
  const { config } = (await kv.status()).streamInfo;
  const problems: string[] = [];
  if (config.republish) problems.push(`republishes to ${config.republish.dest}`);
  if (config.mirror) problems.push(`mirrors ${config.mirror.name}`);
  if ((config.sources ?? []).length > 0) problems.push('has sources');
  const subjects = config.subjects ?? [];
  if (subjects.length !== 1 || subjects[0] !== `$KV.${bucket}.>`) problems.push(`stores ${subjects.join(', ')}`);
  if (problems.length > 0) {
    throw new Error(
      `KV bucket ${bucket} ${problems.join('; ')}: not what this product creates, refusing to use it ` +
        '(delete the bucket as debug and restart; deploy/nats/README.md)',
    );
  }
  return kv;
}

/** Thrown by a request handler that will not answer this asker: the asker gets a `forbidden` error. */
export class RequestRefusedError extends Error {
  override readonly name = 'RequestRefusedError';
}

/**
 * Credentials for the NATS server: a user and password (deploy/nats/auth.conf has one user per stage), a
 * token, or a creds file (JWT + nkey seed, for operator-mode servers). Never logged.
 */
export type NatsAuth = (
  | { kind: 'none' }
  | { kind: 'password'; user: string; password: string }
  | { kind: 'token'; token: string }
  | { kind: 'creds'; credsFile: string }
) & {
  /** Prefix of this connection's reply inboxes; the server lets each user subscribe to its own only. */
  inboxPrefix?: string;
};

/** The environment variables {@link natsAuthFromEnv} reads. */
export interface NatsAuthEnv {
  NATS_USER?: string | undefined;
  NATS_PASSWORD?: string | undefined;
  NATS_PASSWORD_FILE?: string | undefined;
  NATS_TOKEN?: string | undefined;
  NATS_CREDS?: string | undefined;
  NATS_INBOX_PREFIX?: string | undefined;
}

/**
 * Reads NATS credentials from an environment: `NATS_USER` with `NATS_PASSWORD` or `NATS_PASSWORD_FILE`,
 * or `NATS_TOKEN`, or `NATS_CREDS` (a creds file); none of them = no authentication. `NATS_INBOX_PREFIX`
 * overrides the inbox prefix, which otherwise follows the user (see `inboxPrefix` in @va/protocol).
 * Throws on a contradictory or incomplete setting.
 */
export function natsAuthFromEnv(env: NatsAuthEnv = process.env): NatsAuth {
  const set = (name: keyof NatsAuthEnv) => (env[name] !== undefined && env[name] !== '' ? env[name] : undefined);
  const user = set('NATS_USER');
  const password = set('NATS_PASSWORD');
  const passwordFile = set('NATS_PASSWORD_FILE');
  const token = set('NATS_TOKEN');
  const credsFile = set('NATS_CREDS');
  const methods = [user !== undefined || password !== undefined || passwordFile !== undefined, token, credsFile];
  if (methods.filter(Boolean).length > 1) {
    throw new Error('NATS credentials: set only one of NATS_USER (+ password), NATS_TOKEN or NATS_CREDS');
  }
  const prefix = set('NATS_INBOX_PREFIX');
  const withPrefix = (p: string | undefined) => (p !== undefined ? { inboxPrefix: p } : {});
  if (token !== undefined) return { kind: 'token', token, ...withPrefix(prefix) };
  if (credsFile !== undefined) return { kind: 'creds', credsFile, ...withPrefix(prefix) };
  if (user === undefined && password === undefined && passwordFile === undefined) {
    return { kind: 'none', ...withPrefix(prefix) };
  }
  if (user === undefined) throw new Error('NATS credentials: NATS_PASSWORD(_FILE) is set without NATS_USER');
  if (password !== undefined && passwordFile !== undefined) {
    throw new Error('NATS credentials: set NATS_PASSWORD or NATS_PASSWORD_FILE, not both');
  }
  let pass = password;
  if (passwordFile !== undefined) {
    try {
      pass = readFileSync(passwordFile, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new Error(
        `NATS credentials: cannot read NATS_PASSWORD_FILE: ${(err as NodeJS.ErrnoException).code ?? err}`,
      );
    }
  }
  if (pass === undefined || pass === '') throw new Error('NATS credentials: NATS_USER is set without a password');
  return { kind: 'password', user, password: pass, ...withPrefix(prefix ?? inboxPrefix(user)) };
}

/** The connection options of some credentials, and what may be logged about them. */
function authOptions(auth: NatsAuth): { options: Partial<ConnectionOptions>; describe: Record<string, string> } {
  const inbox = auth.inboxPrefix !== undefined ? { inboxPrefix: auth.inboxPrefix } : {};
  switch (auth.kind) {
    case 'none':
      return { options: inbox, describe: { auth: 'none' } };
    case 'password':
      return {
        options: { ...inbox, user: auth.user, pass: auth.password },
        describe: { auth: 'password', user: auth.user },
      };
    case 'token':
      return { options: { ...inbox, token: auth.token }, describe: { auth: 'token' } };
    case 'creds': {
      let creds: Uint8Array;
      try {
        creds = readFileSync(auth.credsFile);
      } catch (err) {
        throw new Error(`NATS credentials: cannot read NATS_CREDS: ${(err as NodeJS.ErrnoException).code ?? err}`);
      }
      return {
        options: { ...inbox, authenticator: credsAuthenticator(creds) },
        describe: { auth: 'creds', credsFile: auth.credsFile },
      };
    }
  }
}

/** What a handler learns about a message besides its validated body. */
export interface MessageMeta {
  subject: string;
  /** The session of a per-session subject. */
  sessionId?: SessionId;
  /** The turn a message belongs to (`va-turn` header), so stale data can be dropped unparsed. */
  turnId?: string;
  /** Trace context carried in the headers: make the stage span a child of this. */
  context: Context;
  headers?: MsgHdrs;
  /** Reply inbox, when the sender asked for answers (e.g. session.open acks). */
  reply?: string;
}

export type Handler<T> = (msg: T, meta: MessageMeta) => void | Promise<void>;

export interface BusSubscription {
  unsubscribe(): void;
  /** Resolves when the subscription has ended and its last handler call has returned. */
  readonly closed: Promise<void>;
}

export interface PublishOptions {
  /** Trace context to carry; default the active one. */
  context?: Context;
  /** Sets `va-turn`; taken from the message's `turnId` when it has one. */
  turnId?: string;
  headers?: Record<string, string>;
}

export interface SubscribeOptions {
  /** NATS queue group: one member of the group gets each message. */
  queue?: string;
}

export class BusRequestError extends Error {
  override readonly name = 'BusRequestError';
  constructor(
    message: string,
    readonly event?: ErrorEvent,
  ) {
    super(message);
  }
}

export const TURN_HEADER = PROTOCOL_TURN_HEADER;
const ERROR_HEADER = 'va-error';
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export type AudioDirection = 'in' | 'out';

/** Counts of this connection, for tests and health endpoints (the same figures go to OTel metrics). */
export interface BusStats {
  published: number;
  received: number;
  rejected: number;
}

/**
 * A typed NATS connection: every message is checked against its protocol schema on both ends; a message
 * that fails is dropped, counted and answered on the session's error subject — handlers never see it.
 */
/** At most one `message rejected` log line per channel this often. */
const REJECT_LOG_EVERY_MS = 5000;

export class Bus {
  readonly stats: BusStats = { published: 0, received: 0, rejected: 0 };
  /**
   * Messages per channel, exported as `va.messages.published|received` when metrics are read: a plain map
   * increment per message instead of an OTel counter call (attribute hashing) on every audio frame.
   */
  private readonly publishedBy = new Map<string, number>();
  private readonly receivedBy = new Map<string, number>();
  /** Encoded trace headers of recent contexts: audio frames of one turn share one encoding. */
  private readonly traceHeaders = new TraceHeaderCache();
  private readonly kvs = new Map<string, Promise<KV>>();
  private readonly loops = new Set<Promise<void>>();
  private disconnected = false;
  /** Per channel: when a rejection was last logged, and how many since were not. */
  private readonly rejectLogged = new Map<string, { at: number; suppressed: number }>();

  private constructor(
    readonly nc: NatsConnection,
    readonly stage: string,
    readonly log: Logger,
  ) {
    const per = (counts: Map<string, number>) => () =>
      [...counts].map(([channel, n]) => ({ value: n, attributes: { [ATTR.stage]: stage, channel } }));
    observableCounter(METRIC.messagesPublished, per(this.publishedBy));
    observableCounter(METRIC.messagesReceived, per(this.receivedBy));
  }

  static async connect(opts: BusOptions): Promise<Bus> {
    const log = opts.logger ?? createLogger(opts.stage);
    const servers = opts.servers ?? process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
    const name = opts.instanceId ? `${opts.stage}/${opts.instanceId}` : opts.stage;
    const auth = authOptions(opts.auth ?? natsAuthFromEnv());
    const nc = await connect({
      servers,
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      waitOnFirstConnect: true,
      // No stack captured per request (KV writes are requests): the errors say enough without it.
      noAsyncTraces: true,
      ...auth.options,
    });
    log.info({ server: nc.getServer(), ...auth.describe }, 'nats connected');
    const bus = new Bus(nc, opts.stage, log);
    bus.track(bus.logStatus());
    return bus;
  }

  private async logStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect') this.disconnected = true;
      else if (s.type === 'reconnect') this.disconnected = false;
      // Client pings and reconnect attempts are chatty; state changes are what an operator needs.
      if (s.type === 'ping' || s.type === 'reconnecting') this.log.debug({ status: s }, `nats ${s.type}`);
      // e.g. a permissions violation: something this stage does is refused by the server's config.
      else if (s.type === 'error') this.log.error({ status: s }, `nats ${s.type}`);
      else this.log.info({ status: s }, `nats ${s.type}`);
    }
  }

  /** Connected to a NATS server now (not closed, not between a disconnect and a reconnect). */
  get connected(): boolean {
    return !this.nc.isClosed() && !this.disconnected;
  }

  private track(loop: Promise<void>): Promise<void> {
    this.loops.add(loop);
    void loop.finally(() => this.loops.delete(loop));
    return loop;
  }

  // ---- publish ------------------------------------------------------------------------------------------

  /** Publishes on a per-session channel. A message that fails its schema throws here, at the producer. */
  publish<C extends SessionChannel>(
    ch: C,
    sessionId: SessionId,
    msg: z.input<C['schema']>,
    opts: PublishOptions = {},
  ): void {
    this.sendJson(ch, ch.subject(sessionId), msg, opts);
  }

  publishGlobal<C extends GlobalChannel>(
    ch: C,
    msg: z.input<C['schema']>,
    opts: PublishOptions & { reply?: string } = {},
  ): void {
    this.sendJson(ch, ch.subject, msg, opts);
  }

  private sendJson(
    ch: JsonChannel | RequestChannel | SessionRequestChannel,
    subject: string,
    msg: unknown,
    opts: PublishOptions & { reply?: string },
  ): void {
    const body = ch.schema.parse(msg) as Record<string, unknown>;
    const turnId = opts.turnId ?? (typeof body.turnId === 'string' ? body.turnId : undefined);
    const hdrs = this.headersFor(opts, turnId);
    this.nc.publish(subject, encoder.encode(JSON.stringify(body)), {
      headers: hdrs,
      ...(opts.reply ? { reply: opts.reply } : {}),
    });
    this.countPublished(ch.name);
  }

  private headersFor(opts: PublishOptions, turnId?: string): MsgHdrs {
    const hdrs = natsHeaders();
    for (const [k, v] of Object.entries(opts.headers ?? {})) hdrs.set(k, v);
    if (turnId !== undefined) hdrs.set(TURN_HEADER, turnId);
    return injectTrace(hdrs, opts.context);
  }

  private countPublished(channel: string): void {
    this.stats.published++;
    this.publishedBy.set(channel, (this.publishedBy.get(channel) ?? 0) + 1);
  }

  /**
   * Publishes one audio frame: its metadata travels in the binary payload (see `encodeAudioFrame`), the trace
   * context in NATS headers encoded once per context (a turn's frames share it). `opts.headers` is not allowed:
   * audio has no per-frame headers.
   */
  publishAudio(
    direction: AudioDirection,
    sessionId: SessionId,
    frame: AudioFrame,
    opts: Pick<PublishOptions, 'context'> = {},
  ): void {
    const data = encodeAudioFrame(frame);
    const headers = this.traceHeaders.get(opts.context ?? otelContext.active());
    this.nc.publish(audioSubject(direction, sessionId), data, headers ? { headers } : undefined);
    this.countPublished(direction === 'in' ? 'audio.in' : 'audio.out');
  }

  // ---- subscribe ----------------------------------------------------------------------------------------

  /** Subscribes to one session's channel, or to every session's with `'*'`. */
  subscribe<C extends SessionChannel>(
    ch: C,
    sessionId: SessionId | '*',
    handler: Handler<z.output<C['schema']>>,
    opts: SubscribeOptions = {},
  ): BusSubscription {
    const subject = sessionId === '*' ? anySessionSubject(ch.name) : ch.subject(sessionId);
    return this.consume(subject, opts, (m) => {
      const body = this.accept(ch, m);
      return body === undefined ? undefined : handler(body.value as z.output<C['schema']>, this.meta(m));
    });
  }

  subscribeGlobal<C extends GlobalChannel>(
    ch: C,
    handler: Handler<z.output<C['schema']>>,
    opts: SubscribeOptions = {},
  ): BusSubscription {
    return this.consume(ch.subject, opts, (m) => {
      const body = this.accept(ch, m);
      return body === undefined ? undefined : handler(body.value as z.output<C['schema']>, this.meta(m));
    });
  }

  /**
   * Subscribes to one session's audio (or every session's with `'*'`). Frames are handed over synchronously, in
   * order, straight from the client's read loop (no async iterator and no promise per frame); a handler that
   * returns a promise is not awaited — its failure is reported like a thrown error. ActorContext.subscribeAudio
   * puts a bounded serial backlog in front of asynchronous handlers.
   */
  subscribeAudio(
    direction: AudioDirection,
    sessionId: SessionId | '*',
    handler: Handler<AudioFrame>,
    opts: SubscribeOptions = {},
  ): BusSubscription {
    const channel = direction === 'in' ? 'audio.in' : 'audio.out';
    const subject = sessionId === '*' ? anySessionSubject(channel) : audioSubject(direction, sessionId);
    // Frames of one turn carry the same trace headers: read once, reused while the bytes are the same.
    const trace = new TraceReader();
    const fixed = sessionId === '*' ? undefined : { subject, sessionId };
    const onFrame = (m: Msg): void => {
      const context = trace.read(m);
      const relay = m.reply ? (serverRelay(m) ?? 'a reply subject on an audio frame') : trace.relayed;
      if (relay !== undefined) {
        this.reject(m.subject, channel, 'forged', `${channel}: ${relay}, not published by its sender; dropped`);
        return;
      }
      let frame: AudioFrame;
      try {
        frame = decodeAudioFrame(m.data);
      } catch (err) {
        this.reject(m.subject, channel, 'bad-audio', err instanceof Error ? err.message : String(err));
        return;
      }
      this.countReceived(channel);
      // The subject of a one-session subscription is known: not decoded and parsed again per frame.
      const subj = fixed?.subject ?? m.subject;
      const sid = fixed?.sessionId ?? parseSessionSubject(subj)?.sessionId;
      const meta: MessageMeta = {
        subject: subj,
        ...(sid ? { sessionId: sid } : {}),
        ...(frame.turnId !== undefined ? { turnId: frame.turnId } : {}),
        context,
      };
      try {
        const done = handler(frame, meta);
        if (done instanceof Promise) done.catch((err: unknown) => this.handlerFailed(m.subject, err));
      } catch (err) {
        this.handlerFailed(m.subject, err);
      }
    };
    const sub = this.nc.subscribe(subject, {
      ...(opts.queue ? { queue: opts.queue } : {}),
      callback: (err, m) => {
        // The server ended the subscription (a permissions violation: this user may not read the subject).
        if (err) this.log.error({ err, subject }, 'subscription refused');
        else onFrame(m);
      },
    });
    return { unsubscribe: () => sub.unsubscribe(), closed: this.track(sub.closed.then(() => undefined)) };
  }

  /** Raw subscription for tools (recorders, tests): no schema, no error replies. */
  subscribeRaw(
    subject: string,
    handler: (m: Msg) => void | Promise<void>,
    opts: SubscribeOptions = {},
  ): BusSubscription {
    return this.consume(subject, opts, handler);
  }

  private consume(subject: string, opts: SubscribeOptions, onMsg: (m: Msg) => void | Promise<void>): BusSubscription {
    const sub = this.nc.subscribe(subject, opts.queue ? { queue: opts.queue } : {});
    const closed = this.track(
      (async () => {
        try {
          for await (const m of sub) {
            try {
              await onMsg(m);
            } catch (err) {
              // A handler bug must not end the subscription: log it, report it, keep serving.
              this.handlerFailed(m.subject, err);
            }
          }
        } catch (err) {
          // The server ended the subscription (a permissions violation: this user may not read the subject).
          this.log.error({ err, subject }, 'subscription refused');
        }
      })(),
    );
    return { unsubscribe: () => sub.unsubscribe(), closed };
  }

  private meta(m: Msg): MessageMeta {
    const parsed = parseSessionSubject(m.subject);
    const turnId = m.headers?.has(TURN_HEADER) ? m.headers.get(TURN_HEADER) : undefined;
    return {
      subject: m.subject,
      ...(parsed ? { sessionId: parsed.sessionId } : {}),
      ...(turnId ? { turnId } : {}),
      context: extractTrace(m.headers),
      ...(m.headers ? { headers: m.headers } : {}),
      ...(m.reply ? { reply: m.reply } : {}),
    };
  }

  /** Parses and validates; on failure drops the message, counts it and reports it. */
  private accept<S extends z.ZodType>(ch: { name: string; schema: S }, m: Msg): { value: z.output<S> } | undefined {
    const relay = serverRelay(m);
    if (relay !== undefined) {
      // Not published by the one user allowed to: a stage's forgery through JetStream. Never answered.
      this.reject(m.subject, ch.name, 'forged', `${ch.name}: ${relay}, not published by its sender; dropped`);
      return undefined;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(decoder.decode(m.data));
    } catch {
      this.reject(m.subject, ch.name, 'bad-message', `${ch.name}: body is not JSON`, m.reply);
      return undefined;
    }
    const result = ch.schema.safeParse(raw);
    if (!result.success) {
      const issues = result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
      this.reject(m.subject, ch.name, 'bad-message', `${ch.name}: ${issues}`, m.reply);
      return undefined;
    }
    this.countReceived(ch.name);
    return { value: result.data };
  }

  private countReceived(channel: string): void {
    this.stats.received++;
    this.receivedBy.set(channel, (this.receivedBy.get(channel) ?? 0) + 1);
  }

  private reject(subject: string, channel: string, code: ErrorEvent['code'], message: string, reply?: string): void {
    this.stats.rejected++;
    counter(METRIC.messagesRejected).add(1, { [ATTR.stage]: this.stage, channel });
    // A flood of bad messages (a hostile or broken client) must not turn into a flood of log lines: the first per
    // channel is logged, then one line per REJECT_LOG_EVERY_MS saying how many were not. Counter and error
    // events still cover every one.
    const now = Date.now();
    const last = this.rejectLogged.get(channel);
    if (!last || now - last.at >= REJECT_LOG_EVERY_MS) {
      const suppressed = last?.suppressed ? { suppressed: last.suppressed } : {};
      this.log.warn({ subject, channel, code, reason: message, ...suppressed }, 'message rejected');
      this.rejectLogged.set(channel, { at: now, suppressed: 0 });
    } else {
      last.suppressed++;
    }
    // Error events about error events would loop between two services that disagree on the schema.
    if (channel === channels.error.name) return;
    const event = this.publishError(subject, code, message);
    if (reply) this.nc.publish(reply, encoder.encode(JSON.stringify(event)), { headers: errorHeaders() });
  }

  /** A handler failed on a message of `subject`: logged (on `log`, default the bus's) and reported on `error`. */
  handlerFailed(subject: string, err: unknown, log: Logger = this.log): void {
    log.error({ err, subject }, 'message handler failed');
    this.publishError(subject, 'internal', err instanceof Error ? err.message : String(err));
  }

  /** Publishes an error event on the session's error subject (or the global one). */
  publishError(subject: string, code: ErrorEvent['code'], message: string): ErrorEvent {
    const event: ErrorEvent = {
      stage: this.stage,
      code,
      message: message.slice(0, 1000),
      subject: subject.slice(0, 256),
    };
    const parsed = parseSessionSubject(subject);
    const target = parsed ? channels.error.subject(parsed.sessionId) : channels.errorGlobal.subject;
    // A handler that fails while the connection closes cannot report on the bus: log it instead of throwing.
    if (this.nc.isClosed()) this.log.warn({ event }, 'error event not published: connection closed');
    else this.nc.publish(target, encoder.encode(JSON.stringify(event)));
    return event;
  }

  // ---- request / reply ----------------------------------------------------------------------------------

  async request<C extends RequestChannel>(
    ch: C,
    msg: z.input<C['schema']>,
    opts: { timeoutMs?: number; context?: Context } = {},
  ): Promise<z.output<C['reply']>> {
    return this.requestOn(ch.subject, ch, msg, opts);
  }

  /** A request on one session's subject, answered by whoever holds that session's end of it. */
  async requestSession<C extends SessionRequestChannel>(
    ch: C,
    sessionId: SessionId,
    msg: z.input<C['schema']>,
    opts: { timeoutMs?: number; context?: Context } = {},
  ): Promise<z.output<C['reply']>> {
    return this.requestOn(ch.subject(sessionId), ch, msg, opts);
  }

  private async requestOn<C extends RequestChannel | SessionRequestChannel>(
    subject: string,
    ch: C,
    msg: z.input<C['schema']>,
    opts: { timeoutMs?: number; context?: Context },
  ): Promise<z.output<C['reply']>> {
    const body = ch.schema.parse(msg);
    const hdrs = this.headersFor({ ...(opts.context ? { context: opts.context } : {}) });
    this.countPublished(ch.name);
    const m = await this.nc.request(subject, encoder.encode(JSON.stringify(body)), {
      timeout: opts.timeoutMs ?? 2000,
      headers: hdrs,
    });
    const raw: unknown = JSON.parse(decoder.decode(m.data));
    if (m.headers?.has(ERROR_HEADER)) {
      const event = channels.errorGlobal.schema.safeParse(raw);
      throw new BusRequestError(
        `${ch.name} failed: ${event.success ? event.data.message : 'unreadable error'}`,
        event.success ? event.data : undefined,
      );
    }
    const reply = ch.reply.safeParse(raw);
    if (!reply.success) throw new BusRequestError(`${ch.name}: reply failed its schema: ${reply.error.message}`);
    return reply.data as z.output<C['reply']>;
  }

  /** Answers requests on a channel; both the request and the handler's reply are checked. */
  serve<C extends RequestChannel>(
    ch: C,
    handler: (req: z.output<C['schema']>, meta: MessageMeta) => Promise<z.input<C['reply']>> | z.input<C['reply']>,
    opts: SubscribeOptions = {},
  ): BusSubscription {
    return this.serveOn(ch.subject, ch, handler, opts);
  }

  /** Answers requests on one session's subject (checked both ways, as `serve`). */
  serveSession<C extends SessionRequestChannel>(
    ch: C,
    sessionId: SessionId,
    handler: (req: z.output<C['schema']>, meta: MessageMeta) => Promise<z.input<C['reply']>> | z.input<C['reply']>,
    opts: SubscribeOptions = {},
  ): BusSubscription {
    return this.serveOn(ch.subject(sessionId), ch, handler, opts);
  }

  private serveOn<C extends RequestChannel | SessionRequestChannel>(
    subject: string,
    ch: C,
    handler: (req: z.output<C['schema']>, meta: MessageMeta) => Promise<z.input<C['reply']>> | z.input<C['reply']>,
    opts: SubscribeOptions,
  ): BusSubscription {
    return this.consume(subject, opts, async (m) => {
      const body = this.accept(ch, m);
      if (body === undefined || !m.reply) return;
      if (!isInbox(m.reply)) {
        // A reply to another subject would publish our answer where the asker may not (e.g. a session's
        // reply.deep): answers go only to inboxes, which only their owner can read.
        this.reject(m.subject, ch.name, 'forged', `${ch.name}: reply subject ${m.reply.slice(0, 64)} is not an inbox`);
        return;
      }
      const meta = this.meta(m);
      try {
        const reply = ch.reply.parse(await handler(body.value as z.output<C['schema']>, meta));
        this.nc.publish(m.reply, encoder.encode(JSON.stringify(reply)), {
          headers: injectTrace(natsHeaders(), meta.context),
        });
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        const refused = err instanceof RequestRefusedError;
        if (refused) this.log.warn({ subject: m.subject, reason: message }, 'request refused');
        else this.log.error({ err, subject: m.subject }, 'request handler failed');
        const event: ErrorEvent = {
          stage: this.stage,
          code: refused ? 'forbidden' : 'internal',
          message: message.slice(0, 1000),
          subject: m.subject,
        };
        this.nc.publish(m.reply, encoder.encode(JSON.stringify(event)), { headers: errorHeaders() });
      }
    });
  }

  // ---- KV and lifecycle ---------------------------------------------------------------------------------

  /** Opens (creating if needed) a JetStream KV bucket. One handle per bucket per connection. */
  kv(bucket: string, opts: Partial<KvOptions> = {}): Promise<KV> {
    let kv = this.kvs.get(bucket);
    if (!kv) {
      kv = new Kvm(this.nc).create(bucket, { history: 1, ...opts }).then((b) => plainBucket(b, bucket));
      kv.catch(() => this.kvs.delete(bucket));
      this.kvs.set(bucket, kv);
    }
    return kv;
  }

  /** Opens a bucket that exists (for readers that may not create it); rejects when it does not exist yet. */
  kvOpen(bucket: string): Promise<KV> {
    return new Kvm(this.nc).open(bucket).then((b) => plainBucket(b, bucket));
  }

  /**
   * Finishes in-flight handlers, flushes what was published, and closes. Waits for every handler to return,
   * so a handler must not await it (schedule it instead).
   */
  async drain(): Promise<void> {
    if (this.nc.isClosed()) return;
    if (!this.nc.isDraining()) await this.nc.drain();
    await Promise.allSettled([...this.loops]);
  }

  /** Closes at once (used after a failed drain, or by tests that simulate a crash). */
  async close(): Promise<void> {
    if (!this.nc.isClosed()) await this.nc.close();
  }
}

function audioSubject(direction: AudioDirection, sessionId: SessionId): string {
  return direction === 'in' ? subjects.audioIn(sessionId) : subjects.audioOut(sessionId);
}

function errorHeaders(): MsgHdrs {
  const h = natsHeaders();
  h.set(ERROR_HEADER, '1');
  return h;
}
