import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentStore } from '@va/agents';
import { Bus, natsAuthFromEnv } from '@va/bus';
import { startLocalLlmServer, LOCAL_MODEL_ID, type LocalLlmServer } from '@va/local-llm';
import {
  channels,
  sessionId as parseSessionId,
  SessionRecording,
  STAGES,
  type AgentProfileInput,
  type SessionId,
} from '@va/protocol';
import { LOCAL_STT_PROCESS_ENV } from '@va/providers';
import { createLogger } from '@va/telemetry';
import {
  spawnNode,
  startNatsCluster,
  startNatsServer,
  startOtlpReceiver,
  type ChildExit,
  type ChildHandle,
  type NatsClusterHandle,
  type NatsServerHandle,
  type NatsServerOptions,
  type OtlpReceiver,
  type ReceivedMetric,
  type ReceivedSpan,
} from '@va/testkit';
import { buildReport, type ConversationReport } from './report.js';
import type { WebCallResult } from './web-caller.js';
import { runWebConversation, startWebFront, type WebFront } from './web-front.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface ScriptTurn {
  /** Words to speak; or `noiseMs` for a cough (noise, no words). */
  say?: string;
  noiseMs?: number;
  pauseMs?: number;
  waitForAgent?: boolean;
  /** Start this utterance N ms after the agent's first audio of the previous turn (talk over it). */
  interruptAfterMs?: number;
}

export interface PipelineOptions extends StartPipelineOptions {
  script: { turns: ScriptTurn[] };
  outDir: string;
  sessionId?: string;
  /** Concurrent sessions playing the script (one gateway process); the report covers the first. */
  sessions?: number;
  /** Write WAVs (default: only for a single session). */
  recordAudio?: boolean;
  /** The agent the sessions run: stored in va_agents (as `npm run agent -- put` does) before they open. */
  agent?: AgentProfileInput;
  /** Tool services to run beside the stages (their `dist/main.js`), up before the sessions open. */
  toolServices?: readonly string[];
  /**
   * Called once every process is up and the conversation starts (e.g. to sample their CPU, or to break things),
   * with the session's id (a web gateway chooses it).
   */
  onRunning?: (stages: readonly RunningStage[], pipeline: Pipeline, sessionId: SessionId, front?: WebFront) => void;
  /**
   * Play the script as a caller on the talk page (Node, as index.html does) through `gateways` web gateways behind
   * nginx, instead of the gateway playing it itself: a gateway can then die mid-call and the caller resume on
   * another. One session; `onRunning` gets every gateway among the stages.
   */
  web?: { gateways: number };
  /** `web`: the caller began saying utterance `n` of the script (1-based). */
  onUtterance?: (n: number) => void;
  /** Called with the stages up and ready, before any session opens (e.g. to read their idle memory). */
  beforeSessions?: (stages: readonly RunningStage[]) => Promise<void>;
  /** Called once every session has ended, before the stages are stopped (e.g. to read what they keep). */
  afterSessions?: (stages: readonly RunningStage[]) => Promise<void>;
  /**
   * Sessions the pipeline refuses (some stage full) are reported in `refused` instead of failing the run. The
   * report and `summary` then cover the first session that was admitted.
   */
  allowRefused?: boolean;
}

/** A session the gateway refused: which stage had no room, and its words. */
export interface RefusedSession {
  sessionId: string;
  stage: string;
  reason: string;
}

export interface RunningStage {
  stage: string;
  pid: number;
  child: ChildHandle;
}

export interface ConversationResult {
  report: ConversationReport;
  summary: SessionRecording;
  /** Every admitted session's recording (one per session). */
  recordings: SessionRecording[];
  /** Sessions the gateway refused because the pipeline was full (only with `allowRefused`). */
  refused: RefusedSession[];
  spans: ReceivedSpan[];
  /** `<outDir>/<session>.spans.json`: every span collected (ReceivedSpan[]), for `npm run trace -- --file`. */
  spansFile: string;
  /** Every metric the services exported over OTLP (periodically, and the last values when they stopped). */
  metrics: ReceivedMetric[];
  /** Every agent audio frame tts sent for the first session, per turn, in the order sent. */
  sentAudio: Map<string, Int16Array[]>;
  /** The first session's history as session-context stored it (user turns, and what the agent really said). */
  history: SessionRecording['history'];
  stages: RunningStage[];
  /** How each stage exited after SIGTERM (code 0 = a clean drain). */
  exits: Record<string, { code: number | null; signal: string | null }>;
  /** `web`: what the caller on the talk page saw (captions, played turns, every loss and resume of its socket). */
  webCall?: WebCallResult;
}

