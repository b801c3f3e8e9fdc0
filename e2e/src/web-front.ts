import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ScriptMic } from '@va/audio';
import type { Bus } from '@va/bus';
import {
  channels,
  ConversationScript,
  requests,
  sessionId as parseSessionId,
  type PlayedSegment,
  type RecordedTurn,
  type SessionId,
  type SessionRecording,
} from '@va/protocol';
import { createProvider } from '@va/providers';
import { startWebGateway, type RunningGateway } from './gateway.js';
import type { Pipeline, ScriptTurn } from './pipeline.js';
import { startReverseProxy, type ReverseProxy } from './reverse-proxy.js';
import { runWebCall, type WebCallResult } from './web-caller.js';

/** The web transport's rate. */
const RATE = 16000;

/**
 * The front of a conversation in production: `count` web gateways behind nginx (deploy/nginx/voice-agent.conf)
 * sharing one resume secret, so a caller whose gateway dies resumes on another. `replace(i)` starts a new
 * gateway on the port of gateway `i` (after it died), as an orchestrator restarts a pod.
 */
export interface WebFront {
  proxy: ReverseProxy;
  gateways: RunningGateway[];
  replace(index: number): Promise<RunningGateway>;
  /** The gateway whose log says it holds `sessionId` now (opened or resumed it last). */
  serving(sessionId: string): RunningGateway | undefined;
  stop(): Promise<void>;
}

export async function startWebFront(
  pipeline: Pipeline,
  count: number,
  env: Record<string, string> = {},
): Promise<WebFront> {
  const gatewayEnv = {
    GATEWAY_RESUME_SECRET: `front-${process.pid}-${Date.now().toString(36)}-resume-secret`,
    GATEWAY_WEB_TRUST_PROXY: '1',
    GATEWAY_RECORD_TEXT: '1',
    ...env,
  };
  const gateways: RunningGateway[] = [];
  for (let i = 0; i < count; i++) gateways.push(await startWebGateway(pipeline, { port: 0, env: gatewayEnv }));
  const proxy = await startReverseProxy(gateways.map((g) => new URL(g.url).host));
  return {
    proxy,
    gateways,
    async replace(index) {
      const port = Number(new URL(gateways[index]!.url).port);
      const g = await startWebGateway(pipeline, { port, env: gatewayEnv });
      gateways.push(g);
      return g;
    },
    serving(sessionId) {
      let best: { g: RunningGateway; time: number } | undefined;
      for (const g of gateways) {
        for (const line of g.child.lines) {
          if (!line.includes(sessionId) || !/"msg":"session (opened|resumed)"/.test(line)) continue;
          const time = (JSON.parse(line) as { time: number }).time;
          if (!best || time >= best.time) best = { g, time };
        }
      }
      return best?.g;
    },
    async stop() {
      await proxy.stop();
      await Promise.all(gateways.map((g) => g.stop().catch(() => undefined)));
    },
  };
}

/** What the bus said of the session's turns (a bystander's view: vad starts and turn ends). */
export class TurnsSeen {
  private readonly starts: number[] = [];
  readonly ends: { turnId: string; text: string; speechEndMs: number }[] = [];

  watch(bus: Bus, sid: SessionId): void {
    bus.subscribe(channels.vad, sid, (v) => void (v.kind === 'start' ? this.starts.push(v.atMs) : undefined));
    bus.subscribe(channels.turn, sid, (t) => {
      if (t.kind === 'end') this.ends.push({ turnId: t.turnId, text: t.text, speechEndMs: t.speechEndMs });
    });
  }

  /** The user's speech of a turn began at the last vad start before its end. */
  startOf(speechEndMs: number): number {
    return this.starts.filter((s) => s <= speechEndMs).at(-1) ?? speechEndMs;
  }
}

export interface WebConversationOptions {
  script: { turns: ScriptTurn[] };
  front: WebFront;
  observer: Bus;
  outDir: string;
  /** Called once the session is open (its id chosen by the gateway). */
  onReady?: (sessionId: SessionId) => void;
  /** The caller began saying utterance `n` of the script (1-based). */
  onUtterance?: (n: number) => void;
  onProgress?: (line: string) => void;
}

/**
 * Plays the script as a caller on the talk page through the front, and returns the session's recording as the
 * page and the bus saw it: the gateway that played it may have died on the way.
 */
export async function runWebConversation(
  opts: WebConversationOptions,
): Promise<{ recording: SessionRecording; call: WebCallResult }> {
  const script = ConversationScript.parse(opts.script);
  const newMic = await ScriptMic.prepare(script, await createProvider('tts', 'local'), RATE);
  const turns = new TurnsSeen();
  let history: SessionRecording['history'] = [];
  const call = await runWebCall({
    url: opts.front.proxy.url,
    mic: newMic(),
    onReady: (id) => {
      const sid = parseSessionId(id);
      turns.watch(opts.observer, sid);
      opts.onReady?.(sid);
    },
    // What context kept of the conversation, read before the hang-up closes the session (and clears it).
    beforeHangUp: async (id) => {
      history = await opts.observer
        .request(requests.ctxGet, { sessionId: parseSessionId(id), maxTokens: 1_000_000 }, { timeoutMs: 2000 })
        .then((r) => r.messages)
        .catch(() => []);
    },
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    ...(opts.onUtterance ? { onUtterance: opts.onUtterance } : {}),
  });
  const recording = recordingOf(call, turns, history);
  await writeFile(join(opts.outDir, `${call.sessionId}.session.json`), JSON.stringify(recording, null, 2));
  return { recording, call };
}

/** The session's recording from a caller's view (captions, played turns) and the bus's (the user's turns). */
export function recordingOf(
  call: WebCallResult,
  turns: TurnsSeen,
  history: SessionRecording['history'],
): SessionRecording {
  const recorded: RecordedTurn[] = turns.ends.map((end) => {
    const played = call.playouts.filter((p) => p.turnId === end.turnId).at(-1);
    const heard = call.captions.filter((c) => c.turnId === end.turnId);
    const firstAudioMs = heard[0]?.atMs ?? null;
    return {
      turnId: end.turnId,
      traceId: played?.traceId ?? '',
      userText: end.text,
      speechStartMs: turns.startOf(end.speechEndMs),
      speechEndMs: end.speechEndMs,
      firstAudioMs,
      e2eMs: played?.e2eMs ?? null,
      // A turn cut by its gateway's death has no playout: what the captions showed is what was heard.
      spokenText: played?.spokenText ?? heard.map((c) => c.text).join(''),
      interrupted: played?.interrupted ?? true,
      bargeInAtMs: null,
      lastAudioMs: heard.at(-1)?.atMs ?? null,
      resumes: 0,
      timeline: { turnEndMs: null, audioReadyMs: null, answerAudioMs: null, playedMs: null },
    };
  });
  // Played stretches, as far as captions tell (a frame with words): enough to tell which source was heard.
  const segments: PlayedSegment[] = [];
  for (const c of call.captions) {
    const last = segments.at(-1);
    if (last && last.turnId === c.turnId && last.source === c.source && c.atMs - last.endMs < 500) {
      last.endMs = c.atMs + 20;
    } else segments.push({ turnId: c.turnId, source: c.source, startMs: c.atMs, endMs: c.atMs + 20 });
  }
  return {
    sessionId: call.sessionId,
    sampleRate: RATE,
    durationMs: call.durationMs,
    utterances: call.utterances,
    turns: recorded,
    segments,
    agentWav: '',
    mixWav: '',
    history,
    text: true,
  };
}
