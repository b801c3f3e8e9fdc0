import { SUBJECT_TOKEN, type SessionId } from './ids.js';

/** Every subject of the protocol starts with this; a breaking change of any message bumps it. */
export const PREFIX = 'va.v1';

function sess(sessionId: SessionId, leaf: string): string {
  // Ids are branded after validation, but a cast can smuggle anything in: re-check, a bad token here
  // would let one session publish into another's subjects.
  if (!SUBJECT_TOKEN.test(sessionId)) throw new Error(`invalid session id for a subject: ${JSON.stringify(sessionId)}`);
  return `${PREFIX}.sess.${sessionId}.${leaf}`;
}

/** Subject builders: the only place subjects are spelled. Listed in docs/architecture.md "Subjects". */
export const subjects = {
  sessionOpen: `${PREFIX}.session.open`,
  sessionClose: `${PREFIX}.session.close`,
  ctxGet: `${PREFIX}.ctx.get`,
  /** Errors that cannot be tied to a session (a message whose subject holds no valid session id). */
  errorGlobal: `${PREFIX}.error`,
  audioIn: (sid: SessionId) => sess(sid, 'audio.in'),
  vad: (sid: SessionId) => sess(sid, 'vad'),
  transcript: (sid: SessionId) => sess(sid, 'transcript'),
  turn: (sid: SessionId) => sess(sid, 'turn'),
  replyFast: (sid: SessionId) => sess(sid, 'reply.fast'),
  replyDeep: (sid: SessionId) => sess(sid, 'reply.deep'),
  tool: (sid: SessionId) => sess(sid, 'tool'),
  agent: (sid: SessionId) => sess(sid, 'agent'),
  audioOut: (sid: SessionId) => sess(sid, 'audio.out'),
  /** Request (stt → the gateway holding the session): recent microphone audio, for a new stt owner. */
  audioReplay: (sid: SessionId) => sess(sid, 'audio.replay'),
  /** Request (turn-detector → stt): recent final transcripts, for a new turn-detector owner. */
  transcriptReplay: (sid: SessionId) => sess(sid, 'transcript.replay'),
  /** Requests (tts → the fast / deep responder): the reply so far to a turn, for a new tts owner mid-answer. */
  replyFastReplay: (sid: SessionId) => sess(sid, 'reply.fast.replay'),
  replyDeepReplay: (sid: SessionId) => sess(sid, 'reply.deep.replay'),
  /** Request (a responder back from a lost connection → turn-detector): the latest turns, in case one was missed. */
  turnReplay: (sid: SessionId) => sess(sid, 'turn.replay'),
  /** Request (a gateway that took a session up → tts): speak a turn again from what was heard of it. */
  speechReplay: (sid: SessionId) => sess(sid, 'speech.replay'),
  speech: (sid: SessionId) => sess(sid, 'speech'),
  playout: (sid: SessionId) => sess(sid, 'playout'),
  control: (sid: SessionId) => sess(sid, 'control'),
  error: (sid: SessionId) => sess(sid, 'error'),
  /** Per-instance NATS micro endpoint that lists the sessions an instance owns. */
  /** A tool service's endpoint (`va.v1.tool.<name>`): a request with the JSON arguments, a `ToolReply`. */
  toolService: (name: string) => {
    if (!/^[a-zA-Z0-9_-]{1,64}$/.test(name)) throw new Error(`invalid tool name ${JSON.stringify(name)}`);
    return `${PREFIX}.tool.${name}`;
  },
  toolServiceAll: `${PREFIX}.tool.*`,
  svcSessions: (stage: string, instanceId: string) => {
    if (!SUBJECT_TOKEN.test(stage) || !SUBJECT_TOKEN.test(instanceId)) throw new Error('invalid stage or instance id');
    return `${PREFIX}.svc.${stage}.${instanceId}.sessions`;
  },
  /** Everything of one session, for a consumer that wants it all (tests, recorders). */
  sessionAll: (sid: SessionId) => sess(sid, '>'),
} as const;

/** The subject of one channel across all sessions (`va.v1.sess.*.<leaf>`), for consumers of every session. */
export function anySessionSubject(leaf: string): string {
  return `${PREFIX}.sess.*.${leaf}`;
}

const SESSION_SUBJECT = new RegExp(`^${PREFIX.replace('.', '\\.')}\\.sess\\.([^.]+)\\.(.+)$`);

/** The session id and leaf of a per-session subject, or undefined if the subject is not one (or its id is bad). */
export function parseSessionSubject(subject: string): { sessionId: SessionId; leaf: string } | undefined {
  const m = SESSION_SUBJECT.exec(subject);
  if (!m || !SUBJECT_TOKEN.test(m[1]!)) return undefined;
  return { sessionId: m[1] as SessionId, leaf: m[2]! };
}
