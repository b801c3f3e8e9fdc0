// The real LiveKit Agents peer for the bench: one offline `voice.AgentSession` (no room, no server) with timed fake
// providers, fed real-time 20 ms PCM frames, N sequential user turns.
//
//   node run.mjs --profile fast-cloud [--turns 50] [--min-delay-ms N] [--timings JSON] [--log-level warn]
//
// Per turn, e2e = wall time of the first agent audio frame reaching the AudioOutput sink − wall time of the user's
// speech end (delivery of the last speech frame). Prints ONE JSON line on stdout at the end; everything else
// (LiveKit's own logs included) goes to stderr. Stops itself, exit 1, if a turn takes > 20 s or the run > 10 min.
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';

// LiveKit's logger writes to process.stdout: send all of it to stderr, keep the real stdout for the result line.
const writeResult = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr);

const { initializeLogger, inference, stt, tts, voice } = await import('@livekit/agents');
const { AudioFrame } = await import('@livekit/rtc-node');

/**
 * Provider timings, as in bench/src/profiles.ts (LiveKit has one LLM: the profile's deep LLM, not the SLM).
 * `--timings '{"llmTtftMs":200}'` overrides any of them, so the main bench can pass its own numbers.
 */
const PROFILES = {
  'fast-cloud': {
    sttFinalMs: 100,
    sttPartialMs: 100,
    llmTtftMs: 160,
    llmTokensPerSecond: 150,
    ttsFirstByteMs: 75,
    ttsMsPerChar: 12,
  },
  'typical-cloud': {
    sttFinalMs: 250,
    sttPartialMs: 100,
    llmTtftMs: 700,
    llmTokensPerSecond: 60,
    ttsFirstByteMs: 300,
    ttsMsPerChar: 12,
  },
};

/** The bench's user turns (bench/src/profiles.ts BENCH_SENTENCES), in order. */
const SENTENCES = [
  'what is the weather like today',
  'set an alarm for seven in the morning',
  'can you recommend a good book',
  'how far is the nearest train station',
  'remind me to call my sister',
];

const SAMPLE_RATE = 16000;
const FRAME_MS = 20;
const FRAME_SAMPLES = (SAMPLE_RATE * FRAME_MS) / 1000;
const TURN_LIMIT_MS = 20_000;
const RUN_LIMIT_MS = 10 * 60_000;

const usage =
  'usage: node run.mjs --profile <fast-cloud|typical-cloud> [--turns 50] [--min-delay-ms N] ' +
  "[--speech-ms 1200] [--pause-ms 400] [--timings '{...}'] [--log-level warn]";

function fail(message, code = 1) {
  process.stderr.write(`livekit-peer: ${message}\n`);
  process.exit(code);
}

