import { connect, type Msg, type NatsConnection } from '@nats-io/transport-node';
import type { KV, KvOptions } from '@nats-io/kv';
import {
  anySessionSubject,
  type AudioFrame,
  type ErrorEvent,
  type GlobalChannel,
  type RequestChannel,
  type SessionChannel,
  type SessionId,
  type SessionRequestChannel,
} from '@va/protocol';
import { createLogger, type Logger } from '@va/telemetry';
import type { z } from 'zod';
import { AudioPath } from './audio.js';
import { authOptions, natsAuthFromEnv, type NatsAuth } from './auth.js';
import { BusCounters } from './counters.js';
import { ErrorReporter } from './errors.js';
import { MessageGate } from './gate.js';
import { JsonPath } from './json-path.js';
import { KvBuckets } from './kv-buckets.js';
import { RequestPath } from './requests.js';
import { Subscriptions } from './subscriptions.js';
import type {
  AudioDirection,
  BusStats,
  BusSubscription,
  Handler,
  PublishOptions,
  RequestHandler,
  RequestOptions,
  SubscribeOptions,
} from './types.js';

export { natsAuthFromEnv, type NatsAuth, type NatsAuthEnv } from './auth.js';
export {
  BusRequestError,
  RequestRefusedError,
  TURN_HEADER,
  type AudioDirection,
  type BusStats,
  type BusSubscription,
  type Handler,
  type MessageMeta,
  type PublishOptions,
  type RequestOptions,
  type SubscribeOptions,
} from './types.js';

/** This client's connection to the NATS cluster dropped, or was made again. */
export type ConnectionChange = 'disconnect' | 'reconnect';

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
  /**
   * Replicas of the KV buckets this connection creates (an existing bucket is used as it is). Default
   * NATS_KV_REPLICAS, else 3 when the server is one of a cluster of three or more, else 1.
   */
  kvReplicas?: number;
}

/**
 * NATS server URLs from a list or a comma-separated string (NATS_URL may name every server of a cluster): the
 * client tries them in turn and reconnects to any of them.
 */
export function natsServers(servers: string | readonly string[]): string[] {
  const list = (typeof servers === 'string' ? [servers] : servers).flatMap((s) => s.split(','));
  const urls = list.map((s) => s.trim()).filter((s) => s !== '');
  if (urls.length === 0) throw new Error('no NATS server URL given (NATS_URL)');
  return urls;
}

/** Replicas for new KV buckets: NATS_KV_REPLICAS, else what the server's cluster can hold (3 of 3+, else 1). */
function kvReplicasFor(nc: NatsConnection, configured: number | undefined): number {
  const fromEnv = process.env.NATS_KV_REPLICAS;
  const wanted = configured ?? (fromEnv ? Number(fromEnv) : undefined);
  if (wanted !== undefined) {
    if (!Number.isInteger(wanted) || wanted < 1 || wanted > 5) {
      throw new Error(`NATS_KV_REPLICAS must be an integer 1–5 (got ${String(wanted)})`);
    }
    return wanted;
  }
  const { cluster, connect_urls: peers = [] } = nc.info ?? {};
  return cluster && peers.length >= 3 ? 3 : 1;
}

/**
 * A typed NATS connection: every message is checked against its protocol schema on both ends; a message
 * that fails is dropped, counted and answered on the session's error subject — handlers never see it.
 */
export class Bus {
  private readonly counters: BusCounters;
  readonly stats: BusStats;
  private readonly errors: ErrorReporter;
  private readonly gate: MessageGate;
  private readonly subs: Subscriptions;
  private readonly json: JsonPath;
  private readonly audio: AudioPath;
  private readonly requests: RequestPath;
  private readonly buckets: KvBuckets;
  private disconnected = false;
  private readonly connectionListeners = new Set<(state: ConnectionChange) => void>();

  private constructor(
    readonly nc: NatsConnection,
    readonly stage: string,
    readonly log: Logger,
    kvReplicas = 1,
  ) {
    this.counters = new BusCounters(stage);
    this.stats = this.counters.stats;
    this.errors = new ErrorReporter(nc, stage, log, this.counters);
    this.gate = new MessageGate(this.errors, this.counters);
    this.subs = new Subscriptions(nc, log, this.errors);
    this.json = new JsonPath(nc, this.counters, this.gate, this.subs);
    this.audio = new AudioPath(nc, this.counters, this.gate, this.errors, this.subs);
    this.requests = new RequestPath(nc, this.counters, this.gate, this.errors, this.subs);
    this.buckets = new KvBuckets(nc, kvReplicas);
  }

  static async connect(opts: BusOptions): Promise<Bus> {
    const log = opts.logger ?? createLogger(opts.stage);
    const servers = natsServers(opts.servers ?? process.env.NATS_URL ?? 'nats://127.0.0.1:4222');
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
    const kvReplicas = kvReplicasFor(nc, opts.kvReplicas);
    log.info({ server: nc.getServer(), kvReplicas, ...auth.describe }, 'nats connected');
    const bus = new Bus(nc, opts.stage, log, kvReplicas);
    bus.subs.track(bus.logStatus());
    return bus;
  }

