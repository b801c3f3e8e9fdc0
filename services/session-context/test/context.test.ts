import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ActorHost, closeSession, openSession } from '@va/actor';
import { Bus } from '@va/bus';
import {
  BUCKETS,
  channels,
  inboxPrefix,
  leaseKey,
  requests,
  sessionId,
  type CtxGetReply,
  type SessionId,
} from '@va/protocol';
import { FakeLLM } from '@va/providers';
import { ATTR, contextOf, shutdownTelemetry, SPAN, startStageSpan, startTelemetry, type Context } from '@va/telemetry';
import { startNatsServer, startOtlpReceiver, waitFor, type NatsServerHandle, type OtlpReceiver } from '@va/testkit';
import { contextActor } from '../src/actor.js';
import { serveContext, type ContextServer } from '../src/context-server.js';
import { replyTokens } from '@va/context';
import { CONTEXT_DEFAULTS, STAGE, type ContextOptions } from '../src/options.js';
import { llmSummarizer, type Summarizer } from '../src/summarizer.js';

// ---- spans, links included ----------------------------------------------------------------------------------

let otlp: OtlpReceiver;

// ---- session-context instances on a real nats-server -------------------------------------------------------

interface Instance {
  bus: Bus;
  host: ActorHost;
  server: ContextServer;
  /** A crash: the connection drops with no handover (the lease stays on this instance until it expires). */
  crash(): Promise<void>;
  stop(): Promise<void>;
}

let nats: NatsServerHandle;
let client: Bus;
const running = new Set<Instance>();

async function startInstance(summarizer: Summarizer, options: Partial<ContextOptions> = {}): Promise<Instance> {
  const bus = await Bus.connect({ stage: STAGE, servers: nats.url });
  const createActor = contextActor({ ...CONTEXT_DEFAULTS, ...options, summarizer });
  // Short lease: a crashed instance's sessions are re-claimed within half a second.
  const host = new ActorHost({ stage: STAGE, bus, createActor, heartbeatMs: 100, leaseMs: 400 });
  await host.start();
  const server = await serveContext(bus);
  const instance: Instance = {
    bus,
    host,
    server,
    crash: async () => {
      running.delete(instance);
      await bus.close();
      // Only to clear the dead host's timers: its KV calls fail on the closed connection.
      await server.stop();
      await host.drain();
    },
    stop: async () => {
      running.delete(instance);
      await host.drain();
      await server.stop();
      await bus.drain();
    },
  };
  running.add(instance);
  return instance;
}

/** Opens a session whose context actor the given instance owns (others may be running: they must not take it). */
async function open(id: string): Promise<SessionId> {
  const sid = sessionId(id);
  await openSession(client, sid, {}, { stages: [STAGE] });
  await client.nc.flush();
  return sid;
}

/** Closes a session and waits until its state is purged (stopping an instance earlier would race the purge). */
async function close(sid: SessionId, ...instances: Instance[]): Promise<void> {
  closeSession(client, sid);
  await waitFor(
    () => instances.every((i) => i.server.cache.peek(sid) === undefined && !i.host.sessionIds.includes(sid)),
    {
      message: `session ${sid} closed`,
    },
  );
}

function ownerOf(sid: SessionId): Instance | undefined {
  return [...running].find((i) => i.host.sessionIds.includes(sid));
}

/** One turn as the pipeline reports it: the turn detector's `turn end`, then the gateway's `playout done`. */
function publishTurn(sid: SessionId, n: number, parent?: Context): void {
  const opts = parent ? { context: parent } : {};
  const turnId = `t${n}`;
  client.publish(
    channels.turn,
    sid,
    { turnId, kind: 'end', text: `question ${n} about topic ${n}`, eouProb: 0.9, speechEndMs: n * 1000 },
    opts,
  );
  client.publish(
    channels.playout,
    sid,
    { turnId, playedMs: 900, spokenText: `answer ${n}, said in full`, done: true, interrupted: false },
    opts,
  );
}

const get = (sid: SessionId, maxTokens = 100_000, extra: { tools?: boolean; context?: Context } = {}) =>
  client.request(
    requests.ctxGet,
    { sessionId: sid, maxTokens, ...(extra.tools !== undefined ? { tools: extra.tools } : {}) },
    { timeoutMs: 2000, ...(extra.context ? { context: extra.context } : {}) },
  );

