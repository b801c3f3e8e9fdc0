import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SessionRefusedError } from '@va/actor';
import { readWav, resample, ScriptMic, WavMic, type MicSource } from '@va/audio';
import type { Bus } from '@va/bus';
import { BUCKETS, ConversationScript, sessionId as parseSessionId } from '@va/protocol';
import { createProvider } from '@va/providers';
import type { Logger } from '@va/telemetry';
import type { AgentStore } from '@va/agents';
import type { Admission } from './admission.js';
import type { GatewayEnv } from './env.js';
import type { HttpLimits } from './http-limits.js';
import type { LiveKitConfig } from './livekit/token.js';
import { runRecordedSession } from './recorded-session.js';
import { startWebServer } from './web/server.js';
import { ResumeTokens } from './web/resume-token.js';
import { busSessionFactory, RESUME_TOKEN_TTL_MS } from './web/session.js';

/**
 * How users reach the agent. Every transport turns its connections (a browser socket, a room participant, a
 * recording) into gateway sessions through `openGatewaySession` and plays them on the 20 ms clock; `run` serves
 * until `stopped` (SIGTERM) or, for recordings, until its sessions end, and resolves to the process's exit code.
 */
export interface Transport {
  run(stopped: Promise<void>): Promise<number>;
}

/** What every transport is given by main.ts. */
export interface TransportDeps {
  bus: Bus;
  /** This gateway process among its peers (room leases name their holder by it). */
  instanceId: string;
  admission: Admission;
  /** Agent profiles (`va_agents`): each session's agent is resolved from them as it opens. */
  agents: AgentStore;
  env: GatewayEnv;
  httpLimits: Partial<HttpLimits>;
  log: Logger;
}

/** The browser talk page: one session per tab, for as long as its socket is open. */
export function webTransport({ bus, admission, agents, env, httpLimits, log }: TransportDeps): Transport {
  return {
    run: async (stopped) => {
      const web = await startWebServer({
        factory: busSessionFactory(bus, {
          admission,
          traceUrl: env.GATEWAY_TRACE_URL,
          agents,
          ...(env.GATEWAY_AGENT ? { defaultAgent: env.GATEWAY_AGENT } : {}),
          resumeTokens: new ResumeTokens(env.GATEWAY_RESUME_SECRET, RESUME_TOKEN_TTL_MS),
          resumeGraceMs: env.GATEWAY_RESUME_GRACE_MS,
        }),
        host: env.GATEWAY_WEB_HOST,
        port: env.GATEWAY_WEB_PORT,
        ...httpLimits,
        maxSessions: env.GATEWAY_WEB_MAX_SESSIONS,
        maxSessionsPerClient: env.GATEWAY_WEB_MAX_SESSIONS_PER_CLIENT,
        connectsPerMinute: env.GATEWAY_WEB_CONNECTS_PER_MINUTE,
        idleTimeoutMs: env.GATEWAY_WEB_IDLE_MS,
        pingIntervalMs: env.GATEWAY_WEB_PING_MS,
        maxMessagesPerSecond: env.GATEWAY_WEB_MAX_MESSAGES_PER_S,
        maxSendBufferBytes: env.GATEWAY_WEB_MAX_SEND_BUFFER_BYTES,
        allowedHosts: env.GATEWAY_WEB_ALLOWED_HOSTS,
        trustProxy: env.GATEWAY_WEB_TRUST_PROXY === '1',
        log,
      });
      log.info({ url: web.url }, 'talk page ready');
      await stopped;
      await web.close();
      return 0;
    },
  };
}

