import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { samplesForMs, writeWavChannels, runClock, TrackRecorder, type MicSource, micSilence } from '@va/audio';
import type { AgentStore } from '@va/agents';
import type { Bus } from '@va/bus';
import { FRAME_MS, requests, type SessionId, type SessionRecording } from '@va/protocol';
import type { Admission } from './admission.js';
import { openGatewaySession } from './open-session.js';

export interface RecordedSessionOptions {
  sampleRate: 16000 | 24000 | 48000;
  outDir: string;
  /** Write the agent and mix WAVs (off for load runs of many sessions). */
  recordAudio: boolean;
  /** Put the conversation's words in the session file (user's script, transcripts, replies, history). */
  recordText: boolean;
  /** After the microphone ends, how long the session must be quiet before it closes. */
  tailMs: number;
  maxTailMs: number;
  /** Opens the session on every stage, or refuses it (SessionRefusedError) when the pipeline is full. */
  admission: Admission;
  /** Agent profiles, and the agent this session runs (unset: the stored `default`). */
  agents?: AgentStore;
  agent?: string;
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
  const rate = opts.sampleRate;
  const opened = await openGatewaySession(bus, sessionId, {
    admission: opts.admission,
    sampleRate: rate,
    ...(opts.agents ? { agents: opts.agents } : {}),
    ...(opts.agent ? { agent: opts.agent } : {}),
  });
  const { session, log } = opened;
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
  const history = !opts.recordText
    ? []
    : await bus
        .request(requests.ctxGet, { sessionId, maxTokens: 1_000_000 }, { timeoutMs: 2000 })
        .then((r) => r.messages)
        .catch((err: unknown) => {
          log.warn({ err: String(err) }, 'no history for the recording');
          return [];
        });
  opened.close('transport ended');
  const outDir = resolve(opts.outDir);
  await mkdir(outDir, { recursive: true });
  const agentWav = join(outDir, `${sessionId}.agent.wav`);
  const mixWav = join(outDir, `${sessionId}.mix.wav`);
  if (opts.recordAudio) {
    await writeFile(agentWav, writeWavChannels([agentTrack.samples()], rate));
    // Stereo: the user on the left, the agent on the right — listen to the conversation as it happened.
    await writeFile(mixWav, writeWavChannels([userTrack.samples(), agentTrack.samples()], rate));
  }
  const text = opts.recordText;
  // Without recordText the file holds timings and audio paths only: no word anyone said.
  const recording: SessionRecording = {
    sessionId,
    sampleRate: rate,
    durationMs: frames * FRAME_MS,
    utterances: text ? mic.utterances : mic.utterances.map((u) => ({ ...u, say: '' })),
    turns: text ? session.records : session.records.map((t) => ({ ...t, userText: '', spokenText: '' })),
    segments: session.segments,
    agentWav: opts.recordAudio ? agentWav : '',
    mixWav: opts.recordAudio ? mixWav : '',
    history: text ? history : [],
    text,
  };
  await writeFile(join(outDir, `${sessionId}.session.json`), JSON.stringify(recording, null, 2));
  log.info({ turns: session.records.length, out: outDir }, 'session finished');
  return recording;
}
