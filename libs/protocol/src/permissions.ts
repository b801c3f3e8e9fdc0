import { channels, requests, sessionRequests } from './channels.js';
import { STAGES, type KnownStage } from './ids.js';
import { BUCKETS } from './kv.js';
import { anySessionSubject, PREFIX, subjects } from './subjects.js';

/**
 * Least privilege on the bus: what each stage may publish and subscribe to, in ONE table. The NATS server's
 * `deploy/nats/auth.conf` is generated from it (`node scripts/nats-auth.mjs`), and a test checks that the
 * checked-in file is what this module generates. Change a stage's traffic here, regenerate, commit both.
 */

type SessionChannelKey = {
  [K in keyof typeof channels]: (typeof channels)[K]['scope'] extends 'session' ? K : never;
}[keyof typeof channels];

/** A per-session channel by its leaf (`va.v1.sess.<sid>.<leaf>`); audio is binary, the rest JSON. */
export type SessionLeaf = (typeof channels)[SessionChannelKey]['name'] | 'audio.in' | 'audio.out';

export type RequestName =
  (typeof requests)[keyof typeof requests]['name'] | (typeof sessionRequests)[keyof typeof sessionRequests]['name'];

export type BucketName = keyof typeof BUCKETS;

/** Which keys of a KV bucket a stage touches: its own (`<stage>.>`) or every stage's. */
export type KeyScope = 'own' | 'all';

export interface StageAccess {
  /** Per-session channels it publishes on (any session). */
  publishes: readonly SessionLeaf[];
  /** Per-session channels it subscribes to (any session). */
  subscribes: readonly SessionLeaf[];
  /** Requests it answers. */
  serves: readonly RequestName[];
  /** Requests it makes. */
  requests: readonly RequestName[];
  /**
   * Runs an ActorHost: claims sessions from `session.open` (queue group) and acknowledges to the opener's
   * inbox, follows `session.close`, keeps its leases, heartbeats and state in KV, and registers a NATS micro
   * service (`$SRV.*`) with a `sessions` endpoint.
   */
  actorHost: boolean;
  /** Opens and closes sessions: publishes `session.open`/`.close` and collects the acks on a plain `_INBOX`. */
  opensSessions: boolean;
  /**
   * Closes a session nobody feeds audio to any more (its gateway died and no other instance resumed it):
   * publishes `session.close`, so every stage releases it.
   */
  closesOrphans?: boolean;
  /** KV buckets it uses besides the actor host's own keys, and which keys. */
  kv: Partial<Record<BucketName, KeyScope>>;
  /** Keys of other stages it reads (get and watch, never writes): a bucket, and whose keys (`all`: everyone's). */
  reads?: readonly { bucket: BucketName; of: KnownStage | 'all' }[];
  /** Finds tool services (`$SRV.INFO`) and calls them (`va.v1.tool.<name>`). */
  callsTools?: boolean;
}

/**
 * Every stage's traffic, read off the services' code (docs/architecture.md "Subjects" is generated from it). Every stage also
 * publishes `error` events and follows `control` (see {@link EVERY_STAGE}).
 */
