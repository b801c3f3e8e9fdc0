import { z } from 'zod';

/**
 * Ids become NATS subject tokens, so they may not hold `.`, `*`, `>` or white space: any of those would
 * address other sessions' subjects. The same rule is used for every id that goes into a subject.
 */
export const SUBJECT_TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

export const SessionId = z
  .string()
  .regex(SUBJECT_TOKEN, 'session id must be 1-64 characters of A-Z a-z 0-9 _ -')
  .brand<'SessionId'>();
export type SessionId = z.infer<typeof SessionId>;

export const TurnId = z.string().regex(SUBJECT_TOKEN, 'turn id must be 1-64 characters of A-Z a-z 0-9 _ -');
export type TurnId = z.infer<typeof TurnId>;

/** A stage name: the service kind that owns one step of the pipeline; also its NATS queue group. */
export const StageName = z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'stage must be lower-case letters, digits and -');
export type StageName = z.infer<typeof StageName>;

/** The seven stages of the product. A replacement service joins the same stage name. */
export const STAGES = [
  'media-gateway',
  'stt',
  'turn-detector',
  'fast-responder',
  'deep-responder',
  'tts',
  'session-context',
] as const satisfies readonly StageName[];
export type KnownStage = (typeof STAGES)[number];

/** Parses an id from untrusted input; throws a ZodError with a readable message on bad input. */
export function sessionId(value: string): SessionId {
  return SessionId.parse(value);
}
