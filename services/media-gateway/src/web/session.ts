import { randomBytes } from 'node:crypto';
import type { Admission } from '../admission.js';
import type { AgentStore } from '@va/agents';
import type { Bus } from '@va/bus';
import { channels, sessionId as parseSessionId, type AudioSource, type TurnTimeline } from '@va/protocol';
import { openGatewaySession, RESUME_GRACE_MS, resumeGatewaySession, type OpenedSession } from '../open-session.js';
import { ResumeTokens } from './resume-token.js';

/** The web transport speaks PCM16 mono at this rate both ways (the page resamples the microphone to it). */
export const WEB_SAMPLE_RATE = 16000 as const;

/** What the page is told, as JSON text messages. */
export type PageEvent =
  /** `resumeToken`: what the page presents (`/ws?resume=<token>`) to take the session up again after a lost socket. */
  | { type: 'ready'; sessionId: string; sampleRate: number; frameMs: number; resumeToken: string; resumed: boolean }
  /** A fresh resume token (each is short-lived). */
  | { type: 'resume-token'; token: string }
  | { type: 'transcript'; text: string; final: boolean; startMs: number; endMs: number }
  /** Captions: the words of an agent frame as it is played (a preview never played shows nothing). */
  | { type: 'reply'; source: AudioSource; turnId: string; text: string }
  | {
      type: 'playout';
      turnId: string;
      spokenText: string;
      playedMs: number;
      interrupted: boolean;
      /** End of the user's speech to the agent's first audio played, ms (null if nothing was played). */
      e2eMs: number | null;
      /** When each stage's first output arrived, ms after the user's speech ended (the latency breakdown). */
      timeline: TurnTimeline | null;
      /** The turn's trace (one per turn, spans from every stage), and a link to it when one is configured. */
      traceId: string | null;
      traceUrl: string | null;
    }
  /** The user talks over the agent: stop what is scheduled now (the gateway has stopped sending). */
  | { type: 'flush'; turnId: string }
  | { type: 'error'; code: string; message: string };

/** One conversation behind one socket: what the transport's clock drives. */
export interface WebSession {
  readonly sessionId: string;
  /** Taken up again after a lost socket (rather than opened). */
  readonly resumed: boolean;
  /** A token the page may present to resume this session (signed, short-lived). */
  resumeToken(): string;
  /** One 20 ms step: the user's frame in, the agent's frame to play out (undefined: nothing to play). */
  tick(mic: Int16Array): Int16Array | undefined;
  /**
   * The socket closed. `ended`: the page hung up (a normal close): the session closes everywhere. Otherwise it
   * was lost: the session waits `resumeGraceMs` for the page to come back (here or on another instance).
   */
  close(ended?: boolean): Promise<void>;
}

/** What the page asked for when it connected (`/ws?agent=<name>`, `/ws?resume=<token>`). */
export interface SessionRequest {
  agent?: string;
  /** A resume token: take up the session it names instead of opening one. */
  resume?: string;
}

/** Opens a session; `emit` sends events to the page for as long as the session lives. */
export type SessionFactory = (emit: (event: PageEvent) => void, request?: SessionRequest) => Promise<WebSession>;

export interface BusSessionOptions {
  /** Opens each session on every stage, or refuses it when some stage is full. */
  admission: Admission;
  /** Session ids are `<prefix>-<time>-<random>`. */
  idPrefix?: string;
  /** A link to a turn's trace, `{traceId}` replaced (e.g. Grafana's Tempo explore URL). */
  traceUrl?: string;
  /** Agent profiles, and the agent of a page that names none (else the stored `default`). */
  agents?: AgentStore;
  defaultAgent?: string;
  /** Resume tokens (signed with the secret every instance shares); default: this instance's own secret. */
  resumeTokens?: ResumeTokens;
  /** How long a session whose socket was lost waits for the page to come back before it is closed. */
  resumeGraceMs?: number;
}

/** Resume tokens live this long; the page gets a fresh one every third of it. */
export const RESUME_TOKEN_TTL_MS = 60_000;

/**
 * Sessions on the bus, as `main.ts` opens a script session: open it on every other stage, then a
 * GatewaySession for the audio, and forward the transcript, the agent's words as they are played, and each
 * turn's playout (with its latency) to the page.
 */
export function busSessionFactory(bus: Bus, opts: BusSessionOptions): SessionFactory {
  const tokens = opts.resumeTokens ?? new ResumeTokens(undefined, RESUME_TOKEN_TTL_MS);
  const graceMs = opts.resumeGraceMs ?? RESUME_GRACE_MS;
  return async (emit, request = {}) => {
    let opened: OpenedSession;
    if (request.resume !== undefined) {
      // Refused (ResumeRefusedError, SessionGoneError): the page is told, and starts a new session.
      const sid = tokens.verify(request.resume);
      opened = await resumeGatewaySession(bus, sid, { log: { transport: 'web' } });
    } else {
      const sid = parseSessionId(
        `${opts.idPrefix ?? 'web'}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`,
      );
      // Refused (SessionRefusedError) when the pipeline is full: the server tells the page to try again.
      opened = await openGatewaySession(bus, sid, {
        admission: opts.admission,
        sampleRate: WEB_SAMPLE_RATE,
        log: { transport: 'web' },
        ...(opts.agents ? { agents: opts.agents } : {}),
        ...(request.agent || opts.defaultAgent ? { agent: request.agent || opts.defaultAgent } : {}),
      });
    }
    const { ctx, session, log, sessionId: sid } = opened;
    // A fresh token well before the last one expires.
    const refresh = setInterval(
      () => emit({ type: 'resume-token', token: tokens.issue(sid) }),
      Math.max(1000, tokens.ttlMs / 3),
    );
    refresh.unref();
    ctx.subscribe(channels.transcript, (t) =>
      emit({ type: 'transcript', text: t.text, final: t.final, startMs: t.startMs, endMs: t.endMs }),
    );
    session.onHeard = (turnId, source, text) => emit({ type: 'reply', source, turnId, text });
    ctx.subscribe(channels.turn, (t) => {
      if (t.kind === 'barge-in') emit({ type: 'flush', turnId: t.turnId });
    });
    ctx.subscribe(channels.playout, (p) => {
      // The gateway records the turn as it publishes its playout: the record is there by the time this arrives.
      const record = session.records.find((r) => r.turnId === p.turnId);
      emit({
        type: 'playout',
        turnId: p.turnId,
        spokenText: p.spokenText,
        playedMs: p.playedMs,
        interrupted: p.interrupted,
        e2eMs: record?.e2eMs ?? null,
        timeline: record?.timeline ?? null,
        traceId: record?.traceId ?? null,
        traceUrl: record && opts.traceUrl ? opts.traceUrl.replaceAll('{traceId}', record.traceId) : null,
      });
    });

    let closed = false;
    return {
      sessionId: sid,
      resumed: request.resume !== undefined,
      resumeToken: () => tokens.issue(sid),
      tick: (mic) => session.tick(mic),
      close: async (ended = true) => {
        if (closed) return;
        closed = true;
        clearInterval(refresh);
        if (ended) {
          opened.close('socket closed');
          log.info({ turns: session.records.length }, 'session closed');
        } else {
          log.info({ graceMs }, 'socket lost: the session waits for the page to resume it');
          void opened.detach(graceMs, 'page gone');
        }
      },
    };
  };
}
