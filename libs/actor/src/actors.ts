import { subjects, type SessionConfig, type SessionId } from '@va/protocol';
import type { Bus } from '@va/bus';
import { ATTR, counter, METRIC, upDownCounter, type Logger } from '@va/telemetry';
import type { ActorContext, StopReason } from './context.js';
import type { ActorFactory, ClaimEvent, ReleaseEvent, SessionActor } from './host-options.js';

export interface ActorTableOptions {
  stage: string;
  bus: Bus;
  log: Logger;
  createActor: ActorFactory;
  /** The context of a new session's actor. */
  newContext(sessionId: SessionId, config: SessionConfig, reclaimed: boolean): ActorContext;
  /** The sessions held changed: one added (before its actor is created), or one removed (after it stopped). */
  onChange(): void;
  onClaimed(e: ClaimEvent): void;
  onReleased(e: ReleaseEvent): void;
}

/** The session actors this instance runs: each started with its context and stopped once, counted and logged. */
export class ActorTable {
  private readonly actors = new Map<SessionId, { ctx: ActorContext; actor: SessionActor | undefined }>();

  constructor(private readonly opts: ActorTableOptions) {}

  get size(): number {
    return this.actors.size;
  }

  ids(): SessionId[] {
    return [...this.actors.keys()];
  }

  has(sessionId: SessionId): boolean {
    return this.actors.has(sessionId);
  }

  /** The context of a session held here. */
  context(sessionId: SessionId): ActorContext | undefined {
    return this.actors.get(sessionId)?.ctx;
  }

  /** Holds a session: its actor is created (an actor that fails to start is reported; the session stays held). */
  async start(sessionId: SessionId, config: SessionConfig, reclaimed: boolean): Promise<void> {
    const { stage, log } = this.opts;
    const ctx = this.opts.newContext(sessionId, config, reclaimed);
    const entry: { ctx: ActorContext; actor: SessionActor | undefined } = { ctx, actor: undefined };
    this.actors.set(sessionId, entry);
    this.opts.onChange();
    ctx.followControl();
    try {
      entry.actor = await this.opts.createActor(ctx);
    } catch (err) {
      log.error({ err, sessionId }, 'actor failed to start');
      this.opts.bus.publishError(subjects.error(sessionId), 'internal', `${stage} actor failed to start`);
    }
    counter(METRIC.sessionsClaimed).add(1, { [ATTR.stage]: stage });
    upDownCounter(METRIC.sessionsOwned).add(1, { [ATTR.stage]: stage });
    log.info({ sessionId, reclaimed }, 'session claimed');
    this.opts.onClaimed({ sessionId, reclaimed });
  }

  /** Lets a session go: its context's signals fire, then its actor is stopped. */
  async stop(sessionId: SessionId, reason: StopReason): Promise<void> {
    const entry = this.actors.get(sessionId);
    if (!entry) return;
    const { stage, log } = this.opts;
    this.actors.delete(sessionId);
    entry.ctx.close(reason);
    try {
      await entry.actor?.stop?.(reason);
    } catch (err) {
      log.error({ err, sessionId }, 'actor stop failed');
    }
    upDownCounter(METRIC.sessionsOwned).add(-1, { [ATTR.stage]: stage });
    log.info({ sessionId, reason }, 'session released');
    this.opts.onReleased({ sessionId, reason });
    this.opts.onChange();
  }
}
