import { Bus } from '@va/bus';
import { BUCKETS, channels, sessionId as parseSessionId, STAGES, subjects, type SessionRecording } from '@va/protocol';
import { createLogger } from '@va/telemetry';
import { runConversation, type Pipeline, type ScriptTurn } from './pipeline.js';
import type { WebFront } from './web-front.js';

/**
 * What is done to the running stages while the scripted conversation goes on. `all`: every fault in ONE
 * conversation (at least 20 turns), on a three-node NATS cluster.
 */
export type ChaosScenario = 'kill' | 'nats-restart' | 'nats-node' | 'rolling' | 'all';

export interface ChaosOptions {
  scenario: ChaosScenario;
  /** User turns in the conversation (default 20). */
  turns?: number;
  /** Instances per stage (default 2). */
  instances?: number;
  /**
   * kill: the stages whose session owner is killed, in turn, six kills in all (default: every stage but the
   * gateway, once each). One stage alone is killed six times: repeated faults where one showed a weakness.
   */
  killStages?: readonly string[];
  /**
   * kill: when in a turn — `speech` (default): 400 ms into the user's speech; `answer`: 300 ms after the answer's
   * first words, while the deep responder streams and tts speaks it.
   */
  killAt?: 'speech' | 'answer';
  outDir: string;
  onProgress?: (line: string) => void;
}

/** One fault and how long the system took to get over it. */
export interface ChaosEvent {
  action: string;
  stage?: string;
  atTurn: number;
  /**
   * kill: SIGKILL → the session owned again by a live instance of the stage; nats-restart: restart → a client
   * reconnected and reading KV; nats-node: kill -9 of one node of the cluster → every stage instance answering
   * on the bus again (reconnected to a node left); rolling: SIGTERM → the instance drained (sessions handed over)
   * and exited.
   */
  recoveryMs: number | null;
  /**
   * nats-node: kill -9 → every instance's heartbeat written again. A bucket whose stream leader was on the node
   * lost waits for JetStream to elect another (nats-server: seconds); the conversation does not (core NATS).
   */
  kvRecoveryMs?: number | null;
  /**
   * A gateway killed: its caller's socket lost → the session taken up again on another gateway (what the caller
   * saw), and the agent's silence the user heard — the last agent audio before the loss to the first after it,
   * when the same answer went on (null: the rest of that answer was not heard).
   */
  resumedMs?: number | null;
  audibleGapMs?: number | null;
  /** The answer of the turn the fault fell in was heard whole, each word once (unset: no answer to compare). */
  answerHeardWhole?: boolean;
  /** What the user said in that turn, and what the agent heard of it (the transcript of the turn it answered). */
  said?: string;
  heard?: string;
}

export interface ChaosResult {
  scenario: ChaosScenario;
  turns: number;
  /** Scripted utterances the agent never answered (no answer audio played for them; an opener alone is not one). */
  lost: string[];
  /** Utterances the agent answered with audio more than once. */
  answeredTwice: string[];
  events: ChaosEvent[];
  /** Services that crashed (exited with neither 0 nor our SIGKILL). */
  crashes: string[];
  /** Turns in session-context's stored history (user + assistant) at the end. */
  historyMessages: number;
  recording: SessionRecording;
}

/** Sentences pocketsphinx hears well in flite's voice; the conversation cycles through them. */
const SENTENCES = [
  'the weather is nice today',
  'set an alarm for seven in the morning',
  'i would like to go hiking with my two children',
  'what should we pack for cold weather',
  'tell me about the mountains',
  'how long is the drive',
  'can you recommend a good trail',
  'thank you very much',
];

export function chaosScript(turns: number): { turns: ScriptTurn[] } {
  return { turns: Array.from({ length: turns }, (_, i) => ({ say: SENTENCES[i % SENTENCES.length]!, pauseMs: 600 })) };
}