export function serviceEntry(stage: string): string {
  return join(ROOT, 'services', stage, 'dist', 'main.js');
}

/** Pace of a local LLM server. */
export interface LlmPace {
  ttftMs: number;
  tokensPerSecond: number;
}

export interface StartPipelineOptions {
  /** The local deep LLM server's time to first token; the fast one is 3x quicker (unused with a real LLM). */
  llmTtftMs?: number;
  llmTokensPerSecond?: number;
  /** Exact paces for the two local servers (override llmTtftMs/llmTokensPerSecond). */
  fastLlm?: LlmPace;
  deepLlm?: LlmPace;
  /** Which stages to run besides the gateway (default all six); a stage left out is simply absent. */
  stages?: readonly string[];
  /** Extra environment for every service (provider choices, a real LLM…). */
  env?: Record<string, string>;
  /** Extra environment for one stage's instances (e.g. a smaller VA_SESSION_CAPACITY), over `env`. */
  stageEnv?: Partial<Record<string, Record<string, string>>>;
  /** Options of the nats-server started (e.g. `config` = deploy/nats/auth.conf and `env` with its passwords). */
  nats?: NatsServerOptions;
  /** A JetStream cluster of this many nodes instead of one server (NATS_URL lists them all; buckets get 3 replicas). */
  natsClusterNodes?: number;
  /**
   * Per-process NATS credentials (e.g. `{NATS_USER, NATS_PASSWORD}`), merged over `env` for each stage, the
   * gateway (`media-gateway`) and the harness's own observer connection (`observer`).
   */
  credentials?: (user: string) => Record<string, string>;
  onProgress?: (line: string) => void;
  /** Every process started is killed after this long, whatever happens to this one (default 900 s). */
  maxLifetimeSec?: number;
  /** Instances of each stage (default 1): sessions are spread over them and move on when one goes. */
  instances?: number;
}

/** Everything but the gateway, running: the bus, a span collector, the LLM server and six stage processes. */
export interface Pipeline {
  /** One nats-server, or a cluster (`natsClusterNodes`): `url` is what NATS_URL holds either way. */
  nats: NatsServerHandle | NatsClusterHandle;
  otlp: OtlpReceiver;
  /** The local LLM servers (fast, deep) when no real LLM is configured. */
  llms: LocalLlmServer[];
  stages: RunningStage[];
  /** The environment the services were started with (for starting more, e.g. the gateway). */
  env: Record<string, string>;
  /** Starts one more instance of a stage (added to `stages`, stopped with the others). */
  /** Starts another instance of a stage: the service's own `dist/main.js`, or `entry` (a custom implementation). */
  spawnStage(stage: string, entry?: string): RunningStage;
  /**
   * SIGTERM every stage; resolves with how each exited, keyed by stage (`<stage>#<n>` for a stage's second and
   * later instances).
   */
  stopStages(): Promise<Record<string, { code: number | null; signal: string | null }>>;
  stop(): Promise<void>;
}

