import { z } from 'zod';
import { AUDIO_SOURCES } from './audio.js';
import { AgentProfile, TurnSettings } from './agents.js';
import { SessionId, StageName, TurnId } from './ids.js';
import { LIMITS } from './limits.js';

export { LIMITS };

const Ms = z.number().finite().nonnegative();
const Prob = z.number().min(0).max(1);
const Text = z.string().max(LIMITS.textChars);

/** What the gateway asks of every stage for one conversation. Unknown keys are refused, not ignored. */
export const SessionConfig = z
  .object({
    language: z
      .string()
      .regex(/^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/)
      .default('en-US'),
    sampleRate: z.union([z.literal(8000), z.literal(16000), z.literal(24000), z.literal(48000)]).default(16000),
    persona: z.string().max(LIMITS.personaChars).optional(),
    /** Turn-taking tunables for this session; unset ones keep the turn detector's defaults. */
    turn: TurnSettings.optional(),
    /** The agent this session runs (resolved from `va_agents` by the gateway); none: the stages' built-in one. */
    agent: AgentProfile.optional(),
    /** Provider choice per stage kind, e.g. {stt: 'deepgram'}; a service falls back to its own config. */
    providers: z.record(z.string().regex(/^[a-z-]{1,32}$/), z.string().regex(/^[a-z0-9-]{1,32}$/)).optional(),
  })
  .strict();
export type SessionConfig = z.infer<typeof SessionConfig>;

export const SessionOpen = z.object({ sessionId: SessionId, config: SessionConfig }).strict();
export type SessionOpen = z.infer<typeof SessionOpen>;

/** Reply of each stage instance that claimed a session (sent to the open message's reply inbox). */
export const SessionOpenAck = z
  .object({ sessionId: SessionId, stage: StageName, instanceId: z.string().max(128) })
  .strict();
export type SessionOpenAck = z.infer<typeof SessionOpenAck>;

export const SessionClose = z
  .object({ sessionId: SessionId, reason: z.string().max(LIMITS.reasonChars).optional() })
  .strict();
export type SessionClose = z.infer<typeof SessionClose>;

export const Vad = z.object({ kind: z.enum(['start', 'end']), atMs: Ms }).strict();
export type Vad = z.infer<typeof Vad>;

export const Transcript = z
  .object({
    text: Text,
    final: z.boolean(),
    /** A partial whose words will not change any more (safe to act on early). */
    stable: z.boolean(),
    confidence: Prob,
    startMs: Ms,
    endMs: Ms,
  })
  .strict()
  .refine((t) => t.endMs >= t.startMs, { message: 'endMs must not be before startMs', path: ['endMs'] });
export type Transcript = z.infer<typeof Transcript>;

/**
 * Turn-taking events. `preview`: the user has gone quiet and their words look settled — responders may start
 * (preemptive generation) but nothing is played until `end` commits the same turn id; a preview that is not
 * committed is cancelled on `control`. `end`: the user's turn is over. `barge-in`: the user speaks over the
 * agent's turn — its playout pauses; a `control cancel` (words were heard) ends it, a `resume` (no words within
 * the false-interruption window) plays on from where it stopped. `agent`: the agent speaks first, unprompted (its
 * profile's greeting, in `text`): an agent turn with no user turn before it — the deep responder says `text` as
 * its reply, nobody generates, and it is played, heard, recorded and interrupted like any answer.
 */
export const TURN_KINDS = ['preview', 'end', 'barge-in', 'resume', 'agent'] as const;
export const Turn = z
  .object({
    turnId: TurnId,
    kind: z.enum(TURN_KINDS),
    text: Text,
    eouProb: Prob,
    speechEndMs: Ms,
  })
  .strict();
export type Turn = z.infer<typeof Turn>;

/** One streamed piece of a responder's text; `done` closes the stream for that turn. */
export const Reply = z
  .object({
    turnId: TurnId,
    seq: z.number().int().nonnegative(),
    delta: z.string().max(LIMITS.deltaChars),
    done: z.boolean(),
  })
  .strict();
export type Reply = z.infer<typeof Reply>;

export const Playout = z
  .object({
    turnId: TurnId,
    playedMs: Ms,
    /** What the user really heard: the text cut at the last frame played. */
    spokenText: Text,
    done: z.boolean(),
    interrupted: z.boolean(),
  })
  .strict();
export type Playout = z.infer<typeof Playout>;

