import type { z } from 'zod';
import type { SessionId } from './ids.js';
import {
  AudioReplayReply,
  AudioReplayRequest,
  Control,
  CtxGetReply,
  CtxGetRequest,
  ErrorEvent,
  Playout,
  Reply,
  SessionClose,
  SessionOpen,
  SpeechDone,
  Transcript,
  TranscriptReplayReply,
  ReplyReplayRequest,
  ReplyReplayReply,
  SpeechReplayReply,
  SpeechReplayRequest,
  TurnReplayReply,
  TurnReplayRequest,
  TranscriptReplayRequest,
  ToolExchange,
  Turn,
  Vad,
} from './messages.js';
import { AgentChange } from './agents.js';
import { subjects } from './subjects.js';

/**
 * What an interruption does to a message (Pipecat's lesson): `control` messages always go through;
 * `data` messages that belong to a cancelled turn are stale and consumers drop them.
 */
export type MessageClass = 'control' | 'data';

/** A JSON message on a per-session subject. */
export interface SessionChannel<S extends z.ZodType = z.ZodType> {
  readonly scope: 'session';
  readonly name: string;
  readonly schema: S;
  readonly subject: (sessionId: SessionId) => string;
  readonly class: MessageClass;
}

/** A JSON message on one subject shared by all sessions (placement, requests). */
export interface GlobalChannel<S extends z.ZodType = z.ZodType> {
  readonly scope: 'global';
  readonly name: string;
  readonly schema: S;
  readonly subject: string;
  readonly class: MessageClass;
}

/** A request/reply pair: both directions are checked against their schema. */
export interface RequestChannel<Q extends z.ZodType = z.ZodType, R extends z.ZodType = z.ZodType> {
  readonly scope: 'request';
  readonly name: string;
  readonly schema: Q;
  readonly reply: R;
  readonly subject: string;
}

/** A request/reply pair on a per-session subject: answered by whoever holds that session's end of it. */
export interface SessionRequestChannel<Q extends z.ZodType = z.ZodType, R extends z.ZodType = z.ZodType> {
  readonly scope: 'session-request';
  readonly name: string;
  readonly schema: Q;
  readonly reply: R;
  readonly subject: (sessionId: SessionId) => string;
}

export type JsonChannel = SessionChannel | GlobalChannel;

function session<S extends z.ZodType>(
  name: string,
  schema: S,
  subject: (sid: SessionId) => string,
  cls: MessageClass,
): SessionChannel<S> {
  return { scope: 'session', name, schema, subject, class: cls };
}

/** Every JSON message of the protocol, by name. docs/architecture.md "Subjects" is the table generated from it. */
export const channels = {
  sessionOpen: {
    scope: 'global',
    name: 'session.open',
    schema: SessionOpen,
    subject: subjects.sessionOpen,
    class: 'control',
  },
  sessionClose: {
    scope: 'global',
    name: 'session.close',
    schema: SessionClose,
    subject: subjects.sessionClose,
    class: 'control',
  },
  vad: session('vad', Vad, subjects.vad, 'control'),
  transcript: session('transcript', Transcript, subjects.transcript, 'data'),
  turn: session('turn', Turn, subjects.turn, 'control'),
  replyFast: session('reply.fast', Reply, subjects.replyFast, 'data'),
  replyDeep: session('reply.deep', Reply, subjects.replyDeep, 'data'),
  tool: session('tool', ToolExchange, subjects.tool, 'control'),
  agent: session('agent', AgentChange, subjects.agent, 'control'),
  speech: session('speech', SpeechDone, subjects.speech, 'data'),
  playout: session('playout', Playout, subjects.playout, 'control'),
  control: session('control', Control, subjects.control, 'control'),
  error: session('error', ErrorEvent, subjects.error, 'control'),
  errorGlobal: { scope: 'global', name: 'error', schema: ErrorEvent, subject: subjects.errorGlobal, class: 'control' },
} as const satisfies Record<string, JsonChannel>;

export const requests = {
  ctxGet: { scope: 'request', name: 'ctx.get', schema: CtxGetRequest, reply: CtxGetReply, subject: subjects.ctxGet },
} as const satisfies Record<string, RequestChannel>;

export const sessionRequests = {
  audioReplay: {
    scope: 'session-request',
    name: 'audio.replay',
    schema: AudioReplayRequest,
    reply: AudioReplayReply,
    subject: subjects.audioReplay,
  },
  transcriptReplay: {
    scope: 'session-request',
    name: 'transcript.replay',
    schema: TranscriptReplayRequest,
    reply: TranscriptReplayReply,
    subject: subjects.transcriptReplay,
  },
  replyFastReplay: {
    scope: 'session-request',
    name: 'reply.fast.replay',
    schema: ReplyReplayRequest,
    reply: ReplyReplayReply,
    subject: subjects.replyFastReplay,
  },
  replyDeepReplay: {
    scope: 'session-request',
    name: 'reply.deep.replay',
    schema: ReplyReplayRequest,
    reply: ReplyReplayReply,
    subject: subjects.replyDeepReplay,
  },
  turnReplay: {
    scope: 'session-request',
    name: 'turn.replay',
    schema: TurnReplayRequest,
    reply: TurnReplayReply,
    subject: subjects.turnReplay,
  },
  speechReplay: {
    scope: 'session-request',
    name: 'speech.replay',
    schema: SpeechReplayRequest,
    reply: SpeechReplayReply,
    subject: subjects.speechReplay,
  },
} as const satisfies Record<string, SessionRequestChannel>;
