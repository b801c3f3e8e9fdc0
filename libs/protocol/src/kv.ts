import { z } from 'zod';

/** JetStream KV buckets of the product. Keys are `<stage>.<sessionId>[.<name>]`. */
export const BUCKETS = {
  /** Who owns each stage's actor of each session: `{owner, config}`; owner null = waiting to be claimed. */
  leases: 'va_leases',
  /** Instance heartbeats: `<stage>.<instanceId>`; a key that stops moving means a dead instance. */
  instances: 'va_instances',
  /** Per-session actor state that must survive a restart of the instance holding it. */
  state: 'va_state',
  /** Agent profiles (`AgentProfile`), key: the agent's name; written by `npm run agent`, read by the gateway. */
  agents: 'va_agents',
} as const;

/** Versions of each agent profile the `va_agents` bucket keeps (`npm run agent -- get <name> --version N`). */
export const AGENT_HISTORY = 10;

/** A stage's lease on a session (`va_leases`): present while an instance of the stage holds the session. */
export function leaseKey(stage: string, sessionId: string): string {
  return `${stage}.${sessionId}`;
}

/** Heartbeat keys outlive their instance by at most this long (bucket TTL; nats-server 2.9 has no per-key TTL). */
export const INSTANCE_KEY_TTL_MS = 60_000;

/** What an instance says of itself in its heartbeat (`va_instances`, key `<stage>.<instanceId>`). */
export const InstanceHeartbeat = z.object({
  sessions: z.number().int().nonnegative(),
  capacity: z.number().int().nonnegative(),
  draining: z.boolean(),
  /** Over its load limit (event-loop delay or CPU): it claims no new session until calm again. */
  overloaded: z.boolean().default(false),
  /** Claims a new session now: not draining, under capacity, not overloaded. */
  room: z.boolean().default(true),
});
export type InstanceHeartbeat = z.infer<typeof InstanceHeartbeat>;