const normalizeWords = (text: string) =>
  text
    .toLowerCase()
    .replace(/[^\p{L}\p{N}' ]/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();

function occurrences(haystack: string, needle: string): number {
  let n = 0;
  for (let at = haystack.indexOf(needle); at >= 0; at = haystack.indexOf(needle, at + 1)) n++;
  return n;
}

/** Silence before speech that makes it a new user turn (the script's utterances are seconds apart). */
const NEW_TURN_SILENCE_MS = 1500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The pid in an instance id (`<host>-<pid>-<hex>`, see newInstanceId). */
function pidOf(instanceId: string): number | undefined {
  const m = /-(\d+)-[0-9a-f]{6}$/.exec(instanceId);
  return m ? Number(m[1]) : undefined;
}

/**
 * Runs a scripted conversation through `instances` instances of every stage and, while it runs, kills the owner
 * of the session in each stage in turn (`kill`: SIGKILL mid-turn), restarts nats-server (`nats-restart`), or
 * replaces every instance one by one with SIGTERM (`rolling`). Reports lost and doubly answered turns, and how
 * long each fault took to recover from.
 */
export async function runChaos(opts: ChaosOptions): Promise<ChaosResult> {
  const turns = opts.turns ?? 20;
  const progress = opts.onProgress ?? (() => undefined);
  // `all` is played by a caller on the talk page (the gateway chooses the session's id when it opens).
  const web = opts.scenario === 'all';
  let sid = parseSessionId(`chaos-${opts.scenario}-${Date.now().toString(36)}`);
  const events: ChaosEvent[] = [];
  const killed = new Set<number>();
  let chaos: Promise<void> = Promise.resolve();
  /** `all` (a caller on the talk page): told when the caller begins each utterance — the exact user turn. */
  let utteranceStarted: ((n: number) => void) | undefined;

  const result = await runConversation({
    script: chaosScript(turns),
    outDir: opts.outDir,
    sessionId: sid,
    instances: opts.instances ?? 2,
    // nats-node: the bus is a three-node JetStream cluster, every bucket with three replicas.
    ...(opts.scenario === 'nats-node' || opts.scenario === 'all' ? { natsClusterNodes: 3 } : {}),
    // A dead instance's sessions are taken over within ~lease + heartbeat/2: the goal is ≤ 1 s.
    env: { VA_HEARTBEAT_MS: '200', VA_LEASE_MS: '700' },
    llmTtftMs: 100,
    llmTokensPerSecond: 80,
    onProgress: progress,
    // `all`: two web gateways behind nginx, so the one serving the call can be killed too.
    ...(web ? { web: { gateways: 2 } } : {}),
    onUtterance: (n) => utteranceStarted?.(n),
    onRunning: (_stages, pipeline, sessionId, front) => {
      sid = sessionId;
      chaos = act(pipeline, front).catch((err: unknown) => progress(`chaos routine failed: ${String(err)}`));
    },
  });
  await chaos;

  async function act(pipeline: Pipeline, front: WebFront | undefined): Promise<void> {
    const bus = await Bus.connect({
      stage: 'chaos',
      servers: pipeline.nats.url,
      logger: createLogger('chaos', {}, 'warn'),
    });
    try {
      let turnsStarted = 0;
      let waiters: { n: number; resolve: () => void }[] = [];
      // A user turn starts with the first speech after a silence longer than any pause inside an utterance (the
      // agent answers between them): a pause mid-sentence starts no new turn.
      // With a caller on the talk page, its own count of utterances.
      let speechEndedAt = -Infinity;
      const started = (n: number) => {
        turnsStarted = n;
        waiters = waiters.filter((w) => (turnsStarted >= w.n ? (w.resolve(), false) : true));
      };
      if (web) utteranceStarted = started;
      else {
        bus.subscribe(channels.vad, sid, (v) => {
          if (v.kind === 'end') speechEndedAt = v.atMs;
          if (v.kind === 'start' && v.atMs - speechEndedAt >= NEW_TURN_SILENCE_MS) started(turnsStarted + 1);
        });
      }
      /** Resolves once the user has started speaking turn `n` (1-based), plus `afterMs`. */
      const midTurn = async (n: number, afterMs = 400) => {
        if (turnsStarted < n) await new Promise<void>((resolve) => waiters.push({ n, resolve }));
        await sleep(afterMs);
      };
      // The answer's first words, by user turn (1-based, counted at vad start).
      const answerStarted = new Map<number, () => void>();
      const answering = new Set<string>();
      bus.subscribe(channels.replyDeep, sid, (r) => {
        if (r.delta === '' || answering.has(r.turnId)) return;
        answering.add(r.turnId);
        answerStarted.get(turnsStarted)?.();
      });
      /** Resolves 300 ms after the answer to user turn `n` started streaming. */
      const midAnswer = async (n: number) => {
        await midTurn(n, 0);
        // A turn whose answer is past already (a fault before it ran long) is not waited for: the fault falls
        // in the turn being spoken instead (its answer, or 30 s on).
        const turn = Math.max(n, turnsStarted);
        if (turn > n) progress(`turn ${n} is past: the fault falls in turn ${turn}`);
        await Promise.race([new Promise<void>((resolve) => answerStarted.set(turn, resolve)), sleep(30_000)]);
        await sleep(300);
      };
      const leases = await bus.kv(BUCKETS.leases);
      const owner = async (stage: string) => {
        const e = await leases.get(`${stage}.${sid}`);
        return e ? (JSON.parse(e.string()) as { owner: string | null }).owner : null;
      };
      const stages = opts.killStages ?? STAGES.filter((s) => s !== 'media-gateway');
      const kills = 6;
      const every = Math.max(1, Math.floor((turns - 2) / kills));

      /** kill -9 of the stage's session owner at `atTurn`; recovered once another instance owns the session. */
      const killOwner = async (stage: string, atTurn: number, at: 'speech' | 'answer') => {
        await (at === 'answer' ? midAnswer(atTurn) : midTurn(atTurn));
        const was = await owner(stage);
        const pid = was ? pidOf(was) : undefined;
        if (!was || !pid) {
          events.push({ action: 'kill -9 (no owner found)', stage, atTurn, recoveryMs: null });
          return;
        }
        killed.add(pid);
        const t0 = performance.now();
        process.kill(pid, 'SIGKILL');
        let recoveryMs: number | null = null;
        for (let waited = 0; waited < 10_000; waited += 20) {
          const now = await owner(stage);
          if (now && now !== was) {
            recoveryMs = Math.round(performance.now() - t0);
            break;
          }
          await sleep(20);
        }
        events.push({ action: `kill -9 session owner (${at})`, stage, atTurn, recoveryMs });
        progress(`turn ${atTurn}: killed ${stage} (pid ${pid}); owned again after ${recoveryMs ?? '–'} ms`);
        // Back to two instances, as an orchestrator would restart the pod.
        pipeline.spawnStage(stage);
      };

      /**
       * kill -9 of the gateway serving the call 800 ms after its answer began to stream (while it plays); recovered once another gateway has
       * taken the session up (the caller reconnected through nginx with its resume token). Then a new gateway on
       * the dead one's port, as an orchestrator restarts the pod.
       */
      const killGateway = async (atTurn: number) => {
        if (!front) throw new Error('a gateway kill needs the conversation on the talk page (web front)');
        await midAnswer(atTurn);
        await sleep(500);
        const serving = front.serving(sid);
        if (!serving) {
          events.push({
            action: 'kill -9 (no serving gateway found)',
            stage: 'media-gateway',
            atTurn,
            recoveryMs: null,
          });
          return;
        }
        const index = front.gateways.indexOf(serving);
        const pid = serving.child.pid;
        killed.add(pid);
        const t0 = performance.now();
        process.kill(pid, 'SIGKILL');
        let recoveryMs: number | null = null;
        for (let waited = 0; waited < 20_000; waited += 20) {
          if (front.serving(sid) !== serving && front.serving(sid) !== undefined) {
            recoveryMs = Math.round(performance.now() - t0);
            break;
          }
          await sleep(20);
        }
        events.push({ action: 'kill -9 serving gateway (answer)', stage: 'media-gateway', atTurn, recoveryMs });
        progress(`turn ${atTurn}: killed media-gateway (pid ${pid}); session resumed after ${recoveryMs ?? '–'} ms`);
        await serving.child.exited;
        await front.replace(index);
      };

      const restartNats = async (atTurn: number) => {
        await midTurn(atTurn);
        const t0 = performance.now();
        await pipeline.nats.restart();
        // Recovered when this client (and so, likely, the services) is connected and a KV read answers.
        let recoveryMs: number | null = null;
        for (let waited = 0; waited < 15_000; waited += 50) {
          if (bus.connected && (await owner('stt').catch(() => null)) !== null) {
            recoveryMs = Math.round(performance.now() - t0);
            break;
          }
          await sleep(50);
        }
        events.push({ action: 'nats-server restart', atTurn, recoveryMs });
        progress(`turn ${atTurn}: restarted nats-server; back after ${recoveryMs ?? '–'} ms`);
      };

      const heartbeats = await bus.kv(BUCKETS.instances);
      // Every stage instance's heartbeat revision (a direct get: any replica answers, with or without a leader).
      const revisions = async (keys: readonly string[]) =>
        new Map(await Promise.all(keys.map(async (k) => [k, (await heartbeats.get(k))?.revision ?? 0] as const)));
      /** kill -9 of one node of the cluster at `atTurn`, then restarted with its store (it catches up). */
      const loseNatsNode = async (victim: number, atTurn: number) => {
        const cluster = pipeline.nats;
        if (!('nodes' in cluster)) throw new Error('a NATS node loss needs the pipeline on a NATS cluster');
        await midTurn(atTurn);
        // The live instances: those whose heartbeat moves (a killed one's key stays until its TTL).
        const all: string[] = [];
        for await (const k of await heartbeats.keys()) all.push(k);
        const first = await revisions(all);
        await sleep(600);
        const before = await revisions(all);
        const keys = all.filter((k) => (before.get(k) ?? 0) > (first.get(k) ?? 0));
        const t0 = performance.now();
        process.kill(cluster.nodes[victim]!.pid, 'SIGKILL');
        const since = () => Math.round(performance.now() - t0);
        // Every instance answers its sessions endpoint again: reconnected to a node left (core NATS).
        const answering = async () => {
          const asks = keys.map((k) => {
            const dot = k.indexOf('.');
            const subject = subjects.svcSessions(k.slice(0, dot), k.slice(dot + 1));
            return bus.nc.request(subject, '', { timeout: 250 }).then(
              () => true,
              () => false,
            );
          });
          return (await Promise.all(asks)).every(Boolean);
        };
        let recoveryMs: number | null = null;
        let kvRecoveryMs: number | null = null;
        for (let waited = 0; waited < 20_000 && (kvRecoveryMs === null || recoveryMs === null); waited += 50) {
          if (recoveryMs === null && (await answering())) recoveryMs = since();
          const now = kvRecoveryMs === null ? await revisions(keys).catch(() => undefined) : undefined;
          // The live instances only: a killed one's key stays until its TTL, never moving again.
          if (now && keys.every((k) => (now.get(k) ?? 0) > (before.get(k) ?? 0))) kvRecoveryMs = since();
          await sleep(50);
        }
        events.push({ action: `kill -9 nats node ${victim + 1} of 3`, atTurn, recoveryMs, kvRecoveryMs });
        progress(
          `turn ${atTurn}: killed nats node ${victim + 1}; every instance on the bus again after ` +
            `${recoveryMs ?? '–'} ms, writing KV again after ${kvRecoveryMs ?? '–'} ms`,
        );
        await cluster.restartNode(victim);
        progress(`nats node ${victim + 1} back and current`);
      };

      /** Every instance running now replaced with SIGTERM, one at a time, from `fromTurn`, `perTurn` a turn. */
      const rollingRestart = async (fromTurn: number, perTurn: number) => {
        const originals = pipeline.stages.filter((s) => s.stage !== 'media-gateway' && !killed.has(s.pid));
        for (const [i, running] of originals.entries()) {
          const atTurn = fromTurn + Math.floor(i / perTurn);
          await midTurn(atTurn, 200);
          const replacement = pipeline.spawnStage(running.stage);
          await replacement.child.waitForJson((l) => l.msg === 'actor host started', 60_000);
          const t0 = performance.now();
          const exit = await running.child.stop(20_000);
          events.push({
            action: `SIGTERM (exit ${exit.code ?? exit.signal})`,
            stage: running.stage,
            atTurn,
            recoveryMs: Math.round(performance.now() - t0),
          });
          progress(`turn ${atTurn}: replaced ${running.stage} pid ${running.pid} (exit ${exit.code ?? exit.signal})`);
        }
      };

      if (opts.scenario === 'kill') {
        for (let i = 0; i < kills && 2 + i * every <= turns; i++) {
          await killOwner(stages[i % stages.length]!, 2 + i * every, opts.killAt ?? 'speech');
        }
      } else if (opts.scenario === 'nats-restart') {
        await restartNats(Math.max(2, Math.floor(turns / 2)));
      } else if (opts.scenario === 'nats-node') {
        // One node, then — once it is back and current — another.
        await loseNatsNode(0, Math.max(2, Math.floor(turns / 3)));
        await loseNatsNode(1, Math.max(3, Math.floor((2 * turns) / 3)));
      } else if (opts.scenario === 'rolling') {
        const count = pipeline.stages.filter((s) => s.stage !== 'media-gateway').length;
        await rollingRestart(2, Math.max(1, Math.ceil(count / Math.max(1, turns - 3))));
      } else {
        // Everything, in one conversation on a three-node cluster: each stage's owner killed (the talkers while
        // the user speaks, the deep responder and tts while the answer streams), the gateway serving the call
        // killed while the answer plays, a NATS node lost and then another, and a rolling restart of every stage
        // instance at the end.
        const plan: [string, 'speech' | 'answer'][] = [
          ['stt', 'speech'],
          ['turn-detector', 'speech'],
          ['fast-responder', 'speech'],
          ['deep-responder', 'answer'],
          ['tts', 'answer'],
          ['session-context', 'speech'],
        ];
        // In turn order (each waits for its turn): the gateway serving the call is killed while turn 11's answer
        // plays — the caller resumes on the other gateway, through nginx — between the tts and session-context kills.
        for (const [i, [stage, at]] of plan.entries()) {
          if (stage === 'session-context') await killGateway(11);
          await killOwner(stage, 2 + 2 * i, at);
        }
        await loseNatsNode(0, 13);
        await loseNatsNode(1, 15);
        // Over three turns, so the last replacement is up well before the conversation ends.
        const count = pipeline.stages.filter((s) => s.stage !== 'media-gateway' && !killed.has(s.pid)).length;
        await rollingRestart(16, Math.ceil(count / 3));
      }
    } finally {
      await bus.close().catch(() => undefined);
    }
  }

  // Which utterances each answered turn covers: every one its user speech overlaps (a turn that ran two
  // utterances together answers both, late for the first).
  const rec = result.summary;
  // What the caller saw of each gateway kill: the socket lost → resumed, and the agent's silence it heard.
  const call = result.webCall;
  const gatewayKills = events.filter((e) => e.stage === 'media-gateway' && e.recoveryMs !== null);
  for (const [i, e] of gatewayKills.entries()) {
    const r = call?.reconnects[i];
    if (!call || !r) continue;
    e.resumedMs = r.resumedAtMs === null ? null : Math.round(r.resumedAtMs - r.lostAtMs);
    const before = call.captions.filter((c) => c.atMs <= r.lostAtMs).at(-1);
    const after = call.captions.find((c) => c.atMs > r.lostAtMs);
    e.audibleGapMs = before && after && after.turnId === before.turnId ? Math.round(after.atMs - before.atMs) : null;
  }
  // Answered = the deep responder's answer was played (an opener alone is not an answer).
  const withAnswer = new Set(rec.segments.filter((s) => s.source === 'deep').map((s) => s.turnId));
  const answers = new Map<number, number>();
  for (const t of rec.turns) {
    if (!withAnswer.has(t.turnId)) continue;
    rec.utterances.forEach((u, i) => {
      if (t.speechEndMs >= u.startMs && t.speechStartMs <= u.endMs + 300) answers.set(i, (answers.get(i) ?? 0) + 1);
    });
  }
  // The words of each turn a fault fell in: what was said, and what the answered turn heard.
  for (const e of events) {
    const u = rec.utterances[e.atTurn - 1];
    if (!u) continue;
    e.said = u.say;
    // The turn that answered it: of the turns its speech overlaps, the last one with an answer (a turn ended on a
    // partial and replaced by its final overlaps the same speech).
    const overlapping = rec.turns.filter((x) => x.speechEndMs >= u.startMs && x.speechStartMs <= u.endMs + 300);
    const t = overlapping.filter((x) => withAnswer.has(x.turnId)).at(-1) ?? overlapping.at(-1);
    if (!t) continue;
    e.heard = t.userText;
    // What the user heard of the answer: every word once (a tts killed mid-answer resumes where audio stopped).
    const answer = result.report.turns.find((r) => r.turnId === t.turnId)?.answer.trim();
    // A turn played by two gateways (the first killed): what the caller's captions showed, across both.
    const heard =
      e.stage === 'media-gateway' && call
        ? call.captions
            .filter((c) => c.turnId === t.turnId)
            .map((c) => c.text)
            .join('')
        : t.spokenText;
    if (answer) e.answerHeardWhole = occurrences(normalizeWords(heard), normalizeWords(answer)) === 1;
  }
  const crashes = Object.entries(result.exits)
    .filter(([, e]) => e.code !== 0 && e.signal !== 'SIGKILL')
    .map(([stage, e]) => `${stage}: ${JSON.stringify(e)}`);
  return {
    scenario: opts.scenario,
    turns,
    lost: rec.utterances.filter((_, i) => !answers.has(i)).map((u) => u.say),
    answeredTwice: rec.utterances.filter((_, i) => (answers.get(i) ?? 0) > 1).map((u) => u.say),
    events,
    crashes,
    historyMessages: result.history.length,
    recording: rec,
  };
}
