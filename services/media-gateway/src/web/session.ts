import { randomBytes } from 'node:crypto';
import type { Admission } from '../admission.js';
import type { AgentStore } from '@va/agents';
import type { Bus } from '@va/bus';
import { channels, sessionId as parseSessionId, type AudioSource, type TurnTimeline } from '@va/protocol';
import { openGatewaySession } from '../open-session.js';

/** The web transport speaks PCM16 mono at this rate both ways (the page resamples the microphone to it). */
export const WEB_SAMPLE_RATE = 16000 as const;

/** What the page is told, as JSON text messages. */
export type PageEvent =
  | { type: 'ready'; sessionId: string; sampleRate: number; frameMs: number }
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
  /** One 20 ms step: the user's frame in, the agent's frame to play out (undefined: nothing to play). */
  tick(mic: Int16Array): Int16Array | undefined;
  close(): Promise<void>;
}

/** What the page asked for when it connected (`/ws?agent=<name>`). */
export interface SessionRequest {
  agent?: string;
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
}

/**
 * Sessions on the bus, as `main.ts` opens a script session: open it on every other stage, then a
 * GatewaySession for the audio, and forward the transcript, the agent's words as they are played, and each
 * turn's playout (with its latency) to the page.
 */
export function busSessionFactory(bus: Bus, opts: BusSessionOptions): SessionFactory {
  return async (emit, request = {}) => {
    const sid = parseSessionId(
      `${opts.idPrefix ?? 'web'}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`,
    );
    // Refused (SessionRefusedError) when the pipeline is full: the server tells the page to try again.
    const opened = await openGatewaySession(bus, sid, {
      admission: opts.admission,
      sampleRate: WEB_SAMPLE_RATE,
      log: { transport: 'web' },
      ...(opts.agents ? { agents: opts.agents } : {}),
      ...(request.agent || opts.defaultAgent ? { agent: request.agent || opts.defaultAgent } : {}),
    });
    const { ctx, session, log } = opened;
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
      tick: (mic) => session.tick(mic),
      close: async () => {
        if (closed) return;
        closed = true;
        opened.close('socket closed');
        log.info({ turns: session.records.length }, 'session closed');
      },
    };
  };
}