  private async logStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect') {
        this.disconnected = s.type === 'disconnect';
        for (const listener of this.connectionListeners) listener(s.type);
      }
      // Client pings and reconnect attempts are chatty; state changes are what an operator needs.
      if (s.type === 'ping' || s.type === 'reconnecting') this.log.debug({ status: s }, `nats ${s.type}`);
      // e.g. a permissions violation: something this stage does is refused by the server's config.
      else if (s.type === 'error') this.log.error({ status: s }, `nats ${s.type}`);
      else this.log.info({ status: s }, `nats ${s.type}`);
    }
  }

  /**
   * Calls `listener` when the connection drops and when it is made again (to any server of the list); returns
   * the unsubscribe. Whatever this client was delivered in between is lost: a reader of heartbeats judges no
   * peer on that silence.
   */
  onConnectionChange(listener: (state: ConnectionChange) => void): () => void {
    this.connectionListeners.add(listener);
    return () => this.connectionListeners.delete(listener);
  }

  /** Connected to a NATS server now (not closed, not between a disconnect and a reconnect). */
  get connected(): boolean {
    return !this.nc.isClosed() && !this.disconnected;
  }

  // ---- publish ------------------------------------------------------------------------------------------

  /** Publishes on a per-session channel. A message that fails its schema throws here, at the producer. */
  publish<C extends SessionChannel>(
    ch: C,
    sessionId: SessionId,
    msg: z.input<C['schema']>,
    opts: PublishOptions = {},
  ): void {
    this.json.send(ch, ch.subject(sessionId), msg, opts);
  }

  publishGlobal<C extends GlobalChannel>(
    ch: C,
    msg: z.input<C['schema']>,
    opts: PublishOptions & { reply?: string } = {},
  ): void {
    this.json.send(ch, ch.subject, msg, opts);
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
    this.audio.publish(direction, sessionId, frame, opts.context);
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
    return this.json.subscribe(subject, ch, handler, opts);
  }

  subscribeGlobal<C extends GlobalChannel>(
    ch: C,
    handler: Handler<z.output<C['schema']>>,
    opts: SubscribeOptions = {},
  ): BusSubscription {
    return this.json.subscribe(ch.subject, ch, handler, opts);
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
    return this.audio.subscribe(direction, sessionId, handler, opts);
  }

  /** Raw subscription for tools (recorders, tests): no schema, no error replies. */
  subscribeRaw(
    subject: string,
    handler: (m: Msg) => void | Promise<void>,
    opts: SubscribeOptions = {},
  ): BusSubscription {
    return this.subs.consume(subject, opts, handler);
  }

  /** A handler failed on a message of `subject`: logged (on `log`, default the bus's) and reported on `error`. */
  handlerFailed(subject: string, err: unknown, log: Logger = this.log): void {
    this.errors.handlerFailed(subject, err, log);
  }

  /** Publishes an error event on the session's error subject (or the global one). */
  publishError(subject: string, code: ErrorEvent['code'], message: string): ErrorEvent {
    return this.errors.publish(subject, code, message);
  }

  // ---- request / reply ----------------------------------------------------------------------------------

  async request<C extends RequestChannel>(
    ch: C,
    msg: z.input<C['schema']>,
    opts: RequestOptions = {},
  ): Promise<z.output<C['reply']>> {
    return this.requests.request(ch.subject, ch, msg, opts);
  }

  /** A request on one session's subject, answered by whoever holds that session's end of it. */
  async requestSession<C extends SessionRequestChannel>(
    ch: C,
    sessionId: SessionId,
    msg: z.input<C['schema']>,
    opts: RequestOptions = {},
  ): Promise<z.output<C['reply']>> {
    return this.requests.request(ch.subject(sessionId), ch, msg, opts);
  }

  /** Answers requests on a channel; both the request and the handler's reply are checked. */
  serve<C extends RequestChannel>(ch: C, handler: RequestHandler<C>, opts: SubscribeOptions = {}): BusSubscription {
    return this.requests.serve(ch.subject, ch, handler, opts);
  }

  /** Answers requests on one session's subject (checked both ways, as `serve`). */
  serveSession<C extends SessionRequestChannel>(
    ch: C,
    sessionId: SessionId,
    handler: RequestHandler<C>,
    opts: SubscribeOptions = {},
  ): BusSubscription {
    return this.requests.serve(ch.subject(sessionId), ch, handler, opts);
  }

  // ---- KV and lifecycle ---------------------------------------------------------------------------------

  /** Opens (creating if needed) a JetStream KV bucket. One handle per bucket per connection. */
  kv(bucket: string, opts: Partial<KvOptions> = {}): Promise<KV> {
    return this.buckets.create(bucket, opts);
  }

  /** Opens a bucket that exists (for readers that may not create it); rejects when it does not exist yet. */
  kvOpen(bucket: string): Promise<KV> {
    return this.buckets.open(bucket);
  }

  /**
   * Finishes in-flight handlers, flushes what was published, and closes. Waits for every handler to return,
   * so a handler must not await it (schedule it instead).
   */
  async drain(): Promise<void> {
    if (this.nc.isClosed()) return;
    if (!this.nc.isDraining()) await this.nc.drain();
    await this.subs.settled();
  }

  /** Closes at once (used after a failed drain, or by tests that simulate a crash). */
  async close(): Promise<void> {
    if (!this.nc.isClosed()) await this.nc.close();
  }
}
