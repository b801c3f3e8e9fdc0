import { z } from 'zod';

/**
 * A LiveKit room name as the dispatcher accepts it: 1–128 of A–Z a–z 0–9 `_` `-` `.`, starting with a letter or
 * digit. Nothing else: no NATS wildcards, no white space or control characters, no bidi overrides or zero-width
 * characters that make a name look like another when it is echoed back.
 */
export const RoomName = z
  .string({ error: 'room is required (a string)' })
  .min(1, 'room may not be empty')
  .max(128, 'room may be at most 128 characters long')
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'room may only contain A-Z a-z 0-9 _ - . and start with a letter or digit');

/** A user's identity for a client token: as a room name, plus `@` and `:`, and not the agents' `agent-` prefix. */
export const ClientIdentity = z
  .string({ error: 'identity is required (a string)' })
  .min(1, 'identity may not be empty')
  .max(128, 'identity may be at most 128 characters long')
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_.@:-]*$/,
    'identity may only contain A-Z a-z 0-9 _ - . @ : and start with a letter or digit',
  )
  .refine((s) => !s.startsWith('agent-'), 'identity may not start with "agent-" (reserved for agents)');

export const DispatchRequest = z.object({ room: RoomName });

/** Why a join was refused; the HTTP layer maps each reason to a status. */
export type DispatchFailure = 'join-failed' | 'at-capacity' | 'stopping';

/** A join that did not happen. Its message never holds the API secret or a token. */
export class DispatchError extends Error {
  constructor(
    readonly reason: DispatchFailure,
    message: string,
  ) {
    super(message);
    this.name = 'DispatchError';
  }
}