export const STAGE_ACCESS = {
  'media-gateway': {
    publishes: ['audio.in', 'playout'],
    // What was heard comes from audio.out alone (each frame carries its words; speech: a source's last frame sent).
    // transcript feeds the talk page; playout: its own, for the page's turn timeline.
    subscribes: ['vad', 'turn', 'audio.out', 'speech', 'transcript', 'playout'],
    // The recent microphone audio of its sessions, for an stt instance taking one over.
    serves: ['audio.replay'],
    // speech.replay: a session taken up after its gateway died — the answer it was playing, again from what was heard.
    requests: ['ctx.get', 'speech.replay'],
    actorHost: false,
    opensSessions: true,
    // A stage that did not claim a session in time gets an ownerless lease parked under its name.
    kv: { leases: 'all', state: 'own' },
    // Every stage's heartbeats: a session some stage has no room for is refused before it is opened. Agent
    // profiles: the session's agent travels to the stages in session.open.
    reads: [
      { bucket: 'instances', of: 'all' },
      { bucket: 'agents', of: 'all' },
    ],
  },
  stt: {
    publishes: ['transcript'],
    subscribes: ['audio.in', 'vad'],
    // Its recent finals, for a turn-detector instance taking a session over.
    serves: ['transcript.replay'],
    requests: ['audio.replay'],
    actorHost: true,
    opensSessions: false,
    kv: {},
  },
  'turn-detector': {
    publishes: ['vad', 'turn', 'control'],
    subscribes: ['audio.in', 'transcript', 'playout'],
    // The newest turns, for a deep responder back from a lost connection.
    serves: ['turn.replay'],
    requests: ['transcript.replay'],
    actorHost: true,
    opensSessions: false,
    // It hears every microphone frame: a session with none for long has lost its gateway for good.
    closesOrphans: true,
    kv: {},
  },
  'fast-responder': {
    publishes: ['reply.fast'],
    // agent: a handoff changes the persona its opener speaks in.
    subscribes: ['turn', 'agent'],
    // The opener so far, for a tts instance taking a session over mid-turn.
    serves: ['reply.fast.replay'],
    requests: [],
    actorHost: true,
    opensSessions: false,
    kv: {},
    // History from a replica kept by a watch on session-context's keys: nothing asked when a turn ends.
    reads: [{ bucket: 'state', of: 'session-context' }],
  },
  'deep-responder': {
    // agent: it hands the conversation over (a transfer_to_<name> call) and follows the change.
    publishes: ['reply.deep', 'tool', 'agent'],
    subscribes: ['turn', 'agent'],
    // The answer so far, for a tts instance taking a session over mid-answer.
    serves: ['reply.deep.replay'],
    // Back from a lost connection: the turns sent meanwhile.
    requests: ['turn.replay'],
    actorHost: true,
    opensSessions: false,
    kv: {},
    // A handoff's target profile is read when the model transfers (the session's own came in session.open).
    reads: [
      { bucket: 'state', of: 'session-context' },
      { bucket: 'agents', of: 'all' },
    ],
    callsTools: true,
  },
  tts: {
    publishes: ['audio.out', 'speech'],
    // agent: a handoff's voice.
    subscribes: ['turn', 'vad', 'reply.fast', 'reply.deep', 'agent'],
    // A gateway that took a session up: the answer its dead predecessor was playing, spoken again from there.
    serves: ['speech.replay'],
    // Taking a session over mid-answer: the replies so far, to speak on from where its predecessor stopped.
    requests: ['reply.fast.replay', 'reply.deep.replay'],
    actorHost: true,
    opensSessions: false,
    kv: {},
  },
  'session-context': {
    publishes: [],
    subscribes: ['turn', 'tool', 'playout'],
    serves: ['ctx.get'],
    requests: [],
    actorHost: true,
    opensSessions: false,
    kv: {},
    // ctx.get is answered only to a stage holding a lease on the session.
    reads: [{ bucket: 'leases', of: 'all' }],
  },
} as const satisfies Record<KnownStage, StageAccess>;

/** What every stage does: reports bad input on `error`, and cancels turns on `control` (every actor does). */
export const EVERY_STAGE = {
  publishes: ['error'],
  subscribes: ['control'],
} as const satisfies Pick<StageAccess, 'publishes' | 'subscribes'>;

/**
 * Users that are not stages: read-only watching of sessions, JetStream administration, reading everything
 * (debug), managing agent profiles (`agents`, what `npm run agent` connects as), and tool services (`tools`).
 */
export const OPS_USERS = ['observer', 'admin', 'debug', 'agents', 'tools'] as const;
export type OpsUser = (typeof OPS_USERS)[number];
export type NatsUser = KnownStage | OpsUser;
export const NATS_USERS: readonly NatsUser[] = [...STAGES, ...OPS_USERS];

/**
 * Each user's reply inboxes live under their own prefix, so no user can read another's replies (KV values,
 * history from ctx.get). The gateway keeps the client's default `_INBOX`: session.open acks are collected on
 * a plain `createInbox()`. Bus.connect derives the prefix from `NATS_USER` (or takes `NATS_INBOX_PREFIX`).
 */
export function inboxPrefix(user: string): string {
  return user === 'media-gateway' ? '_INBOX' : `_INBOX_${user}`;
}

/**
 * The user whose inbox a reply subject is (the only user the server lets read it), or undefined if it is none.
 * Without authentication every connection uses `_INBOX`, i.e. reads as the gateway.
 */
