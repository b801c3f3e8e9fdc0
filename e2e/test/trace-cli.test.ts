import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ATTR, EVENT, SPAN } from '@va/telemetry';
import { spansFromOtlpJson } from '@va/e2e';
import { freePort } from '@va/testkit';

const TRACE_CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../../scripts/trace.mjs');

// --- fixtures: two turns, as Tempo stores them ---

/** A fixture span: times in ms from the turn's start; `parent` is another fixture span's key. */
interface FixtureSpan {
  key: string;
  name: string;
  service: string;
  parent?: string;
  startMs: number;
  endMs: number;
  attributes?: Record<string, string | number | boolean>;
  error?: boolean;
  events?: { name: string; atMs: number; attributes?: Record<string, string | number> }[];
}

interface Fixture {
  traceId: string;
  /** Wall-clock start of the turn (ms). */
  t0: number;
  spans: FixtureSpan[];
}

/** Starts with zeros: Tempo's search answers it without them. */
const TURN_A = '00a1b2c3d4e5f60718293a4b5c6d7e8f';
const TURN_B = '4bf92f3577b34da6a3ce929d0e0e4736';

const A: Fixture = {
  traceId: TURN_A,
  t0: 1_764_040_000_000,
  spans: [
    {
      key: 'root',
      name: SPAN.turn,
      service: 'media-gateway',
      startMs: 0,
      endMs: 2400,
      attributes: { [ATTR.turnId]: 't-1', [ATTR.sessionId]: 'demo-1', [ATTR.e2eMs]: 640, [ATTR.interrupted]: false },
      events: [{ name: 'barge_in', atMs: 1800 }],
    },
    { key: 'stt', name: SPAN.sttTranscribe, service: 'stt', parent: 'root', startMs: 10, endMs: 900 },
    {
      key: 'td',
      name: SPAN.turnDetect,
      service: 'turn-detector',
      parent: 'root',
      startMs: 950,
      endMs: 1500,
      attributes: { [ATTR.eouDelayMs]: 520 },
    },
    {
      key: 'fast',
      name: SPAN.fastGenerate,
      service: 'fast-responder',
      parent: 'td',
      startMs: 1500,
      endMs: 1900,
      attributes: { [ATTR.ttftMs]: 450.5, [ATTR.model]: 'small' },
      events: [
        {
          name: EVENT.budgetExceeded,
          atMs: 1950.5,
          attributes: { [ATTR.budgetMetric]: 'va.ttft', [ATTR.budgetMs]: 400, [ATTR.budgetValueMs]: 450.5 },
        },
      ],
    },
    { key: 'ctx', name: SPAN.contextGet, service: 'session-context', parent: 'fast', startMs: 1505, endMs: 1506.4 },
    {
      key: 'deep',
      name: SPAN.deepGenerate,
      service: 'deep-responder',
      parent: 'td',
      startMs: 1502,
      endMs: 2300,
      attributes: { [ATTR.ttftMs]: 480 },
    },
    {
      key: 'tool',
      name: SPAN.tool,
      service: 'deep-responder',
      parent: 'deep',
      startMs: 1600,
      endMs: 1700,
      attributes: { [ATTR.toolName]: 'get_local_time', [ATTR.toolOutcome]: 'timeout' },
      error: true,
    },
    {
      key: 'tts',
      name: SPAN.ttsSynthesize,
      service: 'tts',
      parent: 'root',
      startMs: 1620,
      endMs: 2350,
      attributes: { [ATTR.ttfbMs]: 90, [ATTR.source]: 'fast' },
    },
    { key: 'play', name: SPAN.gatewayPlayout, service: 'media-gateway', parent: 'root', startMs: 1640, endMs: 2400 },
  ],
};

const B: Fixture = {
  traceId: TURN_B,
  t0: A.t0 + 10_000,
  spans: [
    {
      key: 'root',
      name: SPAN.turn,
      service: 'media-gateway',
      startMs: 0,
      endMs: 1200,
      attributes: { [ATTR.turnId]: 't-2', [ATTR.sessionId]: 'demo-1' },
    },
    {
      key: 'td',
      name: SPAN.turnDetect,
      service: 'turn-detector',
      parent: 'root',
      startMs: 300,
      endMs: 700,
      attributes: { [ATTR.eouDelayMs]: 400 },
    },
    { key: 'fast', name: SPAN.fastGenerate, service: 'fast-responder', parent: 'td', startMs: 700, endMs: 1000 },
  ],
};

