import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV, type KvOptions } from '@nats-io/kv';
import pRetry from 'p-retry';

/**
 * JetStream not answering yet (no leader, no responders, a request timed out; on a cluster, a stream just created
 * not yet known to the node asked): worth another try.
 */
const TRANSIENT_JETSTREAM = /timeout|no responders|not enabled|temporarily unavailable|leader|stream not found/i;

/**
 * The bucket, if its stream is what a KV bucket needs and no more. Whoever creates a bucket first sets its stream's
 * config, and in nats-server 2.9 that config can copy every value elsewhere (a republish to any subject, the
 * creator's inbox included; a mirror; sources) or capture other subjects. A stage that could create a bucket
 * before the others could thus read what they store: every user of a bucket checks it and refuses such a one, so
 * nothing is ever written into it.
 */
export async function plainBucket(kv: KV, bucket: string): Promise<KV> {
  const { config } = (await kv.status()).streamInfo;
  const problems: string[] = [];
  if (config.republish) problems.push(`republishes to ${config.republish.dest}`);
  if (config.mirror) problems.push(`mirrors ${config.mirror.name}`);
  if ((config.sources ?? []).length > 0) problems.push('has sources');
  const subjects = config.subjects ?? [];
  if (subjects.length !== 1 || subjects[0] !== `$KV.${bucket}.>`) problems.push(`stores ${subjects.join(', ')}`);
  if (problems.length > 0) {
    throw new Error(
      `KV bucket ${bucket} ${problems.join('; ')}: not what this product creates, refusing to use it ` +
        '(delete the bucket as debug and restart; deploy/nats/README.md)',
    );
  }
  return kv;
}

/** The JetStream KV buckets of one connection, each checked by {@link plainBucket} before it is used. */
export class KvBuckets {
  private readonly created = new Map<string, Promise<KV>>();

  constructor(
    private readonly nc: NatsConnection,
    /** Replicas of a bucket this connection creates (a bucket that exists is used as it is). */
    private readonly replicas = 1,
  ) {}

  /** Opens (creating if needed) a bucket: one handle per bucket, and a failed open is tried again next time. */
  create(bucket: string, opts: Partial<KvOptions> = {}): Promise<KV> {
    let kv = this.created.get(bucket);
    if (!kv) {
      // Retried while JetStream is not ready to answer (a cluster still forming its stream's group, a leader being
      // elected): a stage starting with the bus must not die of it. Anything else fails at once.
      kv = pRetry(
        async () =>
          plainBucket(await new Kvm(this.nc).create(bucket, { history: 1, replicas: this.replicas, ...opts }), bucket),
        {
          retries: 8,
          minTimeout: 250,
          maxTimeout: 4000,
          shouldRetry: (err) => TRANSIENT_JETSTREAM.test(`${err.name} ${err.message}`),
        },
      );
      kv.catch(() => this.created.delete(bucket));
      this.created.set(bucket, kv);
    }
    return kv;
  }

  /**
   * Opens a bucket that exists (for readers that may not create it); rejects when it does not exist yet. Gets are
   * direct gets, as on a created bucket (every bucket of the product allows them; a reader's permissions name
   * the key in a direct get's subject, never the stream-wide message get).
   */
  open(bucket: string): Promise<KV> {
    return new Kvm(this.nc).open(bucket, { allow_direct: true }).then((b) => plainBucket(b, bucket));
  }
}