export function inboxOwner(reply: string): string | undefined {
  if (reply.startsWith('_INBOX.')) return 'media-gateway';
  const m = /^_INBOX_([A-Za-z0-9-]+)\./.exec(reply);
  return m?.[1];
}

/**
 * Whether a reply subject is some user's inbox (`_INBOX.…`, `_INBOX_<user>.…`). Services answer requests only
 * there: an answer to any other subject would be published where the asker itself may not publish.
 */
export function isInbox(subject: string): boolean {
  return inboxOwner(subject) !== undefined;
}

/** The environment variable holding a user's password in the generated server config (`$NATS_PASSWORD_STT`). */
export function passwordVariable(user: string): string {
  return `NATS_PASSWORD_${user.toUpperCase().replace(/-/g, '_')}`;
}

/** One user's permissions in nats-server terms. */
export interface NatsPermissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
  /** May answer requests it received (one reply each): session.open acks, `$SRV` pings, ctx.get. */
  allow_responses: boolean;
}

const JS_API = '$JS.API';

/** What nats.js KV create/get/put/create/update/delete/purge/watch/keys send, for one bucket and key scope. */
function kvPublish(bucket: string, keys: string): string[] {
  const stream = `KV_${bucket}`;
  const keySubject = `$KV.${bucket}.${keys}`;
  return [
    // Kvm.create(): stream info, or creating the bucket on first use.
    `${JS_API}.STREAM.INFO.${stream}`,
    `${JS_API}.STREAM.CREATE.${stream}`,
    // put, create, update, delete, purge: a JetStream publish to the key's subject.
    keySubject,
    // get (the buckets allow direct gets; the key is in the subject, so it is subject to permissions).
    `${JS_API}.DIRECT.GET.${stream}.${keySubject}`,
    // watch and keys: an ordered push consumer filtered on the keys (the filter is in the subject).
    `${JS_API}.CONSUMER.CREATE.${stream}.*.${keySubject}`,
    `${JS_API}.CONSUMER.INFO.${stream}.*`,
    `${JS_API}.CONSUMER.DELETE.${stream}.*`,
    // The ordered consumer's flow-control replies.
    `$JS.FC.${stream}.>`,
  ];
}

/** Reading one key scope of an existing bucket: open it, get and watch keys; never write or create. */
function kvRead(bucket: string, keys: string): string[] {
  const stream = `KV_${bucket}`;
  const keySubject = `$KV.${bucket}.${keys}`;
  return [
    `${JS_API}.STREAM.INFO.${stream}`,
    `${JS_API}.DIRECT.GET.${stream}.${keySubject}`,
    `${JS_API}.CONSUMER.CREATE.${stream}.*.${keySubject}`,
    `${JS_API}.CONSUMER.INFO.${stream}.*`,
    `${JS_API}.CONSUMER.DELETE.${stream}.*`,
    `$JS.FC.${stream}.>`,
  ];
}

function sessionSubjects(leaves: readonly SessionLeaf[]): string[] {
  return leaves.map((leaf) => anySessionSubject(leaf));
}