const { values: args } = (() => {
  try {
    return parseArgs({
      options: {
        profile: { type: 'string' },
        turns: { type: 'string', default: '50' },
        'min-delay-ms': { type: 'string' },
        'speech-ms': { type: 'string', default: '1200' },
        'pause-ms': { type: 'string', default: '400' },
        timings: { type: 'string' },
        'log-level': { type: 'string', default: 'warn' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    fail(`${err.message}\n${usage}`, 2);
  }
})();
if (args.help) {
  process.stderr.write(`${usage}\n`);
  process.exit(0);
}
const base = PROFILES[args.profile];
if (!base) fail(`unknown or missing --profile ${JSON.stringify(args.profile)}\n${usage}`, 2);
const int = (name, min) => {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v < min) fail(`--${name} must be an integer ≥ ${min}`, 2);
  return v;
};
const turns = int('turns', 1);
const speechMs = int('speech-ms', FRAME_MS);
const pauseMs = int('pause-ms', 0);
const minDelayMs = args['min-delay-ms'] === undefined ? undefined : int('min-delay-ms', 0);
let timings = base;
if (args.timings !== undefined) {
  try {
    timings = { ...base, ...JSON.parse(args.timings) };
  } catch {
    fail('--timings must be a JSON object', 2);
  }
}
for (const [k, v] of Object.entries(timings)) {
  if (typeof v !== 'number' || !(v >= 0)) fail(`timing ${k} must be a number ≥ 0`, 2);
}

const runTimer = setTimeout(() => fail(`the run took longer than ${RUN_LIMIT_MS / 60_000} min`), RUN_LIMIT_MS);
initializeLogger({ pretty: false, level: args['log-level'] });
const log = (line) => process.stderr.write(`livekit-peer: ${line}\n`);
const now = () => performance.timeOrigin + performance.now();

// ---------------------------------------------------------------------------------------------------------------
// Audio: synthetic speech (a voiced buzz with a little noise) and digital silence, 16 kHz mono, 20 ms frames.

function speechFrame(index) {
  const data = new Int16Array(FRAME_SAMPLES);
  for (let n = 0; n < FRAME_SAMPLES; n++) {
    const t = (index * FRAME_SAMPLES + n) / SAMPLE_RATE;
    const voiced = Math.sin(2 * Math.PI * 140 * t) + 0.5 * Math.sin(2 * Math.PI * 280 * t);
    data[n] = Math.round(0.25 * 32767 * (0.8 * voiced * 0.66 + 0.2 * (Math.random() * 2 - 1)));
  }
  return new AudioFrame(data, SAMPLE_RATE, 1, FRAME_SAMPLES);
}
const silenceFrame = () => new AudioFrame(new Int16Array(FRAME_SAMPLES), SAMPLE_RATE, 1, FRAME_SAMPLES);

function rms(samples) {
  let sum = 0;
  for (const s of samples) sum += s * s;
  return samples.length === 0 ? 0 : Math.sqrt(sum / samples.length) / 32768;
}

/** `AudioInput` the bench pushes frames into, as a microphone would (one 20 ms frame every 20 ms). */
class BenchAudioInput extends voice.AudioInput {
  #controller;
  constructor() {
    super();
    this.multiStream.addInputStream(new ReadableStream({ start: (c) => (this.#controller = c) }));
  }
  push(frame) {
    this.#controller.enqueue(frame);
  }
}

/**
 * `AudioOutput` sink: timestamps the first frame of each segment and "plays" the audio in real time (a segment
 * finishes its pushed duration after its first frame), so the session's speaking state lasts as a real one would.
 */
class TimingAudioOutput extends voice.AudioOutput {
  #pushedMs = 0;
  #startedAt = 0;
  #finishTimer;
  constructor(onFirstFrame) {
    super(SAMPLE_RATE, undefined, { pause: false });
    this.onFirstFrame = onFirstFrame;
  }
  async captureFrame(frame) {
    await super.captureFrame(frame);
    if (this.#pushedMs === 0) {
      this.#startedAt = Date.now();
      this.onFirstFrame(now());
      this.onPlaybackStarted(this.#startedAt);
    }
    this.#pushedMs += (frame.samplesPerChannel / frame.sampleRate) * 1000;
  }
  flush() {
    super.flush();
    if (this.#pushedMs === 0) return;
    const pushedMs = this.#pushedMs;
    const wait = Math.max(0, this.#startedAt + pushedMs - Date.now());
    this.#pushedMs = 0;
    this.#finishTimer = setTimeout(() => {
      this.#finishTimer = undefined;
      this.onPlaybackFinished({ playbackPosition: pushedMs / 1000, interrupted: false });
    }, wait);
  }
  clearBuffer() {
    const played = Math.max(0, Date.now() - this.#startedAt);
    if (this.#finishTimer !== undefined) {
      clearTimeout(this.#finishTimer);
      this.#finishTimer = undefined;
      this.onPlaybackFinished({ playbackPosition: played / 1000, interrupted: true });
    } else if (this.#pushedMs > 0) {
      const pushedMs = this.#pushedMs;
      this.#pushedMs = 0;
      this.onPlaybackFinished({ playbackPosition: Math.min(played, pushedMs) / 1000, interrupted: true });
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Providers.

/**
 * Scripted VAD: LiveKit's default VAD (`inference.VAD`, silero, with its default 50 ms min speech, 250 ms min
 * silence and 32 ms windows) with the model's speech probability replaced by a script: 1 for a window with the
 * synthetic speech in it, 0 for silence. Events, their timing and their silence/speech durations are LiveKit's own.
 */
class ScriptedVAD extends inference.VAD {
  label = 'bench.ScriptedVAD';
  stream() {
    const s = super.stream();
    if (!('_nativeVad' in s)) throw new Error('inference.VAD stream internals changed: cannot script it');
    s._nativeVad = { predict: async (window) => (rms(window) > 0.01 ? 1 : 0), reset() {} };
    return s;
  }
}

/**
 * The agent's replies: word for word what our own answer LLM (libs/local-llm's brain) says to the bench sentences,
 * so both pipelines speak the same text (same first-sentence length, same audio length).
 */
const REPLIES = {
  'what is the weather like today':
    'You asked about the weather like today. The answer about the weather depends on a few details, so it helps to be specific. Is there a specific detail about the weather I should focus on?',
  'set an alarm for seven in the morning':
    'You said set an alarm for seven in the morning. A good way into seven is to start with the part that affects you most. Would you like a quick overview of seven or the full details?',
  'can you recommend a good book':
    'You asked me to recommend a good book. There are a few ways to look at book, and the right one depends on your situation. Which part of book matters most to you?',
  'how far is the nearest train station':
    'You asked about far is the nearest train station. A good way into station is to start with the part that affects you most. Which part of station matters most to you?',
  'remind me to call my sister':
    'You said remind you to call your sister. A good way into your sister is to start with the part that affects you most. Is there a specific detail about your sister I should focus on?',
};
function replyFor(userText) {
  const key = userText
    .trim()
    .toLowerCase()
    .replace(/[.?!]+$/, '');
  if (REPLIES[key] !== undefined) return REPLIES[key];
  log(`no scripted reply for ${JSON.stringify(key)}: using a generic one`);
  return `You said ${key}. That depends on a few details, so it helps to be specific. Shall I look into it?`;
}

/**
 * LiveKit's `voice.testing.FakeLLM` with the profile's timing: any input gets a reply (first chunk after TTFT, as
 * FakeLLM does), and its chunks are released at the profile's tokens/s (one token = one word, as our local LLM) —
 * FakeLLM alone would hand over the whole reply at TTFT.
 */
class PacedFakeLLM extends voice.testing.FakeLLM {
  constructor({ ttftMs, tokensPerSecond }) {
    super([]);
    this.ttftMs = ttftMs;
    this.gapMs = tokensPerSecond > 0 ? 1000 / tokensPerSecond : 0;
  }
  lookup(input) {
    const content = replyFor(input);
    const tokens = content.split(/\s+/).length;
    return { input, type: 'llm', content, ttft: this.ttftMs, duration: this.ttftMs + (tokens - 1) * this.gapMs };
  }
  chat(opts) {
    const stream = super.chat(opts);
    const queue = stream.queue;
    const put = queue.put.bind(queue);
    const close = queue.close.bind(queue);
    let chain = Promise.resolve();
    let firstAt;
    let text = '';
    queue.put = (chunk) => {
      text += chunk?.delta?.content ?? '';
      firstAt ??= now();
      const at = firstAt + (text.trim().split(/\s+/).length - 1) * this.gapMs;
      chain = chain
        .then(() => sleep(Math.max(0, at - now())))
        .then(() => {
          if (!queue.closed) put(chunk);
        });
    };
    queue.close = () => {
      chain = chain.then(() => {
        if (!queue.closed) close();
      });
    };
    return stream;
  }
}

/**
 * Small non-streaming fake TTS (the session wraps it in LiveKit's `tts.StreamAdapter` with its sentence tokenizer,
 * as it does any non-streaming TTS): each request waits the profile's first-byte delay, then returns a tone of
 * `msPerChar` per character in 20 ms frames.
 */
class FakeTTS extends tts.TTS {
  label = 'bench.FakeTTS';
  constructor({ firstByteMs, msPerChar }) {
    super(SAMPLE_RATE, 1, { streaming: false });
    this.firstByteMs = firstByteMs;
    this.msPerChar = msPerChar;
  }
  synthesize(text, connOptions, abortSignal) {
    return new FakeChunkedStream(text, this, connOptions, abortSignal);
  }
  stream() {
    throw new Error('FakeTTS is not streaming: the session wraps it in tts.StreamAdapter');
  }
}

class FakeChunkedStream extends tts.ChunkedStream {
  label = 'bench.FakeChunkedStream';
  constructor(text, owner, connOptions, abortSignal) {
    super(text, owner, connOptions, abortSignal);
    this.owner = owner;
  }
  async run() {
    try {
      await sleep(this.owner.firstByteMs, undefined, { signal: this.abortSignal });
    } catch {
      return; // aborted
    }
    const total = Math.max(
      FRAME_SAMPLES,
      Math.round((this.owner.msPerChar * this.inputText.length * SAMPLE_RATE) / 1000),
    );
    const requestId = randomUUID();
    for (let off = 0; off < total && !this.abortSignal.aborted; off += FRAME_SAMPLES) {
      const n = Math.min(FRAME_SAMPLES, total - off);
      const data = new Int16Array(n);
      for (let i = 0; i < n; i++)
        data[i] = Math.round(0.3 * 32767 * Math.sin((2 * Math.PI * 220 * (off + i)) / SAMPLE_RATE));
      this.queue.put({
        requestId,
        segmentId: requestId,
        frame: new AudioFrame(data, SAMPLE_RATE, 1, n),
        final: off + n >= total,
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The session: LiveKit's defaults except the providers (and endpointing.minDelay when --min-delay-ms is given).

const fakeStt = new stt.testing.FakeSTT({ capabilities: { streaming: true, interimResults: true } });
let sttStream; // the session's current STT stream (FakeSTT posts each new one on streamCh)
void (async () => {
  for await (const s of fakeStt.streamCh) sttStream = s;
})();
function sendTranscript(text, final) {
  if (!sttStream) return log(`no STT stream to send ${final ? 'the final' : 'an interim'} transcript to`);
  try {
    sttStream.sendFakeTranscript(text, final);
  } catch (err) {
    log(`could not send a transcript: ${err?.message ?? err}`);
  }
}

const vad = new ScriptedVAD();
const session = new voice.AgentSession({
  vad,
  stt: fakeStt,
  llm: new PacedFakeLLM({ ttftMs: timings.llmTtftMs, tokensPerSecond: timings.llmTokensPerSecond }),
  tts: new FakeTTS({ firstByteMs: timings.ttsFirstByteMs, msPerChar: timings.ttsMsPerChar }),
  ...(minDelayMs !== undefined ? { turnHandling: { endpointing: { minDelay: minDelayMs } } } : {}),
});

let pending; // the current turn: { speechEnd, firstAudio?, playedOut }
let strayAudio = 0;
const audioInput = new BenchAudioInput();
const audioOutput = new TimingAudioOutput((at) => {
  if (pending && pending.firstAudio === undefined) {
    pending.firstAudio = at;
  } else {
    strayAudio++;
    log('agent audio outside a user turn');
  }
});
audioOutput.on(voice.AudioOutput.EVENT_PLAYBACK_FINISHED, () => {
  if (pending?.firstAudio !== undefined) pending.playedOut = true;
});
session.input.audio = audioInput;
session.output.audio = audioOutput;
session.on(voice.AgentSessionEventTypes.Error, (ev) => log(`session error: ${ev.error?.message ?? ev.error}`));

await session.start({ agent: new voice.Agent({ instructions: 'You are a helpful voice assistant.' }) });

const th = session.sessionOptions.turnHandling;
const detector = session.turnDetection;
const agentsVersion = JSON.parse(
  readFileSync(new URL('./node_modules/@livekit/agents/package.json', import.meta.url), 'utf8'),
).version;
const settings = {
  livekitAgents: agentsVersion,
  defaults: minDelayMs === undefined,
  endpointing: th.endpointing,
  preemptiveGeneration: th.preemptiveGeneration,
  turnDetector:
    typeof detector === 'object' && detector !== null
      ? `${detector.constructor.name}(${detector.model ?? ''}${detector._executor === undefined ? ', no inference executor: always end of turn' : ''})`
      : String(detector),
  vad: { ...vad._opts, model: 'scripted (inference.VAD logic, scripted speech probability)' },
  timings,
  speechMs,
  pauseMs,
  frameMs: FRAME_MS,
};
log(`settings ${JSON.stringify(settings)}`);

// ---------------------------------------------------------------------------------------------------------------
// The user: a real-time 20 ms frame clock; speech, then silence until the reply has played out, then a pause.

const clockStart = now();
let framesPushed = 0;
async function pushFrame(frame) {
  framesPushed++;
  // A microphone delivers a frame once its 20 ms have been recorded.
  const due = clockStart + framesPushed * FRAME_MS;
  const wait = due - now();
  if (wait > 0) await sleep(wait);
  audioInput.push(frame);
}

// Lead-in silence so the pipeline is warm and listening.
for (let i = 0; i < 500 / FRAME_MS; i++) await pushFrame(silenceFrame());

const e2eMs = [];
const speechFrames = Math.round(speechMs / FRAME_MS);
for (let t = 0; t < turns; t++) {
  const text = SENTENCES[t % SENTENCES.length];
  const words = text.split(' ');
  const speechStart = now();
  let nextPartial = speechStart + timings.sttPartialMs;
  for (let f = 0; f < speechFrames; f++) {
    await pushFrame(speechFrame(f));
    if (timings.sttPartialMs > 0 && now() >= nextPartial && f < speechFrames - 1) {
      nextPartial += timings.sttPartialMs;
      const heard = Math.max(1, Math.ceil((words.length * (f + 1)) / speechFrames));
      sendTranscript(words.slice(0, heard).join(' '), false);
    }
  }
  const turn = { speechEnd: now(), firstAudio: undefined, playedOut: false };
  pending = turn;
  const finalTimer = setTimeout(() => sendTranscript(text, true), timings.sttFinalMs);
  while (!turn.playedOut) {
    if (now() - turn.speechEnd > TURN_LIMIT_MS) {
      clearTimeout(finalTimer);
      fail(
        `turn ${t + 1} took longer than ${TURN_LIMIT_MS / 1000} s (${turn.firstAudio === undefined ? 'no agent audio' : 'agent audio never finished playing'})`,
      );
    }
    await pushFrame(silenceFrame());
  }
  pending = undefined;
  const e2e = Math.round(turn.firstAudio - turn.speechEnd);
  e2eMs.push(e2e);
  log(`turn ${t + 1}/${turns}: e2e ${e2e} ms`);
  for (let i = 0; i < pauseMs / FRAME_MS; i++) await pushFrame(silenceFrame());
}

await Promise.race([session.close().catch((err) => log(`close: ${err?.message ?? err}`)), sleep(5000)]);
clearTimeout(runTimer);
const sorted = [...e2eMs].sort((a, b) => a - b);
log(
  `e2e p50 ${sorted[Math.floor((sorted.length - 1) / 2)]} ms over ${e2eMs.length} turns${strayAudio ? `, ${strayAudio} stray agent audio segments` : ''}`,
);
writeResult(`${JSON.stringify({ variant: 'livekit', profile: args.profile, e2eMs, settings })}\n`, () =>
  process.exit(0),
);