const lastContent = (r: CtxGetReply) => r.messages.at(-1)?.content;
/** Turn numbers a reply knows of: in the (fake) summary's "Asked 1,2,3." lists, and in the messages. */
function turnsKnown(r: CtxGetReply): Set<number> {
  const inSummary = [...(r.summary ?? '').matchAll(/Asked ([\d,]+)\./g)].flatMap((m) => m[1]!.split(',').map(Number));
  const inMessages = r.messages.flatMap((m) => /^(?:question|answer) (\d+)/.exec(m.content)?.[1] ?? []).map(Number);
  return new Set([...inSummary, ...inMessages]);
}
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** A summarizing model that writes which question numbers it saw, after the summary so far. */
function numberingLlm(ttftMs: number): FakeLLM {
  return new FakeLLM({
    ttftMs,
    reply: (messages) => {
      const transcript = messages.at(-1)!.content;
      const previous = /^Summary so far: (.*)$/m.exec(transcript)?.[1] ?? '(none)';
      const asked = [...transcript.matchAll(/^User: question (\d+)/gm)].map((m) => m[1]).join(',');
      return `${previous === '(none)' ? '' : `${previous} `}Asked ${asked}.`;
    },
  });
}

beforeAll(async () => {
  nats = await startNatsServer();
  otlp = await startOtlpReceiver();
  startTelemetry({ serviceName: STAGE, endpoint: otlp.endpoint, spanExportDelayMs: 50 });
  client = await Bus.connect({ stage: 'test-client', servers: nats.url });
});

// A test that failed half-way must not leave an instance that claims the next test's sessions.
afterEach(async () => {
  for (const i of [...running]) await i.stop();
});

afterAll(async () => {
  await client?.drain();
  await shutdownTelemetry();
  await otlp?.stop();
  await nats?.stop();
});