const SPAN_IDS = new Map<string, string>();
function spanId(trace: string, key: string): string {
  const k = `${trace}/${key}`;
  if (!SPAN_IDS.has(k)) SPAN_IDS.set(k, (SPAN_IDS.size + 1).toString(16).padStart(4, '0').repeat(4));
  return SPAN_IDS.get(k)!;
}

const nanos = (t0: number, ms: number) => String(BigInt(t0) * 1_000_000n + BigInt(Math.round(ms * 1e6)));

function anyValue(v: string | number | boolean) {
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
}
const kv = (attrs: Record<string, string | number | boolean> = {}) =>
  Object.entries(attrs).map(([key, value]) => ({ key, value: anyValue(value) }));

/**
 * A fixture as `GET /api/traces/<id>` answers it: Tempo 2.x (`batches` of `scopeSpans`, ids in base64, as its
 * protobuf JSON mapping writes bytes) or Tempo 1.x (`instrumentationLibrarySpans`, hex ids).
 */
function tempoBody(f: Fixture, shape: 'tempo2-base64' | 'tempo1-hex'): unknown {
  const id = (hex: string) => (shape === 'tempo2-base64' ? Buffer.from(hex, 'hex').toString('base64') : hex);
  const services = [...new Set(f.spans.map((s) => s.service))];
  return {
    batches: services.map((service) => {
      const spans = f.spans
        .filter((s) => s.service === service)
        .map((s) => ({
          traceId: id(f.traceId),
          spanId: id(spanId(f.traceId, s.key)),
          ...(s.parent ? { parentSpanId: id(spanId(f.traceId, s.parent)) } : {}),
          name: s.name,
          kind: 'SPAN_KIND_INTERNAL',
          startTimeUnixNano: nanos(f.t0, s.startMs),
          endTimeUnixNano: nanos(f.t0, s.endMs),
          attributes: kv({ [ATTR.stage]: service, ...s.attributes }),
          events: (s.events ?? []).map((e) => ({
            timeUnixNano: nanos(f.t0, e.atMs),
            name: e.name,
            attributes: kv(e.attributes),
          })),
          // Enums by name, as Tempo's JSON writes them.
          status: s.error ? { code: 'STATUS_CODE_ERROR', message: 'tool timed out' } : {},
        }));
      const scope = { name: 'voice-agent' };
      return {
        resource: { attributes: kv({ 'service.name': service, 'service.instance.id': `${service}-1` }) },
        ...(shape === 'tempo2-base64'
          ? { scopeSpans: [{ scope, spans }] }
          : { instrumentationLibrarySpans: [{ instrumentationLibrary: scope, spans }] }),
      };
    }),
  };
}

const TEMPO_TRACES = new Map([
  [TURN_A, tempoBody(A, 'tempo2-base64')],
  [TURN_B, tempoBody(B, 'tempo1-hex')],
]);

// --- a local server speaking Tempo's query API ---

interface FakeTempo {
  url: string;
  requests: string[];
  /** Answer TraceQL searches with 400, like Tempo 1.x. */
  noTraceQl: boolean;
  server: Server;
}