/**
 * TTS → gateway: every audio frame of one source of a turn has been sent (the turn ends when they have played).
 * `text` is the whole text that audio speaks; what was heard of it is the words of the frames played (each
 * `audio.out` frame carries its own).
 */
export const SpeechDone = z
  .object({
    turnId: TurnId,
    source: z.enum(AUDIO_SOURCES),
    text: z.string().max(LIMITS.textChars * 4),
    frames: z.number().int().nonnegative(),
    /** The opener was dropped because the answer's audio was ready first (see services/tts/src/turn-speaker.ts); a filler not needed. */
    skipped: z.boolean(),
  })
  .strict();
export type SpeechDone = z.infer<typeof SpeechDone>;

/** Why a turn's work is cancelled (`control cancel` reasons the stages act on). */
export const CANCEL_REASON = {
  /** The user spoke over the agent's turn. */
  bargeIn: 'barge-in',
  /** A preview turn whose committed words came out different. */
  preemptMismatch: 'preempt-mismatch',
  /** A preview turn the user went on speaking after. */
  preemptAbandoned: 'preempt-abandoned',
  /** A turn ended on the recogniser's partial words whose final came out different: the final's turn replaces it. */
  finalRevised: 'final-revised',
} as const;

export const Control = z
  .object({ kind: z.literal('cancel'), turnId: TurnId, reason: z.string().max(LIMITS.reasonChars) })
  .strict();
export type Control = z.infer<typeof Control>;

/** A tool the deep responder asked to run (OpenAI tools format: `arguments` is the JSON text the model wrote). */
export const ToolCall = z
  .object({
    id: z.string().min(1).max(128),
    name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'tool name must be 1-64 characters of A-Z a-z 0-9 _ -'),
    arguments: z.string().max(LIMITS.textChars),
  })
  .strict();
export type ToolCall = z.infer<typeof ToolCall>;

const MessageText = z.string().max(LIMITS.textChars * 4);

/**
 * One message of a conversation. An assistant message may carry the tool calls it made (then its content is
 * usually empty); each call's result follows as a `tool` message naming the call it answers.
 */
export const ChatMessage = z.discriminatedUnion('role', [
  z.object({ role: z.literal('system'), content: MessageText }).strict(),
  z.object({ role: z.literal('user'), content: MessageText }).strict(),
  z
    .object({
      role: z.literal('assistant'),
      content: MessageText,
      toolCalls: z.array(ToolCall).min(1).max(8).optional(),
    })
    .strict(),
  z.object({ role: z.literal('tool'), toolCallId: z.string().min(1).max(128), content: MessageText }).strict(),
]);
export type ChatMessage = z.infer<typeof ChatMessage>;

/**
 * Deep responder → context: the tool calls of one round of a turn and their results, so later turns know what
 * was looked up. A control message: a call that ran has happened even if the turn is then interrupted.
 */
export const ToolExchange = z
  .object({
    turnId: TurnId,
    calls: z
      .array(
        z
          .object({
            call: ToolCall,
            /** What the model is told: the tool's JSON result, or `{"error": …}`. */
            result: MessageText,
            ok: z.boolean(),
            durationMs: Ms,
          })
          .strict(),
      )
      .min(1)
      .max(8),
  })
  .strict();
export type ToolExchange = z.infer<typeof ToolExchange>;

export const CtxGetRequest = z
  .object({
    sessionId: SessionId,
    maxTokens: z.number().int().positive().max(1_000_000),
    /** History as it was before this turn: the responders add the turn's own text themselves. */
    beforeTurnId: TurnId.optional(),
    /** Include tool calls and results (only a requester that sends tools to its model wants them). */
    tools: z.boolean().optional(),
  })
  .strict();
export type CtxGetRequest = z.infer<typeof CtxGetRequest>;

export const CtxGetReply = z
  .object({
    messages: z.array(ChatMessage).max(LIMITS.historyMessages),
    summary: z
      .string()
      .max(LIMITS.textChars * 4)
      .nullable(),
  })
  .strict();
export type CtxGetReply = z.infer<typeof CtxGetReply>;

/** Microphone audio one replay may carry (the gateway keeps this much per session): 10 s at 16 kHz. */
export const AUDIO_REPLAY_MAX_BYTES = 320_000;

/**
 * stt → the media gateway holding the session: the microphone audio from `fromMs` (session audio clock) to now.
 * A new stt owner re-hears what its predecessor had heard but not yet finished when it died.
 */
export const AudioReplayRequest = z.object({ fromMs: Ms }).strict();
export type AudioReplayRequest = z.infer<typeof AudioReplayRequest>;