describe('session-context', () => {
  it('40 turns: every reply within its budget, summaries in the background (own trace, linked), latest verbatim', async () => {
    const llm = numberingLlm(300);
    const instance = await startInstance(llmSummarizer(llm, CONTEXT_DEFAULTS));
    const sid = await open('ctx-forty');
    const turnTraces = new Map<string, string>();
    let servedWhileSummarizing = 0;
    const pending = () => llm.calls.length > llm.completed + llm.aborted;

    for (let n = 1; n <= 40; n++) {
      const turn = startStageSpan(SPAN.turn, { sessionId: sid, turnId: `t${n}` });
      turnTraces.set(turn.spanContext().traceId, turn.spanContext().spanId);
      publishTurn(sid, n, contextOf(turn));
      turn.end();
      await waitFor(async () => lastContent(await get(sid)) === `answer ${n}, said in full`, {
        message: `turn ${n} stored`,
      });
      for (const budget of [12, 30, 60, 120, 250, 1000]) {
        const wasPending = pending();
        const reply = await get(sid, budget);
        expect(replyTokens(reply), `turn ${n}, budget ${budget}`).toBeLessThanOrEqual(budget);
        // Structural, not a timing threshold: the reply came while the summarizing model had not answered.
        if (wasPending && pending()) servedWhileSummarizing++;
      }
      // The latest exchange always comes back verbatim with a modest budget.
      const recent = await get(sid, 120);
      expect(recent.messages.slice(-2).map((m) => m.content)).toEqual([
        `question ${n} about topic ${n}`,
        `answer ${n}, said in full`,
      ]);
    }
    expect(servedWhileSummarizing, 'ctx.get answered while a summary was being generated').toBeGreaterThan(0);

    // Once the background runs settle: a summary, the last 12 messages verbatim, and no turn lost in between.
    const final = await waitFor(
      async () => {
        const r = await get(sid);
        return !pending() && r.summary !== null && r.messages.length <= CONTEXT_DEFAULTS.summarizeAfter ? r : undefined;
      },
      { timeoutMs: 20_000, message: 'summaries settled' },
    );
    expect(llm.completed).toBeGreaterThanOrEqual(1);
    expect(final.messages.slice(-12).map((m) => m.content)).toEqual(
      range(35, 40).flatMap((n) => [`question ${n} about topic ${n}`, `answer ${n}, said in full`]),
    );
    expect([...turnsKnown(final)].sort((a, b) => a - b)).toEqual(range(1, 40));
    // The summarizer was given the summary so far each time (old summary + messages → new summary).
    expect(llm.calls.at(-1)!.at(-1)!.content).toMatch(/^Summary so far: Asked 1,/);

    // Each summary run is a root span of its own trace, linked to a turn's trace; ctx.get spans carry the budget.
    const turnSpan = startStageSpan(SPAN.turn, { sessionId: sid, turnId: 't41' });
    const traced = await get(sid, 200, { context: contextOf(turnSpan) });
    turnSpan.end();
    const all = await waitFor(() => {
      const spans = otlp.spans();
      const summarize = spans.filter((s) => s.name === SPAN.contextSummarize && s.attributes[ATTR.sessionId] === sid);
      const gets = spans.filter((s) => s.name === SPAN.contextGet && s.traceId === turnSpan.spanContext().traceId);
      return summarize.length >= llm.completed && gets.length > 0 ? { summarize, gets } : undefined;
    });
    for (const s of all.summarize) {
      expect(s.parentSpanId ?? '').toBe('');
      expect(turnTraces.has(s.traceId), 'summary in a trace of its own').toBe(false);
      expect(s.links.length).toBe(1);
      expect(turnTraces.get(s.links[0]!.traceId), 'linked to the turn that triggered it').toBe(s.links[0]!.spanId);
      expect(Number(s.attributes[ATTR.summarizedMessages])).toBeGreaterThan(0);
      expect(s.attributes[ATTR.summaryOutcome]).toBe('ok');
    }
    const getSpan = all.gets[0]!;
    expect(getSpan.parentSpanId).toBe(turnSpan.spanContext().spanId);
    expect(getSpan.attributes).toMatchObject({
      [ATTR.contextBudget]: 200,
      [ATTR.contextTokens]: replyTokens(traced),
      [ATTR.hasSummary]: traced.summary !== null,
      [ATTR.messages]: traced.messages.length,
      [ATTR.cacheHit]: true,
    });
    await close(sid, instance);
    await instance.stop();
  });

  it('keeps the whole history across a crash and restart of session-context mid-conversation', async () => {
    const opts = { keepRecent: 4, summarizeAfter: 6 };
    const llm = numberingLlm(20);
    const first = await startInstance(llmSummarizer(llm, CONTEXT_DEFAULTS), opts);
    const sid = await open('ctx-restart');
    // The bucket is file-backed JetStream (nats.js KV's default storage; bus.kv() does not override it).
    const status = await (await client.kv(BUCKETS.state)).status();
    expect(status.streamInfo.config.storage).toBe('file');

    for (let n = 1; n <= 10; n++) publishTurn(sid, n);
    // Crash once the summaries have settled, so what KV holds at the crash is known.
    const before = await waitFor(async () => {
      const r = await get(sid);
      const settled = llm.calls.length === llm.completed && r.messages.length <= opts.summarizeAfter;
      return lastContent(r) === 'answer 10, said in full' && r.summary !== null && settled ? r : undefined;
    });
    expect(ownerOf(sid)).toBe(first);

    await first.crash();
    const second = await startInstance(llmSummarizer(numberingLlm(20), CONTEXT_DEFAULTS), opts);
    await waitFor(() => second.host.sessionIds.includes(sid), { message: 're-claimed after the lease expired' });
    await second.bus.nc.flush();
    // Served by the new instance from KV, as the crashed one left it.
    const after = await get(sid);
    expect(after.summary).toBe(before.summary);
    expect([...turnsKnown(after)].sort((a, b) => a - b)).toEqual(range(1, 10));

    for (let n = 11; n <= 16; n++) publishTurn(sid, n);
    const end = await waitFor(async () => {
      const r = await get(sid);
      return lastContent(r) === 'answer 16, said in full' && turnsKnown(r).size === 16 ? r : undefined;
    });
    expect(end.summary!.startsWith(before.summary!), 'the summary goes on from the one kept').toBe(true);
    expect([...turnsKnown(end)].sort((a, b) => a - b)).toEqual(range(1, 16));
    await close(sid, second);
    await second.stop();
  });

  it('stores tool exchanges with their turn, returns them only with tools: true, calls and results together', async () => {
    const instance = await startInstance(llmSummarizer(numberingLlm(0), CONTEXT_DEFAULTS));
    const sid = await open('ctx-tools');
    const exchange = {
      turnId: 't2',
      calls: [
        {
          call: { id: 'call_a', name: 'get_weather', arguments: '{"city":"Paris"}' },
          result: '{"sky":"sunny"}',
          ok: true,
          durationMs: 40,
        },
        {
          call: { id: 'call_b', name: 'get_time', arguments: '{}' },
          result: '{"error":"timeout"}',
          ok: false,
          durationMs: 900,
        },
      ],
    };
    publishTurn(sid, 1);
    client.publish(channels.turn, sid, {
      turnId: 't2',
      kind: 'end',
      text: 'weather in Paris?',
      eouProb: 1,
      speechEndMs: 5,
    });
    client.publish(channels.tool, sid, exchange);
    // Re-delivered (a responder that restarted): stored once.
    client.publish(channels.tool, sid, exchange);
    client.publish(channels.playout, sid, {
      turnId: 't2',
      playedMs: 500,
      spokenText: 'It is sunny in Paris.',
      done: true,
      interrupted: false,
    });

    const withTools = await waitFor(async () => {
      const r = await get(sid, 100_000, { tools: true });
      return lastContent(r) === 'It is sunny in Paris.' ? r : undefined;
    });
    expect(withTools.messages.map((m) => m.role)).toEqual([
      'user',
      'assistant',
      'user',
      'assistant',
      'tool',
      'tool',
      'assistant',
    ]);
    expect(withTools.messages[3]).toEqual({
      role: 'assistant',
      content: '',
      toolCalls: exchange.calls.map((c) => c.call),
    });
    expect(withTools.messages.slice(4, 6)).toEqual([
      { role: 'tool', toolCallId: 'call_a', content: '{"sky":"sunny"}' },
      { role: 'tool', toolCallId: 'call_b', content: '{"error":"timeout"}' },
    ]);
    const without = await get(sid);
    expect(without.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
    expect(without.messages.every((m) => m.role !== 'tool' && !(m.role === 'assistant' && m.toolCalls))).toBe(true);

    // Tight budgets: a tool result never comes without its call right before it.
    for (let budget = 1; budget <= replyTokens(withTools); budget += 3) {
      const r = await get(sid, budget, { tools: true });
      expect(replyTokens(r)).toBeLessThanOrEqual(budget);
      const first = r.messages[0];
      expect(first?.role, `budget ${budget}`).not.toBe('tool');
      if (r.messages.some((m) => m.role === 'tool'))
        expect(r.messages.filter((m) => m.role === 'tool')).toHaveLength(2);
    }
    await close(sid, instance);
    await instance.stop();
  });

  it('keeps every instance’s cache in step: another instance answers with the owner’s latest write', async () => {
    const a = await startInstance(llmSummarizer(numberingLlm(0), CONTEXT_DEFAULTS));
    const b = await startInstance(llmSummarizer(numberingLlm(0), CONTEXT_DEFAULTS));
    const sid = await open('ctx-cache');
    const owner = ownerOf(sid)!;
    const other = owner === a ? b : a;
    publishTurn(sid, 1);
    await waitFor(() => other.server.cache.peek(sid)?.entries.at(-1)?.content === 'answer 1, said in full', {
      message: 'the non-owner cache has the write',
    });
    // Only the other instance answers now: its reply is the owner's latest write, from memory.
    await owner.server.stop();
    publishTurn(sid, 2);
    const reply = await waitFor(async () => {
      const r = await get(sid);
      return lastContent(r) === 'answer 2, said in full' ? r : undefined;
    });
    expect(reply.messages).toHaveLength(4);
    // Closing the session purges its state: every cache drops it.
    await close(sid, a, b);
    expect((await get(sid)).messages).toEqual([]);
    await a.stop();
    await b.stop();
  });

  it('answers ctx.get only to the gateway or to a stage holding a lease on the session', async () => {
    const a = await startInstance(llmSummarizer(numberingLlm(0), CONTEXT_DEFAULTS));
    await a.server.stop(); // only the lease-checking server below answers
    const checked = await serveContext(a.bus, { leases: await a.bus.kv(BUCKETS.leases) });
    // A responder's connection: its answers come to its own inbox (`_INBOX_deep-responder…`), as with auth.
    const deep = await Bus.connect({
      stage: 'deep-responder',
      servers: nats.url,
      auth: { kind: 'none', inboxPrefix: inboxPrefix('deep-responder') },
    });
    try {
      const sid = await open('ctx-leased');
      publishTurn(sid, 1);
      await waitFor(() => checked.cache.peek(sid)?.entries.length === 2, { message: 'turn stored' });
      const ask = () => deep.request(requests.ctxGet, { sessionId: sid, maxTokens: 1000 }, { timeoutMs: 2000 });
      await expect(ask()).rejects.toThrow(/deep-responder holds no lease/);
      const leases = await client.kv(BUCKETS.leases);
      await leases.put(leaseKey('deep-responder', sid), JSON.stringify({ owner: 'deep-1', config: {} }));
      expect((await ask()).messages).toHaveLength(2);
      await leases.delete(leaseKey('deep-responder', sid));
      await expect(ask()).rejects.toThrow(/holds no lease/);
      // The gateway, which opened the session, is answered.
      expect((await get(sid)).messages).toHaveLength(2);
      closeSession(client, sid);
      await waitFor(() => !a.host.sessionIds.includes(sid), { message: 'closed' });
    } finally {
      await deep.close();
      await checked.stop();
    }
    await a.stop();
  });

  it('a failed summary is counted, leaves the history as it was, and is retried at the next turn', async () => {
    let calls = 0;
    const flaky: Summarizer = {
      provider: 'test',
      model: 'flaky',
      summarize: (input) =>
        ++calls === 1
          ? Promise.reject(new Error('model down'))
          : Promise.resolve(
              `Asked ${input.entries.flatMap((e) => /^question (\d+)/.exec(e.content)?.[1] ?? []).join(',')}.`,
            ),
    };
    const instance = await startInstance(flaky, { keepRecent: 4, summarizeAfter: 6 });
    const sid = await open('ctx-flaky');
    // Six messages stay under the threshold; the seventh (turn 4's question) starts the run that fails.
    for (let n = 1; n <= 3; n++) publishTurn(sid, n);
    client.publish(channels.turn, sid, {
      turnId: 't4',
      kind: 'end',
      text: 'question 4 about topic 4',
      eouProb: 1,
      speechEndMs: 1,
    });
    await waitFor(() => calls === 1, { message: 'first summary attempted' });
    const failed = await waitFor(async () => {
      const r = await get(sid);
      return lastContent(r) === 'question 4 about topic 4' ? r : undefined;
    });
    expect(failed.summary).toBeNull();
    expect(failed.messages).toHaveLength(7);
    // The next message stored triggers the retry.
    client.publish(channels.playout, sid, {
      turnId: 't4',
      playedMs: 1,
      spokenText: 'answer 4, said in full',
      done: true,
      interrupted: false,
    });
    const ok = await waitFor(async () => {
      const r = await get(sid);
      return r.summary !== null && lastContent(r) === 'answer 4, said in full' ? r : undefined;
    });
    expect(calls).toBe(2);
    expect([...turnsKnown(ok)].sort((x, y) => x - y)).toEqual(range(1, 4));
    const failures = await waitFor(() => {
      const s = otlp.spans().filter((x) => x.name === SPAN.contextSummarize && x.attributes[ATTR.sessionId] === sid);
      return s.length >= 2 ? s : undefined;
    });
    expect(failures.filter((s) => s.statusCode === 2)).toHaveLength(1);
    expect(failures.map((s) => s.attributes[ATTR.summaryOutcome]).sort()).toEqual(['error', 'ok']);
    await close(sid, instance);
    await instance.stop();
  });
});