/** A stage's permissions, derived from {@link STAGE_ACCESS}. */
export function stagePermissions(stage: KnownStage): NatsPermissions {
  const access: StageAccess = STAGE_ACCESS[stage];
  const pub = new Set<string>();
  const sub = new Set<string>();
  const add = (set: Set<string>, items: Iterable<string>) => {
    for (const s of items) set.add(s);
  };

  add(pub, sessionSubjects([...access.publishes, ...EVERY_STAGE.publishes]));
  pub.add(channels.errorGlobal.subject);
  add(sub, sessionSubjects([...access.subscribes, ...EVERY_STAGE.subscribes]));
  for (const r of access.requests) pub.add(requestSubject(r));
  for (const r of access.serves) sub.add(requestSubject(r));
  sub.add(`${inboxPrefix(stage)}.>`);

  if (access.opensSessions) {
    add(pub, [subjects.sessionOpen, subjects.sessionClose]);
    // A session closed elsewhere (an orphan the turn detector closed): the opener forgets its state of it.
    sub.add(subjects.sessionClose);
  }
  if (access.closesOrphans) pub.add(subjects.sessionClose);

  const kv: Partial<Record<BucketName, KeyScope>> = { ...access.kv };
  if (access.actorHost) {
    add(sub, [subjects.sessionOpen, subjects.sessionClose]);
    for (const b of ['leases', 'instances', 'state'] as const) kv[b] = kv[b] ?? 'own';
    // NATS micro: `$SRV.PING|INFO|STATS[.<name>[.<id>]]`, and the per-instance sessions endpoint.
    add(sub, ['$SRV.*', `$SRV.*.${stage}`, `$SRV.*.${stage}.*`, `${PREFIX}.svc.${stage}.*.sessions`]);
  }
  if (Object.keys(kv).length > 0) pub.add(`${JS_API}.INFO`); // the JetStream manager's API check
  for (const [bucket, scope] of Object.entries(kv) as [BucketName, KeyScope][]) {
    add(pub, kvPublish(BUCKETS[bucket], scope === 'own' ? `${stage}.>` : '>'));
  }
  for (const r of access.reads ?? []) add(pub, kvRead(BUCKETS[r.bucket], r.of === 'all' ? '>' : `${r.of}.>`));
  if ((access.reads ?? []).length > 0) pub.add(`${JS_API}.INFO`);
  if (access.callsTools) add(pub, ['$SRV.INFO', subjects.toolServiceAll]);
  return {
    publish: { allow: [...pub] },
    subscribe: { allow: [...sub] },
    allow_responses: access.actorHost || access.serves.length > 0,
  };
}

/** Every session's traffic, opens and closes, and errors: what `observer` and `debug` read. */
const SESSION_TRAFFIC = [`${PREFIX}.sess.>`, subjects.sessionOpen, subjects.sessionClose, subjects.errorGlobal];

/**
 * Permissions of any user: a stage, `observer` (watches sessions, asks services), `admin` (runs JetStream, reads
 * none of it) or `debug` (reads everything, for a person debugging).
 */
export function natsPermissions(user: NatsUser): NatsPermissions {
  if (user === 'observer') {
    return {
      // Micro service discovery (`nats micro ls`) and each instance's sessions.
      publish: { allow: ['$SRV.>', `${PREFIX}.svc.*.*.sessions`] },
      subscribe: { allow: [...SESSION_TRAFFIC, `${inboxPrefix('observer')}.>`] },
      allow_responses: false,
    };
  }
  if (user === 'admin') {
    // Runs JetStream, never reads it: creates the product's buckets (replicas), reports on streams and
    // consumers. No message of a stream reaches it: no get (direct or by sequence), no consumer of its own (a
    // consumer delivers into its creator's inbox), no KV read; so session payloads (history, leases) stay out of
    // reach. A stream it could give session subjects cannot be read back by it either. `debug` is the role that
    // reads.
    const buckets = Object.values(BUCKETS).map((b) => `KV_${b}`);
    return {
      publish: {
        allow: [
          `${JS_API}.INFO`,
          `${JS_API}.STREAM.NAMES`,
          `${JS_API}.STREAM.LIST`,
          `${JS_API}.STREAM.INFO.*`,
          `${JS_API}.CONSUMER.NAMES.*`,
          `${JS_API}.CONSUMER.LIST.*`,
          `${JS_API}.CONSUMER.INFO.*.*`,
          // Creating a bucket (e.g. with three replicas before the first start). Not updating one: a stream's
          // config can republish every message to any subject (nats-server 2.9), its creator's inbox included;
          // on an existing bucket a create with a different config is refused by the server.
          ...buckets.map((b) => `${JS_API}.STREAM.CREATE.${b}`),
          '$SRV.>',
        ],
      },
      subscribe: { allow: [`${inboxPrefix('admin')}.>`] },
      allow_responses: false,
    };
  }
  if (user === 'agents') {
    // Writes and reads agent profiles, nothing else: no session traffic, no other bucket.
    return {
      publish: { allow: [`${JS_API}.INFO`, ...kvPublish(BUCKETS.agents, '>')] },
      subscribe: { allow: [`${inboxPrefix('agents')}.>`] },
      allow_responses: false,
    };
  }
  if (user === 'tools') {
    // A tool service: answers calls on its endpoint and service discovery, nothing else — no session traffic.
    return {
      publish: { allow: [] },
      subscribe: { allow: [`${PREFIX}.tool.>`, '$SRV.*', '$SRV.*.>', `${inboxPrefix('tools')}.>`] },
      allow_responses: true,
    };
  }
  if (user === 'debug') {
    // The explicit role that may read everything: session traffic, KV values, stream messages. For a person
    // debugging, never for a service; its password is the data's.
    return {
      publish: { allow: [`${JS_API}.>`, '$KV.>', '$JS.FC.>', '$JS.ACK.>', '$SRV.>'] },
      subscribe: { allow: [...SESSION_TRAFFIC, `${inboxPrefix('debug')}.>`] },
      allow_responses: false,
    };
  }
  return stagePermissions(user);
}