/** Contiguous PCM16 (little-endian, mono) from `fromMs`; frames `seq`.. on the audio.in clock (newest kept). */
export const AudioReplayReply = z
  .object({
    fromMs: Ms,
    sampleRate: SessionConfig.shape.sampleRate.unwrap(),
    /** The audio.in seq of the first frame, and of the frame after the last: live frames from `nextSeq` follow. */
    seq: z.number().int().nonnegative(),
    nextSeq: z.number().int().nonnegative(),
    pcm: z.base64().max(Math.ceil(AUDIO_REPLAY_MAX_BYTES / 3) * 4),
  })
  .strict();
export type AudioReplayReply = z.infer<typeof AudioReplayReply>;

/**
 * turn-detector → stt: the final transcripts ending after `afterMs`. A new turn-detector owner reads the words
 * published while no instance held the session.
 */
export const TranscriptReplayRequest = z.object({ afterMs: z.number().finite() }).strict();
export type TranscriptReplayRequest = z.infer<typeof TranscriptReplayRequest>;

/** The recent finals (stt keeps the last {@link TRANSCRIPT_REPLAY_MAX}), oldest first. */
export const TRANSCRIPT_REPLAY_MAX = 32;
export const TranscriptReplayReply = z.object({ finals: z.array(Transcript).max(TRANSCRIPT_REPLAY_MAX) }).strict();
export type TranscriptReplayReply = z.infer<typeof TranscriptReplayReply>;

/** The reply a responder has streamed so far for one turn (a new tts owner asks: its predecessor died speaking it). */
export const ReplyReplayRequest = z.object({ turnId: TurnId }).strict();
export type ReplyReplayRequest = z.infer<typeof ReplyReplayRequest>;

/**
 * Every delta of the turn's reply so far, joined (`text`); `nextSeq`: the seq of the next delta (live deltas from
 * there on are new); `done`: the reply is complete. An unknown turn is empty, `nextSeq` 0.
 */
export const ReplyReplayReply = z
  .object({
    text: z.string().max(LIMITS.textChars * 4),
    nextSeq: z.number().int().nonnegative(),
    done: z.boolean(),
  })
  .strict();
export type ReplyReplayReply = z.infer<typeof ReplyReplayReply>;

/**
 * A responder → turn-detector, back from a lost connection (its NATS server died): the turns sent meanwhile may not
 * have reached it (core NATS delivers at most once).
 */
export const TurnReplayRequest = z.object({}).strict();
export type TurnReplayRequest = z.infer<typeof TurnReplayRequest>;

/** The newest turns the turn detector sent, oldest first, each with its W3C trace context. */
export const TURN_REPLAY_MAX = 8;
export const TurnReplayReply = z
  .object({
    turns: z
      .array(z.object({ turn: Turn, trace: z.record(z.string(), z.string().max(512)) }).strict())
      .max(TURN_REPLAY_MAX),
  })
  .strict();
export type TurnReplayReply = z.infer<typeof TurnReplayReply>;

/**
 * A gateway → tts: its predecessor died playing this turn; speak it again from the text offset of each source that
 * was heard (the rest of it was in the dead gateway's playout buffer).
 */
export const SpeechReplayRequest = z
  .object({
    turnId: TurnId,
    from: z.object({ fast: z.number().int().nonnegative(), deep: z.number().int().nonnegative() }).strict(),
  })
  .strict();
export type SpeechReplayRequest = z.infer<typeof SpeechReplayRequest>;

/** `replaying`: tts speaks the rest; false when the turn is not tts's latest, or was cancelled. */
export const SpeechReplayReply = z.object({ replaying: z.boolean() }).strict();
export type SpeechReplayReply = z.infer<typeof SpeechReplayReply>;

/**
 * `forged`: a message on a subject that its sender did not publish (nats-server relayed it; see @va/bus origin).
 * `forbidden`: a request the asker may not make (e.g. ctx.get for a session its stage holds no lease on).
 */
export const ERROR_CODES = [
  'bad-message',
  'bad-audio',
  'forged',
  'forbidden',
  'provider-failed',
  'overloaded',
  'internal',
] as const;

export const ErrorEvent = z
  .object({
    stage: StageName,
    code: z.enum(ERROR_CODES),
    message: z.string().max(LIMITS.errorChars),
    /** The subject of the message that caused it, when there is one. */
    subject: z.string().max(256).optional(),
  })
  .strict();
export type ErrorEvent = z.infer<typeof ErrorEvent>;