/** The agent in LiveKit rooms: sent there by the dispatch endpoint or `LIVEKIT_ROOMS`, one session per participant. */
export function liveKitTransport(deps: TransportDeps, config: LiveKitConfig, rooms: readonly string[]): Transport {
  const { bus, admission, agents, env, httpLimits, log, instanceId } = deps;
  return {
    run: async (stopped) => {
      // Loaded here only: rtc-node brings its native library, which the other transports do not need.
      const { LiveKitDispatcher } = await import('./livekit/dispatch.js');
      const { startDispatchServer } = await import('./livekit/dispatch-server.js');
      const { busSessionFactory: liveKitSessionFactory } = await import('./livekit/session.js');
      const { dispose } = await import('@livekit/rtc-node');
      const openSession = liveKitSessionFactory(bus, {
        admission,
        agents,
        ...(env.GATEWAY_AGENT ? { agent: env.GATEWAY_AGENT } : {}),
        resumeGraceMs: env.GATEWAY_RESUME_GRACE_MS,
      });
      const dispatcher = new LiveKitDispatcher({ config, openSession, log });
      const { RoomLeases } = await import('./livekit/room-leases.js');
      const leases = new RoomLeases(
        await bus.kv(BUCKETS.leases),
        instanceId,
        dispatcher,
        { renewMs: env.GATEWAY_ROOM_RENEW_MS, expireMs: env.GATEWAY_ROOM_LEASE_MS },
        log,
      );
      const server = await startDispatchServer({
        dispatcher,
        host: env.GATEWAY_HTTP_HOST,
        port: env.GATEWAY_HTTP_PORT,
        tokenEndpoint: env.GATEWAY_TOKEN_ENDPOINT === '1',
        busy: () => admission.precheck(),
        leases,
        ...(env.GATEWAY_DISPATCH_SECRET ? { secret: env.GATEWAY_DISPATCH_SECRET } : {}),
        httpLimits,
        log,
      }).catch((err: unknown) => {
        // Listening beyond loopback without a secret: refuse to start rather than open the door.
        log.error({ err: String(err) }, 'dispatch endpoint not started');
        return undefined;
      });
      if (!server) return 2;
      if (env.GATEWAY_TOKEN_ENDPOINT === '1' && !env.GATEWAY_DISPATCH_SECRET) {
        log.warn({}, 'GET /token is open without GATEWAY_DISPATCH_SECRET: anyone who reaches the port can join rooms');
      }
      log.info({ url: server.url, identity: dispatcher.identity, livekitUrl: config.url }, 'dispatch endpoint ready');
      // Each room (LIVEKIT_ROOMS, or sent in by POST /dispatch) is served by one gateway instance, the holder of its
      // lease; another takes a room over (and its participants' sessions) within ~1 s of its holder's death. Not
      // awaited: a room that cannot be joined yet (LiveKit still starting) is tried again, backing off up to 30 s,
      // and one LiveKit puts the agent out of is joined again, until SIGTERM or a DELETE /dispatch/<room>.
      await leases.start();
      for (const room of rooms) void leases.claim(room);
      await stopped;
      // SIGTERM: leave every room with its sessions left to be resumed, then park the rooms' leases so another
      // instance takes each over at once (joins it, and resumes its participants' sessions).
      leases.stop();
      await dispatcher.stop(true);
      await leases.park();
      await server.close();
      await dispose();
      return 0;
    },
  };
}

/**
 * The file transport (demo, tests, benchmarks): a script spoken by the local TTS (paced by the conversation) or a
 * recording as the microphone of `GATEWAY_SESSIONS` sessions; exit 1 if one failed, 3 if one was refused (busy).
 */
export function recordedTransport({ bus, admission, agents, env, log }: TransportDeps): Transport {
  const rate = env.GATEWAY_SAMPLE_RATE;
  return {
    run: async (stopped) => {
      let newMic: () => MicSource;
      if (env.GATEWAY_SCRIPT) {
        const script = ConversationScript.parse(JSON.parse(await readFile(env.GATEWAY_SCRIPT, 'utf8')));
        newMic = await ScriptMic.prepare(script, await createProvider('tts', 'local'), rate);
      } else {
        const pcm = await resample(readWav(await readFile(env.GATEWAY_WAV!)), rate);
        newMic = () => new WavMic(pcm);
      }
      const stop = new AbortController();
      void stopped.then(() => stop.abort());
      const ids =
        env.GATEWAY_SESSIONS === 1
          ? [env.GATEWAY_SESSION_ID]
          : Array.from({ length: env.GATEWAY_SESSIONS }, (_, i) => `${env.GATEWAY_SESSION_ID}-${i}`);
      const results = await Promise.allSettled(
        ids.map(async (id, i) => {
          await new Promise((r) => setTimeout(r, i * env.GATEWAY_STAGGER_MS));
          return runRecordedSession(bus, parseSessionId(id), newMic(), {
            sampleRate: rate,
            outDir: env.GATEWAY_OUT_DIR,
            recordAudio: env.GATEWAY_RECORD_AUDIO === '1',
            recordText: env.GATEWAY_RECORD_TEXT === '1',
            tailMs: env.GATEWAY_TAIL_MS,
            maxTailMs: env.GATEWAY_MAX_TAIL_MS,
            admission,
            agents,
            ...(env.GATEWAY_AGENT ? { agent: env.GATEWAY_AGENT } : {}),
            signal: stop.signal,
          });
        }),
      );
      // A refused session (the pipeline was full) is an answer, not a failure: written down for the caller, exit 3.
      const refused = results.flatMap((r, i) =>
        r.status === 'rejected' && r.reason instanceof SessionRefusedError
          ? [{ sessionId: ids[i]!, stage: r.reason.stage, reason: r.reason.reason }]
          : [],
      );
      if (refused.length > 0) await mkdir(env.GATEWAY_OUT_DIR, { recursive: true });
      for (const r of refused) {
        await writeFile(join(env.GATEWAY_OUT_DIR, `${r.sessionId}.refused.json`), JSON.stringify(r));
      }
      const failed = results.filter((r) => r.status === 'rejected' && !(r.reason instanceof SessionRefusedError));
      for (const f of failed) log.error({ err: (f as PromiseRejectedResult).reason }, 'session failed');
      log.info({ sessions: ids.length, failed: failed.length, refused: refused.length }, 'all sessions finished');
      return failed.length > 0 ? 1 : refused.length > 0 ? 3 : 0;
    },
  };
}
