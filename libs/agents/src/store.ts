import type { KV } from '@nats-io/kv';
import type { Bus } from '@va/bus';
import { AGENT_HISTORY, AgentName, AgentProfile, BUCKETS, DEFAULT_AGENT_NAME } from '@va/protocol';
import type { z } from 'zod';

/** A profile that does not pass the schema, or a write that would go back in versions: the message says why. */
export class AgentProfileError extends Error {
  override readonly name = 'AgentProfileError';
}

/** A session asked for an agent nobody stored. */
export class UnknownAgentError extends Error {
  override readonly name = 'UnknownAgentError';
}

/** The schema's complaints as one line: `tools.0: must be …; instructions: may not be empty`. */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : 'profile'}: ${i.message}`).join('; ');
}

/** Checks a profile (as read from a file); throws AgentProfileError with the schema's message. */
export function parseAgentProfile(input: unknown): AgentProfile {
  const parsed = AgentProfile.safeParse(input);
  if (!parsed.success) throw new AgentProfileError(`invalid agent profile: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

const encoder = new TextEncoder();

/**
 * Agent profiles in the `va_agents` KV bucket, one key per agent, the last AGENT_HISTORY versions kept. Writers
 * (`npm run agent`) create the bucket; readers (the gateway) take a missing bucket as "no profiles yet".
 */
export class AgentStore {
  private bucket: Promise<KV> | undefined;

  constructor(
    private readonly bus: Bus,
    private readonly opts: { create: boolean } = { create: false },
  ) {}

  /** The bucket, or undefined while nobody has created it (readers only). */
  private async kv(): Promise<KV | undefined> {
    if (!this.bucket) {
      const opening = this.opts.create
        ? this.bus.kv(BUCKETS.agents, { history: AGENT_HISTORY })
        : this.bus.kvOpen(BUCKETS.agents);
      this.bucket = opening;
      opening.catch(() => (this.bucket = undefined)); // tried again next time: it may exist by then
    }
    try {
      return await this.bucket;
    } catch (err) {
      if (!this.opts.create && /not found/i.test(String(err))) return undefined;
      throw err;
    }
  }

  /**
   * Stores a profile. Without a `version` it becomes the stored one's + 1 (1 for a new agent); with one, it must
   * be newer than the stored version. Returns what was stored.
   */
  async put(input: unknown): Promise<AgentProfile> {
    const hasVersion = typeof input === 'object' && input !== null && 'version' in input;
    const profile = parseAgentProfile(input);
    const kv = (await this.kv())!;
    const entry = await kv.get(profile.name);
    const stored = entry && entry.operation === 'PUT' ? this.decode(entry.string()) : undefined;
    if (!hasVersion) profile.version = (stored?.version ?? 0) + 1;
    else if (stored && profile.version <= stored.version) {
      throw new AgentProfileError(
        `version ${profile.version} of ${profile.name} is not newer than the stored version ${stored.version}`,
      );
    }
    const data = encoder.encode(JSON.stringify(profile));
    // Optimistic: a concurrent writer makes this fail rather than be silently overwritten.
    try {
      if (entry) await kv.update(profile.name, data, entry.revision);
      else await kv.create(profile.name, data);
    } catch (err) {
      throw new Error(`${profile.name} was changed meanwhile, try again (${String(err)})`);
    }
    return profile;
  }

  /** The stored profile (the latest, or the given version of it), or undefined. */
  async get(name: string, version?: number): Promise<AgentProfile | undefined> {
    if (!AgentName.safeParse(name).success) return undefined;
    const kv = await this.kv();
    if (!kv) return undefined;
    if (version === undefined) {
      const entry = await kv.get(name);
      return entry && entry.operation === 'PUT' ? this.decode(entry.string()) : undefined;
    }
    for await (const entry of await kv.history({ key: name })) {
      if (entry.operation !== 'PUT') continue;
      const profile = this.decode(entry.string());
      if (profile.version === version) return profile;
    }
    return undefined;
  }

  /** Every stored agent's current profile, by name. */
  async list(): Promise<AgentProfile[]> {
    const kv = await this.kv();
    if (!kv) return [];
    const names: string[] = [];
    for await (const key of await kv.keys()) names.push(key);
    const profiles = await Promise.all(names.sort().map((n) => this.get(n)));
    return profiles.filter((p): p is AgentProfile => p !== undefined);
  }

  /** Removes an agent (its past versions stay in the bucket's history); false if there was none. */
  async remove(name: string): Promise<boolean> {
    if (!(await this.get(name))) return false;
    await (await this.kv())!.delete(name);
    return true;
  }

  /**
   * The agent a session runs: the named one (UnknownAgentError if none is stored under that name), else the
   * stored `default`, else undefined (the stages' built-in behaviour). Read at every session open, so a changed
   * profile applies to the next session.
   */
  async resolve(name?: string): Promise<AgentProfile | undefined> {
    if (name === undefined || name === '') return this.get(DEFAULT_AGENT_NAME);
    const profile = await this.get(name);
    if (!profile) throw new UnknownAgentError(`no agent named ${JSON.stringify(name)}`);
    return profile;
  }

  /** A stored value: written by put(), so valid unless someone wrote the bucket by hand (then it says so). */
  private decode(text: string): AgentProfile {
    try {
      return parseAgentProfile(JSON.parse(text));
    } catch (err) {
      throw new AgentProfileError(`stored profile is unreadable: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}
