// npm run trace -- <traceId | --last N> [--tempo URL] [--file FILE] [--width N]
// Prints a turn's latency waterfall: one bar per span, indented under its parent, offsets and durations in ms,
// each stage's key latencies (va.e2e_ms, va.ttft_ms, va.ttfb_ms, va.eou_delay_ms…) and span events (barge_in…).
// Spans come from Tempo's HTTP API (--tempo, else TEMPO_URL, else http://localhost:3200) or from a spans file
// (--file: the demo's out/<session>.spans.json, or an OTLP/JSON trace saved from Tempo).
// Exit: 0 printed; 1 not found, Tempo unreachable or failing; 2 bad input.
import { parseArgs } from 'node:util';

const USAGE = `usage: npm run trace -- <traceId> [--tempo URL | --file FILE] [--width N]
       npm run trace -- --last N [--tempo URL | --file FILE] [--width N]
  <traceId>     a turn's trace id (hex, as the demo and the talk page print it)
  --last N      the last N turns (Tempo: search { name = "turn" }; a file: its last N turns)
  --tempo URL   Tempo's HTTP API (default TEMPO_URL or http://localhost:3200)
  --file FILE   a spans file instead of Tempo: out/<session>.spans.json from npm run demo, or an OTLP/JSON trace
  --width N     the bars' width in characters (default 48)`;

function usage(message) {
  console.error(`trace: ${message}\n${USAGE}`);
  process.exit(2);
}

function fail(message) {
  console.error(`trace: ${message}`);
  process.exit(1);
}

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      last: { type: 'string' },
      tempo: { type: 'string' },
      file: { type: 'string' },
      width: { type: 'string', default: '48' },
      help: { type: 'boolean', short: 'h' },
    },
  });
} catch (err) {
  usage(err.message);
}
const { values, positionals } = parsed;
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (positionals.length > 1) usage(`one trace id at a time (got ${positionals.join(' ')})`);
const [rawId] = positionals;
if (rawId === undefined && values.last === undefined) usage('give a trace id or --last N');
if (rawId !== undefined && values.last !== undefined) usage('give a trace id or --last N, not both');
if (values.tempo !== undefined && values.file !== undefined) usage('--tempo and --file: choose one source');
if (rawId !== undefined && !/^[0-9a-f]{1,32}$/i.test(rawId))
  usage(`"${rawId}" is not a trace id (up to 32 hex digits)`);
const last = values.last === undefined ? undefined : Number(values.last);
if (last !== undefined && !(Number.isInteger(last) && last > 0 && last <= 1000)) {
  usage(`--last must be a whole number from 1 to 1000 (got "${values.last}")`);
}
const width = Number(values.width);
if (!(Number.isInteger(width) && width >= 10 && width <= 400)) usage(`--width must be 10…400 (got "${values.width}")`);
const tempo = values.file === undefined ? (values.tempo ?? (process.env.TEMPO_URL || 'http://localhost:3200')) : '';
if (values.file === undefined && !/^https?:\/\/[^/]/.test(tempo)) {
  usage(`"${tempo}" is not Tempo's http(s) URL (e.g. http://localhost:3200)`);
}

// Loaded once the arguments are known good: a usage error answers at once.
const {
  fetchTempoTrace,
  normalizeTraceId,
  readSpansFile,
  renderTrace,
  searchTempoTurns,
  SpansFileError,
  TempoError,
  turnTraces,
} = await import('@va/e2e');
const traceId = rawId === undefined ? undefined : normalizeTraceId(rawId);

/** The traces to print, oldest first. */
async function fromFile(path) {
  let spans;
  try {
    spans = await readSpansFile(path);
  } catch (err) {
    if (err instanceof SpansFileError) usage(err.message);
    throw err;
  }
  if (traceId !== undefined) {
    const mine = spans.filter((s) => s.traceId === traceId);
    if (mine.length === 0) fail(`trace ${traceId} is not in ${path}`);
    return [{ traceId, spans: mine }];
  }
  const turns = turnTraces(spans);
  if (turns.length === 0) fail(`no turns (traces with a "turn" root span) in ${path}`);
  return turns.slice(-last);
}

async function fromTempo(base) {
  try {
    if (traceId !== undefined) {
      const spans = await fetchTempoTrace(base, traceId);
      if (!spans) fail(`trace ${traceId} not found in Tempo at ${base}`);
      return [{ traceId, spans }];
    }
    const ids = await searchTempoTurns(base, last);
    if (ids.length === 0) fail(`no turns found in Tempo at ${base} (search { name = "turn" })`);
    const traces = [];
    // Oldest first, like a conversation.
    for (const id of ids.reverse()) {
      const spans = await fetchTempoTrace(base, id);
      if (spans) traces.push({ traceId: id, spans });
      else console.error(`trace: trace ${id} was found by the search but not fetched from Tempo at ${base}`);
    }
    if (traces.length === 0) fail(`none of the turns found could be fetched from Tempo at ${base}`);
    return traces;
  } catch (err) {
    if (err instanceof TempoError) fail(err.message);
    throw err;
  }
}

const traces = values.file !== undefined ? await fromFile(values.file) : await fromTempo(tempo);
console.log(traces.map((t) => renderTrace(t, width)).join('\n\n'));