async function startFakeTempo(): Promise<FakeTempo> {
  const tempo: FakeTempo = { url: '', requests: [], noTraceQl: false, server: createServer() };
  tempo.server.on('request', (req, res) => {
    const url = new URL(req.url ?? '/', 'http://tempo');
    tempo.requests.push(`${req.method} ${url.pathname}${url.search}`);
    const json = (status: number, body: unknown) =>
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    const trace = /^\/api\/traces\/([0-9a-fA-F]+)$/.exec(url.pathname);
    if (req.method === 'GET' && trace) {
      const body = TEMPO_TRACES.get(trace[1]!.toLowerCase().padStart(32, '0'));
      if (!body) return res.writeHead(404, { 'content-type': 'text/plain' }).end('trace not found');
      return json(200, body);
    }
    if (req.method === 'GET' && url.pathname === '/api/search') {
      const q = url.searchParams.get('q');
      const tags = url.searchParams.get('tags');
      if (q !== null && tempo.noTraceQl) return res.writeHead(400).end('invalid TraceQL query');
      if (q !== `{ name = "${SPAN.turn}" }` && tags !== `name=${SPAN.turn}`) return json(200, { traces: [] });
      const limit = Number(url.searchParams.get('limit') ?? 20);
      // Newest first; trace ids without their leading zeros, as Tempo's search writes them.
      const traces = [B, A].slice(0, limit).map((f) => ({
        traceID: f.traceId.replace(/^0+/, ''),
        rootServiceName: 'media-gateway',
        rootTraceName: SPAN.turn,
        startTimeUnixNano: nanos(f.t0, 0),
        durationMs: Math.max(...f.spans.map((s) => s.endMs)),
      }));
      return json(200, { traces, metrics: { inspectedTraces: 2, completedJobs: 1, totalJobs: 1 } });
    }
    res.writeHead(404).end('404 page not found');
  });
  await new Promise<void>((ok) => tempo.server.listen(0, '127.0.0.1', ok));
  const address = tempo.server.address();
  tempo.url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  return tempo;
}

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

const { TEMPO_URL: _unused, ...withoutTempoUrl } = process.env;

