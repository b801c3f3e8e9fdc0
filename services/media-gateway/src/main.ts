import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ActorContext, closeSession, newInstanceId, openSession, parseEnv, ServiceEnv } from '@va/actor';
import { readWav, resample, samplesForMs, writeWavChannels } from '@va/audio';
import { Bus } from '@va/bus';
import { BUCKETS, sessionId as parseSessionId, STAGES, type SessionRecording } from '@va/protocol';
import { createProvider } from '@va/providers';
import { createLogger, shutdownTelemetry, startTelemetry } from '@va/telemetry';
import { z } from 'zod';
import { FRAME_MS, GatewaySession, micSilence, STAGE } from './actor.js';
import { runClock, Script, ScriptMic, TrackRecorder, WavMic, type MicSource } from './wav-transport.js';

const env = parseEnv(
  ServiceEnv.extend({
    GATEWAY_TRANSPORT: z.enum(['wav']).default('wav'),
    /** The microphone: a WAV file, or a script of utterances spoken by the local TTS. */
    GATEWAY_WAV: z.string().optional(),
    GATEWAY_SCRIPT: z.string().optional(),
    GATEWAY_OUT_DIR: z.string().default('out'),
    GATEWAY_SESSION_ID: z.string().default(`s-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`),
    GATEWAY_SAMPLE_RATE: z.coerce
      .number()
      .pipe(z.union([z.literal(16000), z.literal(24000), z.literal(48000)]))
      .default(16000),
    /** After the microphone input ends, how long the session must be quiet before it closes. */
    GATEWAY_TAIL_MS: z.coerce.number().int().positive().default(1000),
    GATEWAY_MAX_TAIL_MS: z.coerce.number().int().positive().default(30_000),
    GATEWAY_OPEN_TIMEOUT_MS: z.coerce.number().int().positive().default(20_000),
  }),
);
if (!env.GATEWAY_WAV === !env.GATEWAY_SCRIPT) {
  process.stderr.write('media-gateway (wav transport): set exactly one of GATEWAY_WAV or GATEWAY_SCRIPT\n');
  process.exit(2);
}

const instanceId = newInstanceId();
startTelemetry({ serviceName: STAGE, instanceId });
const log = createLogger(STAGE, { instanceId });
const bus = await Bus.connect({ stage: STAGE, instanceId, servers: env.NATS_URL, logger: log });
const sessionId = parseSessionId(env.GATEWAY_SESSION_ID);
const rate = env.GATEWAY_SAMPLE_RATE;

// The microphone: a script spoken by the local TTS (paced by the conversation), or a recording.
const mic: MicSource = env.GATEWAY_SCRIPT
  ? await ScriptMic.create(
      Script.parse(JSON.parse(await readFile(env.GATEWAY_SCRIPT, 'utf8'))),
      await createProvider('tts', 'local'),
      rate,
    )
  : new WavMic(await resample(readWav(await readFile(env.GATEWAY_WAV!)), rate));

const others = STAGES.filter((s) => s !== STAGE);
const acks = await openSession(
  bus,
  sessionId,
  { sampleRate: rate },
  { stages: others, timeoutMs: env.GATEWAY_OPEN_TIMEOUT_MS },
);
log.info({ sessionId, stages: acks.map((a) => `${a.stage}@${a.instanceId}`) }, 'session opened');
const missing = others.filter((s) => !acks.some((a) => a.stage === s));
if (missing.length > 0) log.warn({ missing }, 'stages did not claim the session in time; they will when they can');

const ctx = new ActorContext(
  sessionId,
  { sampleRate: rate, language: 'en-US' },
  STAGE,
  bus,
  await bus.kv(BUCKETS.state),
  false,
  log,
);
ctx.followControl();
const session = new GatewaySession(ctx, rate);

const frameSamples = samplesForMs(FRAME_MS, rate);
let micEndedAt: number | undefined;
const userTrack = new TrackRecorder();
const agentTrack = new TrackRecorder();
const stop = new AbortController();
process.once('SIGTERM', () => stop.abort());
process.once('SIGINT', () => stop.abort());

// Play the microphone in real time, then keep the line open (comfort noise) until the agent is done.
const frames = await runClock(
  FRAME_MS,
  (i) => {
    const state = { nowMs: session.nowMs, idle: session.idle, lastActivity: session.lastActivity };
    const spoken = micEndedAt === undefined ? mic.next(frameSamples, state) : null;
    if (spoken === null) micEndedAt ??= session.nowMs;
    const micFrame = spoken ?? micSilence(frameSamples, i + 1);
    const agent = session.tick(micFrame);
    userTrack.write(i, frameSamples, micFrame);
    agentTrack.write(i, frameSamples, agent);
    if (micEndedAt === undefined) return true;
    const quietFor = session.nowMs - Math.max(session.lastActivity, micEndedAt);
    const overtime = session.nowMs - micEndedAt;
    return !(session.idle && quietFor >= env.GATEWAY_TAIL_MS) && overtime < env.GATEWAY_MAX_TAIL_MS;
  },
  stop.signal,
);

session.close();
closeSession(bus, sessionId, 'transport ended');
const outDir = resolve(env.GATEWAY_OUT_DIR);
await mkdir(outDir, { recursive: true });
const agentWav = join(outDir, `${sessionId}.agent.wav`);
const mixWav = join(outDir, `${sessionId}.mix.wav`);
await writeFile(agentWav, writeWavChannels([agentTrack.samples()], rate));
// Stereo: the user on the left, the agent on the right — listen to the conversation as it happened.
await writeFile(mixWav, writeWavChannels([userTrack.samples(), agentTrack.samples()], rate));
const summary: SessionRecording = {
  sessionId,
  sampleRate: rate,
  durationMs: frames * FRAME_MS,
  utterances: mic.utterances,
  turns: session.records,
  segments: session.segments,
  agentWav,
  mixWav,
};
await writeFile(join(outDir, `${sessionId}.session.json`), JSON.stringify(summary, null, 2));
log.info({ sessionId, turns: session.records.length, out: outDir }, 'session finished');
ctx.close('closed');
await bus.drain();
await shutdownTelemetry();
process.exit(0);
