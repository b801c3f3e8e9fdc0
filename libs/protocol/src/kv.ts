/** JetStream KV buckets of the product. Keys are `<stage>.<sessionId>[.<name>]`. */
export const BUCKETS = {
  /** Who owns each stage's actor of each session: `{owner, config}`; owner null = waiting to be claimed. */
  leases: 'va_leases',
  /** Instance heartbeats: `<stage>.<instanceId>`; a key that stops moving means a dead instance. */
  instances: 'va_instances',
  /** Per-session actor state that must survive a restart of the instance holding it. */
  state: 'va_state',
} as const;

/** Heartbeat keys outlive their instance by at most this long (bucket TTL; nats-server 2.9 has no per-key TTL). */
export const INSTANCE_KEY_TTL_MS = 60_000;