/** Starts nats-server, an OTLP receiver, the local LLM server (unless one is configured) and six stages. */
export async function startPipeline(opts: StartPipelineOptions = {}): Promise<Pipeline> {
  const progress = opts.onProgress ?? (() => undefined);
  let nats: NatsServerHandle | NatsClusterHandle | undefined;
  let otlp: OtlpReceiver | undefined;
  const llms: LocalLlmServer[] = [];
  const stages: RunningStage[] = [];
  const stop = async () => {
    await Promise.all(stages.map((s) => s.child.stop(5000).catch(() => undefined)));
    await Promise.all(llms.map((l) => l.stop()));
    await otlp?.stop();
    await nats?.stop();
  };
  try {
    nats = opts.natsClusterNodes
      ? await startNatsCluster({ ...opts.nats, nodes: opts.natsClusterNodes })
      : await startNatsServer(opts.nats);
    otlp = await startOtlpReceiver();
    // A configured LLM (a base URL, or a named provider such as openai or groq) replaces the local servers.
    const external =
      opts.env?.LLM_BASE_URL ?? opts.env?.FAST_LLM_BASE_URL ?? opts.env?.LLM_PROVIDER ?? opts.env?.FAST_LLM_PROVIDER;
    if (!external) {
      // Two local servers, as two models would be: the small one answers ~3x sooner than the large one.
      const ttftMs = opts.llmTtftMs ?? 150;
      const tokensPerSecond = opts.llmTokensPerSecond ?? 60;
      llms.push(
        await startLocalLlmServer(
          opts.fastLlm ?? { ttftMs: Math.round(ttftMs / 3), tokensPerSecond: tokensPerSecond * 2 },
        ),
      );
      llms.push(await startLocalLlmServer(opts.deepLlm ?? { ttftMs, tokensPerSecond }));
      progress(`local LLM servers (rule-based, no model weights): fast ${llms[0]!.url}, deep ${llms[1]!.url}`);
    }
    const env: Record<string, string> = {
      NATS_URL: nats.url,
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint,
      OTEL_BSP_SCHEDULE_DELAY: '200',
      // The harness reads the services' info lines (started, session opened): never quieter than info.
      LOG_LEVEL: 'info',
      ...(llms.length === 2
        ? {
            FAST_LLM_BASE_URL: llms[0]!.url,
            DEEP_LLM_BASE_URL: llms[1]!.url,
            // session-context's summaries: background work, the small (fast) server is enough.
            SUMMARY_LLM_BASE_URL: llms[0]!.url,
            LLM_MODEL: LOCAL_MODEL_ID,
          }
        : {}),
      ...opts.env,
    };
    const spawnStage = (stage: string, entry = serviceEntry(stage)): RunningStage => {
      const child = spawnNode(entry, {
        env: {
          ...(stage === 'stt' ? LOCAL_STT_PROCESS_ENV : {}),
          ...env,
          ...opts.stageEnv?.[stage],
          ...opts.credentials?.(stage),
        },
        name: stage,
        maxLifetimeSec: opts.maxLifetimeSec ?? 900,
      });
      const running = { stage, pid: child.pid, child };
      stages.push(running);
      return running;
    };
    for (const stage of STAGES.filter((s) => s !== 'media-gateway' && (opts.stages ?? STAGES).includes(s))) {
      for (let i = 0; i < (opts.instances ?? 1); i++) spawnStage(stage);
    }
    await Promise.all(
      stages.map(async (s) => {
        await s.child.waitForJson((l) => l.msg === 'actor host started', 60_000);
        progress(`${s.stage} started (pid ${s.pid})`);
      }),
    );
    const pipeline: Pipeline = {
      nats,
      otlp,
      llms,
      stages,
      env,
      spawnStage,
      stopStages: async () => {
        const exits: Record<string, { code: number | null; signal: string | null }> = {};
        const seen = new Map<string, number>();
        await Promise.all(
          stages.map(async (s) => {
            const n = (seen.get(s.stage) ?? 0) + 1;
            seen.set(s.stage, n);
            exits[n === 1 ? s.stage : `${s.stage}#${n}`] = await s.child.stop(15_000);
          }),
        );
        return exits;
      },
      stop,
    };
    return pipeline;
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Runs one scripted conversation through the seven services, each its own OS process, on this machine:
 * the pipeline of `startPipeline`, then the media gateway playing the script as the microphone. Collects what
 * each stage said and every span, stops everything (SIGTERM), and returns the report.
 */
/** Stores a profile as the `agents` user would; returns its name. */
export async function storeAgent(
  servers: string,
  profile: AgentProfileInput,
  credentials: PipelineOptions['credentials'],
): Promise<string> {
  const bus = await Bus.connect({
    stage: 'agents',
    servers,
    logger: createLogger('agents', {}, 'warn'),
    ...(credentials ? { auth: natsAuthFromEnv(credentials('agents')) } : {}),
  });
  try {
    return (await new AgentStore(bus, { create: true }).put(profile)).name;
  } finally {
    await bus.drain();
  }
}

export async function runConversation(opts: PipelineOptions): Promise<ConversationResult> {
  const progress = opts.onProgress ?? (() => undefined);
  const outDir = resolve(opts.outDir);
  await mkdir(outDir, { recursive: true });
  const sid = parseSessionId(opts.sessionId ?? `demo-${Date.now().toString(36)}`);
  const sessions = opts.sessions ?? 1;
  const ids = sessions === 1 ? [sid] : Array.from({ length: sessions }, (_, i) => parseSessionId(`${sid}-${i}`));
  const pipeline = await startPipeline(opts);
  const { stages, env, otlp } = pipeline;
  let observer: Bus | undefined;
  let gateway: ChildHandle | undefined;
  let front: WebFront | undefined;
  const toolServices: ChildHandle[] = [];
  try {
    // Watch the session as a bystander: what each stage said, per turn.
    observer = await Bus.connect({
      stage: 'observer',
      servers: pipeline.nats.url,
      logger: createLogger('observer', {}, 'warn'),
      ...(opts.credentials ? { auth: natsAuthFromEnv(opts.credentials('observer')) } : {}),
    });
    const said = {
      transcripts: new Map<string, string>(),
      openers: new Map<string, string>(),
      answers: new Map<string, string>(),
    };
    const sentAudio = new Map<string, Int16Array[]>();
    const bystander = observer;
    /** What each stage said of the (first) session, per turn. */
    const watch = (id: SessionId) => {
      bystander.subscribe(channels.turn, id, (t) => {
        if (t.kind === 'end') said.transcripts.set(t.turnId, t.text);
      });
      // A reply answered again (a responder's successor) repeats seqs: each delta counted once.
      const next = new Map<string, number>();
      const collect = (into: Map<string, string>) => (r: { turnId: string; seq: number; delta: string }) => {
        const key = `${into === said.openers ? 'fast' : 'deep'}/${r.turnId}`;
        if (r.seq < (next.get(key) ?? 0)) return;
        next.set(key, r.seq + 1);
        into.set(r.turnId, (into.get(r.turnId) ?? '') + r.delta);
      };
      bystander.subscribeAudio('out', id, (f) => {
        if (!f.turnId) return;
        const frames = sentAudio.get(f.turnId) ?? [];
        frames.push(f.samples);
        sentAudio.set(f.turnId, frames);
      });
      bystander.subscribe(channels.replyFast, id, collect(said.openers));
      bystander.subscribe(channels.replyDeep, id, collect(said.answers));
    };
    if (!opts.web) watch(ids[0]!);
    await observer.nc.flush();

    const agentName = opts.agent ? await storeAgent(pipeline.nats.url, opts.agent, opts.credentials) : undefined;
    for (const entry of opts.toolServices ?? []) {
      const child = spawnNode(entry, {
        env: { ...env, LOG_LEVEL: 'info', ...opts.credentials?.('tools') },
        name: `tool:${entry}`,
        maxLifetimeSec: opts.maxLifetimeSec ?? 900,
      });
      toolServices.push(child);
      await child.waitForJson((l: { msg?: string }) => l.msg === 'tool service ready', 30_000);
    }
    /** The gateway plays the script itself (the file transport): one process, `sessions` sessions. */
    const playByGateway = async () => {
      const scriptPath = join(outDir, `${sid}.script.json`);
      await writeFile(scriptPath, JSON.stringify(opts.script));
      gateway = spawnNode(serviceEntry('media-gateway'), {
        env: {
          ...env,
          ...opts.credentials?.('media-gateway'),
          GATEWAY_SCRIPT: scriptPath,
          GATEWAY_OUT_DIR: outDir,
          // The report prints what was said and heard: the session file must hold the words (off by default).
          GATEWAY_RECORD_TEXT: '1',
          GATEWAY_SESSION_ID: sid,
          GATEWAY_SESSIONS: String(sessions),
          ...(agentName ? { GATEWAY_AGENT: agentName } : {}),
          GATEWAY_RECORD_AUDIO: (opts.recordAudio ?? sessions === 1) ? '1' : '0',
          // The agent's stages: a session is admitted only when each of them has room.
          ...(opts.stages ? { GATEWAY_STAGES: opts.stages.join(',') } : {}),
          ...opts.stageEnv?.['media-gateway'],
        },
        name: 'media-gateway',
        maxLifetimeSec: 900,
      });
      const all = [...stages, { stage: 'media-gateway', pid: gateway.pid, child: gateway }];
      await gateway.waitForJson(
        (l) => l.msg === 'session opened' || (opts.allowRefused === true && l.msg === 'all sessions finished'),
        60_000,
      );
      opts.onRunning?.(all, pipeline, sid);
      progress(
        `session ${sid}${sessions > 1 ? ` (+${sessions - 1} more)` : ''} opened on all stages; playing the script in real time`,
      );
      const gatewayExit = await gateway.exited;
      // Exit 3: some sessions were refused (the pipeline was full); each has a <id>.refused.json.
      const refused: RefusedSession[] = [];
      if (gatewayExit.code === 3) {
        for (const id of ids) {
          const r = await readFile(join(outDir, `${id}.refused.json`), 'utf8').catch(() => undefined);
          if (r !== undefined) refused.push(JSON.parse(r) as RefusedSession);
        }
      }
      if (gatewayExit.code !== 0 && !(gatewayExit.code === 3 && opts.allowRefused)) {
        const why = refused.length > 0 ? `; refused: ${refused.map((r) => r.reason).join('; ')}` : '';
        throw new Error(
          `media-gateway exited with ${JSON.stringify(gatewayExit)}${why}:\n${gateway.stderr.slice(-20).join('\n')}`,
        );
      }
      const admitted = ids.filter((id) => !refused.some((r) => r.sessionId === id));
      if (admitted.length === 0) throw new Error(`every session was refused: ${refused[0]?.reason ?? 'unknown'}`);
      const recordings = await Promise.all(
        admitted.map(async (id) =>
          SessionRecording.parse(JSON.parse(await readFile(join(outDir, `${id}.session.json`), 'utf8'))),
        ),
      );
      await opts.afterSessions?.(stages);
      return { recordings, refused, all, exit: gatewayExit };

      // Stop the stages the way an orchestrator does (SIGTERM), then let the last spans arrive.
    };
    await opts.beforeSessions?.(stages);
    let recordings: SessionRecording[];
    let refused: RefusedSession[] = [];
    let all: RunningStage[];
    let gatewayExits: Record<string, ChildExit>;
    let webCall: WebCallResult | undefined;
    if (opts.web) {
      // The caller on the talk page, through gateways behind nginx.
      const gatewayEnv = { ...opts.credentials?.('media-gateway'), ...opts.stageEnv?.['media-gateway'] };
      front = await startWebFront(pipeline, opts.web.gateways, gatewayEnv);
      const gateways = front.gateways;
      all = [...stages, ...gateways.map((g) => ({ stage: 'media-gateway', pid: g.child.pid, child: g.child }))];
      const { recording, call } = await runWebConversation({
        script: opts.script,
        front,
        observer,
        outDir,
        onProgress: progress,
        ...(opts.onUtterance ? { onUtterance: opts.onUtterance } : {}),
        onReady: (id) => {
          watch(id);
          progress(`session ${id} opened on all stages; a caller plays the script on the talk page in real time`);
          opts.onRunning?.(all, pipeline, id, front);
        },
      });
      recordings = [recording];
      webCall = call;
      await opts.afterSessions?.(stages);
      gatewayExits = {};
      for (const [i, g] of front.gateways.entries()) {
        gatewayExits[i === 0 ? 'media-gateway' : `media-gateway#${i + 1}`] = await g.stop();
      }
    } else {
      const played = await playByGateway();
      ({ recordings, refused, all } = played);
      gatewayExits = { 'media-gateway': played.exit };
    }
    const summary = recordings[0]!;
    const exits = { ...gatewayExits, ...(await pipeline.stopStages()) };
    const traceIds = new Set(recordings.flatMap((r) => r.turns.map((t) => t.traceId)));
    const spans = await otlp
      .waitForSpans(
        (got) =>
          [...traceIds].every((id) => new Set(got.filter((s) => s.traceId === id).map((s) => s.serviceName)).size >= 7),
        5000,
      )
      .catch(() => otlp.spans());
    const spansFile = join(outDir, `${summary.sessionId}.spans.json`);
    await writeFile(spansFile, JSON.stringify(spans));
    const report = buildReport(summary, spans, said);
    return {
      report,
      summary,
      recordings,
      refused,
      spans,
      spansFile,
      metrics: otlp.metrics(),
      sentAudio,
      history: summary.history,
      stages: all,
      exits,
      ...(webCall ? { webCall } : {}),
    };
  } finally {
    await front?.stop();
    await Promise.all(toolServices.map((c) => c.stop(5000).catch(() => undefined)));
    await observer?.close();
    await pipeline.stop();
    // Every process's log beside the recording: what a failed run (or a chaos one) is read from.
    await Promise.all(
      [
        ...stages,
        ...(gateway ? [{ stage: 'media-gateway', pid: gateway.pid, child: gateway }] : []),
        ...(front?.gateways ?? []).map((g) => ({ stage: 'media-gateway', pid: g.child.pid, child: g.child })),
      ].map((s) =>
        writeFile(join(outDir, `${s.stage}-${s.pid}.log`), [...s.child.lines, ...s.child.stderr].join('\n')).catch(
          () => undefined,
        ),
      ),
    );
  }
}
