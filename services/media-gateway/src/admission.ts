import { admitSession, fullStage, SessionRefusedError, type LoadMonitor, type StageCapacity } from '@va/actor';
import type { Bus } from '@va/bus';
import type { SessionConfig, SessionId, SessionOpenAck } from '@va/protocol';
import { ATTR, counter, METRIC, type Logger } from '@va/telemetry';
import type { z } from 'zod';
import { STAGE } from './actor.js';

export interface AdmissionOptions {
  /** The stages every session needs (the agent's pipeline). */
  stages: readonly string[];
  /** How long every stage has to claim a new session before it is refused. */
  openTimeoutMs: number;
  /** Every stage's room, from its heartbeats: a session some stage cannot take is refused at once. */
  capacity?: StageCapacity;
  /** The gateway's own load: while over its limit it takes no new session either. */
  load?: LoadMonitor;
  log: Logger;
}

/** One refusal log line per this long at most (with how many since): a flood of callers is counted, not logged. */
const REFUSAL_LOG_EVERY_MS = 5_000;

/**
 * Which new sessions the gateway lets in. A session is opened only when every stage can take it; otherwise it is
 * refused clearly — the transport tells the caller "busy, try again" — and the sessions already running are
 * left alone. Counted in `va.sessions.refused` (by the stage that was full) and logged.
 */
export class Admission {
  private lastLog = -Infinity;
  private unlogged = 0;

  constructor(
    private readonly bus: Bus,
    readonly opts: AdmissionOptions,
  ) {}

  /** Why a new session would be refused right now (without opening one), or undefined. */
  precheck(): SessionRefusedError | undefined {
    if (this.opts.load?.overloaded) return new SessionRefusedError(STAGE, `${STAGE} is overloaded`);
    return this.opts.capacity ? fullStage(this.opts.capacity, this.opts.stages) : undefined;
  }

  /** Opens the session on every stage, or throws SessionRefusedError (already counted and logged). */
  async open(sessionId: SessionId, config: z.input<typeof SessionConfig>): Promise<SessionOpenAck[]> {
    const early = this.precheck();
    if (early) throw this.refused(early, sessionId);
    try {
      // The stages' room was just checked (precheck): here only the claims are waited for.
      return await admitSession(this.bus, sessionId, config, {
        stages: this.opts.stages,
        timeoutMs: this.opts.openTimeoutMs,
      });
    } catch (err) {
      if (err instanceof SessionRefusedError) throw this.refused(err, sessionId);
      throw err;
    }
  }

  private refused(err: SessionRefusedError, sessionId: SessionId): SessionRefusedError {
    counter(METRIC.sessionsRefused).add(1, { [ATTR.stage]: err.stage });
    const now = performance.now();
    if (now - this.lastLog >= REFUSAL_LOG_EVERY_MS) {
      this.opts.log.warn(
        {
          sessionId,
          stage: err.stage,
          reason: err.reason,
          ...(this.unlogged > 0 ? { alsoRefused: this.unlogged } : {}),
        },
        'session refused: the pipeline is full',
      );
      this.lastLog = now;
      this.unlogged = 0;
    } else {
      this.unlogged++;
    }
    return err;
  }
}