/** A request's subject; a per-session one for any session. */
function requestSubject(name: RequestName): string {
  const global = Object.values(requests).find((r) => r.name === name);
  if (global) return global.subject;
  const perSession = Object.values(sessionRequests).find((r) => r.name === name);
  if (!perSession) throw new Error(`unknown request ${name}`);
  return anySessionSubject(perSession.name);
}

const HEADER = `# GENERATED by scripts/nats-auth.mjs from libs/protocol/src/permissions.ts: do not edit by hand.
# One user per stage (and observer, admin, debug) with publish/subscribe limited to its subjects.
# Passwords come from the server's environment ($NATS_PASSWORD_<USER>; nats-server refuses to start when one
# is unset). A bcrypt hash (nats server passwd) may replace a variable. See deploy/nats/README.md.`;

/** The `authorization` block of the server config, as checked in at `deploy/nats/auth.conf`. */
export function natsAuthConfig(): string {
  const q = (s: string) => JSON.stringify(s);
  const allow = (kind: string, items: string[]) => [
    `        ${kind}: {`,
    '          allow: [',
    ...items.map((s) => `            ${q(s)}`),
    '          ]',
    '        }',
  ];
  const users = NATS_USERS.flatMap((user) => {
    const p = natsPermissions(user);
    return [
      '    {',
      `      user: ${q(user)}`,
      `      password: $${passwordVariable(user)}`,
      '      permissions: {',
      ...allow('publish', p.publish.allow),
      ...allow('subscribe', p.subscribe.allow),
      ...(p.allow_responses ? ['        allow_responses: true'] : []),
      '      }',
      '    }',
    ];
  });
  return `${HEADER}\nauthorization {\n  users: [\n${users.join('\n')}\n  ]\n}\n`;
}

/** Name of the Kubernetes Secret holding every NATS user's password, one key per user (`stt`, `admin`…). */
export const NATS_PASSWORDS_SECRET = 'voice-agent-nats';

/**
 * Helm values for the official NATS chart (1.x) that put the same users and permissions into the server's
 * config, each password read from the Secret {@link NATS_PASSWORDS_SECRET} into the server's environment
 * (`<< $VAR >>` is the chart's unquoted raw value). Checked in at `deploy/k8s/nats-auth-values.yaml`.
 */
export function natsAuthHelmValues(): string {
  const users = NATS_USERS.map((user) => {
    const p = natsPermissions(user);
    return {
      user,
      password: `<< $${passwordVariable(user)} >>`,
      permissions: {
        publish: { allow: p.publish.allow },
        subscribe: { allow: p.subscribe.allow },
        ...(p.allow_responses ? { allow_responses: true } : {}),
      },
    };
  });
  const env = Object.fromEntries(
    NATS_USERS.map((user) => [
      passwordVariable(user),
      { valueFrom: { secretKeyRef: { name: NATS_PASSWORDS_SECRET, key: user } } },
    ]),
  );
  const header = [
    '# GENERATED by scripts/nats-auth.mjs from libs/protocol/src/permissions.ts: do not edit by hand.',
    '# The least-privilege NATS users (deploy/nats/auth.conf) for the Helm chart, over nats-values.yaml:',
    '#   helm upgrade --install nats nats/nats -n voice-agent -f deploy/k8s/nats-values.yaml \\',
    '#     -f deploy/k8s/nats-auth-values.yaml',
    `# Passwords come from the Secret ${NATS_PASSWORDS_SECRET} (one key per user; deploy/k8s/README.md creates it).`,
  ].join('\n');
  return `${header}\n${JSON.stringify({ config: { merge: { authorization: { users } } }, container: { env } }, null, 2)}\n`;
}