/** Runs scripts/trace.mjs as the user would (async: the fake Tempo answers from this process). */
function trace(...args: string[]): Promise<CliResult> {
  return new Promise((done) => {
    execFile(process.execPath, [TRACE_CLI, ...args], { env: withoutTempoUrl, timeout: 30_000 }, (err, stdout, stderr) =>
      done({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
    );
  });
}

interface Row {
  depth: number;
  name: string;
  service: string;
  startMs: number;
  durationMs: number;
  rest: string;
}

/** The waterfall's span lines: `  <indent><name> <service> |<bar>| <start> +<duration> ms  <attributes>`. */
function rows(out: string): Row[] {
  return out
    .split('\n')
    .map((line) => /^ {2}( *)(\S+) +(\S+) +\|[ █]+\| +(-?\d+) \+ *([\d.]+) ms(.*)$/.exec(line))
    .filter((m) => m !== null)
    .map((m) => ({
      depth: m[1]!.length / 2,
      name: m[2]!,
      service: m[3]!,
      startMs: Number(m[4]),
      durationMs: Number(m[5]),
      rest: m[6]!.trim(),
    }));
}

const A_ROWS = [
  { depth: 0, name: SPAN.turn, service: 'media-gateway', startMs: 0, durationMs: 2400 },
  { depth: 1, name: SPAN.sttTranscribe, service: 'stt', startMs: 10, durationMs: 890 },
  { depth: 1, name: SPAN.turnDetect, service: 'turn-detector', startMs: 950, durationMs: 550 },
  { depth: 2, name: SPAN.fastGenerate, service: 'fast-responder', startMs: 1500, durationMs: 400 },
  { depth: 3, name: SPAN.contextGet, service: 'session-context', startMs: 1505, durationMs: 1.4 },
  { depth: 2, name: SPAN.deepGenerate, service: 'deep-responder', startMs: 1502, durationMs: 798 },
  { depth: 3, name: SPAN.tool, service: 'deep-responder', startMs: 1600, durationMs: 100 },
  { depth: 1, name: SPAN.ttsSynthesize, service: 'tts', startMs: 1620, durationMs: 730 },
  { depth: 1, name: SPAN.gatewayPlayout, service: 'media-gateway', startMs: 1640, durationMs: 760 },
];
const B_ROWS = [
  { depth: 0, name: SPAN.turn, service: 'media-gateway', startMs: 0, durationMs: 1200 },
  { depth: 1, name: SPAN.turnDetect, service: 'turn-detector', startMs: 300, durationMs: 400 },
  { depth: 2, name: SPAN.fastGenerate, service: 'fast-responder', startMs: 700, durationMs: 300 },
];
const shape = (r: Row) => ({
  depth: r.depth,
  name: r.name,
  service: r.service,
  startMs: r.startMs,
  durationMs: r.durationMs,
});

/** Trace ids of the printed headings, in order. */
const headings = (out: string) => [...out.matchAll(/^trace ([0-9a-f]{32}) · /gm)].map((m) => m[1]);

let tempo: FakeTempo;
let dir: string;

beforeAll(async () => {
  tempo = await startFakeTempo();
  dir = await mkdtemp(join(tmpdir(), 'va-trace-cli-'));
});

afterAll(async () => {
  tempo?.server.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('npm run trace (scripts/trace.mjs) against Tempo', () => {
  it('prints a turn stored with base64 ids (Tempo 2.x) as a waterfall: order, indentation, durations, attributes, events', async () => {
    const r = await trace(TURN_A, '--tempo', tempo.url);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(tempo.requests).toContain(`GET /api/traces/${TURN_A}`);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(
      `trace ${TURN_A} · turn t-1 · session demo-1 · ${new Date(A.t0).toISOString()} · 9 spans, 7 services, 2400 ms`,
    );
    const got = rows(r.stdout);
    expect(got.map(shape)).toEqual(A_ROWS);
    const row = (name: string) => got.find((g) => g.name === name)!;
    expect(row(SPAN.turn).rest).toBe(`${ATTR.e2eMs}=640`);
    expect(row(SPAN.turnDetect).rest).toBe(`${ATTR.eouDelayMs}=520`);
    expect(row(SPAN.fastGenerate).rest).toBe(`${ATTR.ttftMs}=450.5`);
    expect(row(SPAN.ttsSynthesize).rest).toBe(`${ATTR.ttfbMs}=90 ${ATTR.source}=fast`);
    expect(row(SPAN.tool).rest).toBe(`ERROR  ${ATTR.toolName}=get_local_time ${ATTR.toolOutcome}=timeout`);
    // Events under their span, one level in.
    const turnAt = lines.findIndex((l) => l.startsWith(`  ${SPAN.turn} `));
    expect(lines[turnAt + 1]).toBe('    · barge_in at 1800 ms');
    const fastAt = lines.findIndex((l) => l.startsWith(`      ${SPAN.fastGenerate} `));
    expect(lines[fastAt + 1]).toBe(
      `        · ${EVENT.budgetExceeded} at 1951 ms  ${ATTR.budgetMetric}=va.ttft ${ATTR.budgetMs}=400 ${ATTR.budgetValueMs}=450.5`,
    );
    // The bars share one time axis: the root's spans the whole width, playout starts about 2/3 in.
    const bar = (name: string) => lines.find((l) => l.trimStart().startsWith(`${name} `))!.split('|')[1]!;
    expect(bar(SPAN.turn)).toBe('█'.repeat(48));
    expect(bar(SPAN.gatewayPlayout).indexOf('█')).toBe(Math.floor((1640 * 48) / 2400));
  });

  it('prints a turn stored by Tempo 1.x (instrumentationLibrarySpans, hex ids), and takes TEMPO_URL', async () => {
    const r = await new Promise<CliResult>((done) =>
      execFile(
        process.execPath,
        [TRACE_CLI, TURN_B.toUpperCase()],
        { env: { ...process.env, TEMPO_URL: tempo.url } },
        (err, stdout, stderr) => done({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
      ),
    );
    expect(r.code).toBe(0);
    expect(rows(r.stdout).map(shape)).toEqual(B_ROWS);
  });

  it('--last 2 finds the last two turns with a TraceQL search and prints them oldest first', async () => {
    tempo.requests.length = 0;
    const r = await trace('--last', '2', '--tempo', tempo.url);
    expect(r.code).toBe(0);
    expect(tempo.requests[0]).toBe(`GET /api/search?q=${encodeURIComponent('{ name = "turn" }')}&limit=2`);
    // The search's trace id lost its leading zeros; the full id is fetched.
    expect(tempo.requests.slice(1)).toEqual([`GET /api/traces/${TURN_A}`, `GET /api/traces/${TURN_B}`]);
    expect(headings(r.stdout)).toEqual([TURN_A, TURN_B]);
    expect(rows(r.stdout).map(shape)).toEqual([...A_ROWS, ...B_ROWS]);

    const one = await trace('--last', '1', '--tempo', tempo.url);
    expect(headings(one.stdout)).toEqual([TURN_B]);
  });

  it('--last falls back to the tag search when Tempo has no TraceQL', async () => {
    tempo.noTraceQl = true;
    tempo.requests.length = 0;
    try {
      const r = await trace('--last', '1', '--tempo', tempo.url);
      expect(r.code).toBe(0);
      expect(tempo.requests[1]).toBe(`GET /api/search?tags=${encodeURIComponent('name=turn')}&limit=1`);
      expect(headings(r.stdout)).toEqual([TURN_B]);
    } finally {
      tempo.noTraceQl = false;
    }
  });

  it('an unknown trace exits 1 naming Tempo; an unreachable Tempo exits 1 naming its URL', async () => {
    const unknown = 'ffffffffffffffffffffffffffffffff';
    const r = await trace(unknown, '--tempo', tempo.url);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`trace: trace ${unknown} not found in Tempo at ${tempo.url}\n`);

    const closed = `http://127.0.0.1:${await freePort()}`;
    const down = await trace(TURN_A, '--tempo', closed);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain(`cannot reach Tempo at ${closed} (ECONNREFUSED)`);
  });

  it('bad input exits 2 with the reason and the usage', async () => {
    const cases = [
      [],
      ['not-a-trace-id'],
      ['--last', '0'],
      ['--last', 'two'],
      [TURN_A, '--last', '1'],
      [TURN_A, TURN_B],
      [TURN_A, '--bogus'],
      [TURN_A, '--tempo', 'localhost:3200'],
      [TURN_A, '--tempo', tempo.url, '--file', 'x.json'],
      ['--last', '1', '--file', join(dir, 'missing.json')],
    ];
    const results = await Promise.all(cases.map((args) => trace(...args)));
    for (const [i, r] of results.entries()) {
      const args = cases[i]!.join(' ');
      expect(r.code, args).toBe(2);
      expect(r.stderr, args).toMatch(/^trace: .+\nusage: npm run trace -- <traceId>/);
      expect(r.stdout, args).toBe('');
    }
    const r = await trace('nope');
    expect(r.stderr.split('\n')[0]).toBe('trace: "nope" is not a trace id (up to 32 hex digits)');
  });
});

describe('npm run trace -- --file (the spans file the demo writes)', () => {
  it('prints the last N turns of a spans file, or one trace by id; an unknown id exits 1', async () => {
    // What runConversation writes: every span received, ReceivedSpan[], in arrival order.
    const spans = [...TEMPO_TRACES.values()].flatMap(spansFromOtlpJson);
    const file = join(dir, 'demo-1.spans.json');
    await writeFile(file, JSON.stringify(spans.reverse()));

    const last = await trace('--file', file, '--last', '1');
    expect(last.stderr).toBe('');
    expect(last.code).toBe(0);
    expect(headings(last.stdout)).toEqual([TURN_B]);
    expect(rows(last.stdout).map(shape)).toEqual(B_ROWS);

    const both = await trace('--file', file, '--last', '5');
    expect(headings(both.stdout)).toEqual([TURN_A, TURN_B]);

    const one = await trace(TURN_A, '--file', file);
    expect(one.code).toBe(0);
    expect(rows(one.stdout).map(shape)).toEqual(A_ROWS);

    const missing = await trace('0123', '--file', file);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(`trace: trace ${'0123'.padStart(32, '0')} is not in ${file}\n`);
  });

  it('also reads a trace saved from Tempo (curl …/api/traces/<id> > file)', async () => {
    const file = join(dir, 'from-tempo.json');
    await writeFile(file, JSON.stringify(TEMPO_TRACES.get(TURN_A)));
    const r = await trace('--file', file, '--last', '1');
    expect(r.code).toBe(0);
    expect(rows(r.stdout).map(shape)).toEqual(A_ROWS);

    const broken = join(dir, 'broken.json');
    await writeFile(broken, '[{"traceId": 1}]');
    const bad = await trace('--file', broken, '--last', '1');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/not a spans file/);
  });
});
