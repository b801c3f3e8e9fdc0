import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ActorContext, closeSession, openSession } from '@va/actor';
import { samplesForMs, writeWavChannels } from '@va/audio';
import type { Bus } from '@va/bus';
import { BUCKETS, requests, STAGES, type SessionId, type SessionRecording } from '@va/protocol';
import { FRAME_MS, GatewaySession, micSilence, STAGE } from './actor.js';
import { runClock, TrackRecorder, type MicSource } from './wav-transport.js';

export interface RecordedSessionOptions {
  sampleRate: 16000 | 24000 | 48000;
  outDir: string;
  /** Write the agent and mix WAVs (off for load runs of many sessions). */
  recordAudio: boolean;
  /** After the microphone ends, how long the session must be quiet before it closes. */
  tailMs: number;
  maxTailMs: number;
  openTimeoutMs: number;
  signal: AbortSignal;
}

/**
 * One session of the file transport: opens it on every stage, plays the microphone in real time (then comfort
 * noise until the agent is done), records both sides on the session clock, closes it, and writes the recording.
 */
export async function runRecordedSession(
  bus: Bus,
  sessionId: SessionId,
  mic: MicSource,
  opts: RecordedSessionOptions,
): Promise<SessionRecording> {
  const log = bus.log.child({ sessionId });
  const rate = opts.sampleRate;
  const others = STAGES.filter((s) => s !== STAGE);
  const acks = await openSession(
    bus,
    sessionId,
    { sampleRate: rate },
    { stages: others, timeoutMs: opts.openTimeoutMs },
  );
  log.info({ stages: acks.map((a) => `${a.stage}@${a.instanceId}`) }, 'session opened');
  const missing = others.filter((s) => !acks.some((a) => a.stage === s));
  if (missing.length > 0) log.warn({ missing }, 'stages did not claim the session in time; they will when they can');

  const config = { sampleRate: rate, language: 'en-US' };
  const ctx = new ActorContext(sessionId, config, STAGE, bus, await bus.kv(BUCKETS.state), false, log);
  ctx.followControl();
  const session = new GatewaySession(ctx, rate);
  const frameSamples = samplesForMs(FRAME_MS, rate);
  const userTrack = new TrackRecorder();
  const agentTrack = new TrackRecorder();
  let micEndedAt: number | undefined;

  const frames = await runClock(
    FRAME_MS,
    (i) => {
      const state = {
        nowMs: session.nowMs,
        idle: session.idle,
        lastActivity: session.lastActivity,
        agentTurnStartMs: session.agentTurnStart,
      };
      const spoken = micEndedAt === undefined ? mic.next(frameSamples, state) : null;
      if (spoken === null) micEndedAt ??= session.nowMs;
      const micFrame = spoken ?? micSilence(frameSamples, i + 1);
      const agent = session.tick(micFrame);
      if (opts.recordAudio) {
        userTrack.write(i, frameSamples, micFrame);
        agentTrack.write(i, frameSamples, agent);
      }
      if (micEndedAt === undefined) return true;
      const quietFor = session.nowMs - Math.max(session.lastActivity, micEndedAt);
      const overtime = session.nowMs - micEndedAt;
      return !(session.idle && quietFor >= opts.tailMs) && overtime < opts.maxTailMs;
    },
    opts.signal,
  );

  session.close();
  // What context kept of the conversation (cut where the user barged in), before closing clears it.
  const history = await bus
    .request(requests.ctxGet, { sessionId, maxTokens: 1_000_000 }, { timeoutMs: 2000 })
    .then((r) => r.messages)
    .catch((err: unknown) => {
      log.warn({ err: String(err) }, 'no history for the recording');
      return [];
    });
  closeSession(bus, sessionId, 'transport ended');
  const outDir = resolve(opts.outDir);
  await mkdir(outDir, { recursive: true });
  const agentWav = join(outDir, `${sessionId}.agent.wav`);
  const mixWav = join(outDir, `${sessionId}.mix.wav`);
  if (opts.recordAudio) {
    await writeFile(agentWav, writeWavChannels([agentTrack.samples()], rate));
    // Stereo: the user on the left, the agent on the right — listen to the conversation as it happened.
    await writeFile(mixWav, writeWavChannels([userTrack.samples(), agentTrack.samples()], rate));
  }
  const recording: SessionRecording = {
    sessionId,
    sampleRate: rate,
    durationMs: frames * FRAME_MS,
    utterances: mic.utterances,
    turns: session.records,
    segments: session.segments,
    agentWav: opts.recordAudio ? agentWav : '',
    mixWav: opts.recordAudio ? mixWav : '',
    history,
  };
  await writeFile(join(outDir, `${sessionId}.session.json`), JSON.stringify(recording, null, 2));
  log.info({ turns: session.records.length, out: outDir }, 'session finished');
  ctx.close('closed');
  return recording;
}
