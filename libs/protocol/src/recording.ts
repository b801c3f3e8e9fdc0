import { z } from 'zod';
import { AUDIO_SOURCES } from './audio.js';

/**
 * What a gateway writes when a recorded session ends (`<out>/<session>.session.json`): each turn as played,
 * and every stretch of agent audio on the session clock. The demo, the end-to-end test and benchmarks read it.
 */
/**
 * When each stage's output of a turn reached the gateway, in ms after the user's speech ended (session clock;
 * negative when preemptive generation started before the end of turn). Null: that output never came.
 * The gateway sees only what reaches the user: the end of turn, audio made, audio played; the responders' own
 * moments (first token) are spans of the turn's trace.
 */
export const TurnTimeline = z.object({
  /** The turn detector's `end`: the end-of-turn delay. */
  turnEndMs: z.number().nullable(),
  /** First synthesized agent audio (the opener's, or whichever came first). */
  audioReadyMs: z.number().nullable(),
  /** First synthesized audio of the answer (deep responder). How long each stage took to get there: the trace. */
  answerAudioMs: z.number().nullable(),
  /** First agent audio played (the voice-to-voice latency). */
  playedMs: z.number().nullable(),
});
export type TurnTimeline = z.infer<typeof TurnTimeline>;

export const RecordedTurn = z.object({
  turnId: z.string(),
  traceId: z.string(),
  userText: z.string(),
  speechStartMs: z.number(),
  speechEndMs: z.number(),
  /** Session-clock time of the first agent frame played. */
  firstAudioMs: z.number().nullable(),
  /** First agent audio − user speech end. */
  e2eMs: z.number().nullable(),
  spokenText: z.string(),
  interrupted: z.boolean(),
  /** Session-clock start of the user speech that barged in on this turn (its last one), if any. */
  bargeInAtMs: z.number().nullable(),
  /** Session-clock end of the last agent frame of this turn played. */
  lastAudioMs: z.number().nullable(),
  /** Barge-ins on this turn that turned out to be noise (the agent resumed). */
  resumes: z.number().int().nonnegative(),
  timeline: TurnTimeline,
});
export type RecordedTurn = z.infer<typeof RecordedTurn>;

export const PlayedSegment = z.object({
  turnId: z.string(),
  source: z.enum(AUDIO_SOURCES),
  startMs: z.number(),
  endMs: z.number(),
});
export type PlayedSegment = z.infer<typeof PlayedSegment>;

export const SessionRecording = z.object({
  sessionId: z.string(),
  sampleRate: z.number(),
  durationMs: z.number(),
  /** Where each scripted user utterance was played (empty for a recorded microphone). */
  utterances: z.array(z.object({ say: z.string(), startMs: z.number(), endMs: z.number() })),
  turns: z.array(RecordedTurn),
  segments: z.array(PlayedSegment),
  agentWav: z.string(),
  mixWav: z.string(),
  /** The session's history as session-context stored it, read just before the session closed. */
  history: z.array(z.object({ role: z.string(), content: z.string() })).default([]),
  /**
   * Whether the conversation's words are in this file (`GATEWAY_RECORD_TEXT=1`). Without it every text field is
   * empty and the history is left out: timings and audio only, as spans and logs keep words out without
   * `VA_TRACE_TEXT`.
   */
  text: z.boolean().default(true),
});
export type SessionRecording = z.infer<typeof SessionRecording>;

/**
 * `{"turns":[{"say":"text","pauseMs":1200}]}`: user turns in order. After each, the user waits until the
 * agent has finished answering and then stays silent `pauseMs` more, as a person would; with
 * `"waitForAgent": false` the pause starts right after the utterance (run-on turns). A turn with
 * `"interruptAfterMs": N` starts N ms after the agent's first audio of the previous turn, over the agent
 * (a barge-in).
 */
export const ConversationScript = z.object({
  turns: z
    .array(
      z
        .object({
          /** Words the user speaks; or, with `noiseMs`, a cough (a noise burst with no words) instead. */
          say: z.string().min(1).max(2000).optional(),
          noiseMs: z.number().int().positive().max(5000).optional(),
          pauseMs: z.number().int().nonnegative().max(60_000).default(1200),
          waitForAgent: z.boolean().default(true),
          interruptAfterMs: z.number().int().nonnegative().max(60_000).optional(),
        })
        .refine((t) => (t.say === undefined) !== (t.noiseMs === undefined), {
          message: 'a script turn has either "say" or "noiseMs"',
        }),
    )
    .min(1)
    .max(100),
});
export type ConversationScript = z.infer<typeof ConversationScript>;
