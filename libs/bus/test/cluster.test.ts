import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus, natsServers } from '@va/bus';
import { channels, sessionId } from '@va/protocol';
import { createLogger } from '@va/telemetry';
import { startNatsCluster, waitFor, type NatsClusterHandle } from '@va/testkit';

// A real three-node JetStream cluster on loopback: the bus takes the list of servers, creates its buckets with
// three replicas, and rides out the loss of any one node — kill -9, as a crashed server or a lost machine.
const sid = sessionId('cluster-1');
let cluster: NatsClusterHandle;
let bus: Bus;
let peer: Bus;

beforeAll(async () => {
  cluster = await startNatsCluster();
  const logger = createLogger('cluster-test', {}, 'silent');
  bus = await Bus.connect({ stage: 'cluster-a', servers: cluster.url, logger });
  peer = await Bus.connect({ stage: 'cluster-b', servers: cluster.urls.slice().reverse(), logger });
}, 60_000);

afterAll(async () => {
  await bus?.close();
  await peer?.close();
  await cluster?.stop();
});

/** The node a connection is on now. */
function nodeOf(b: Bus): number {
  const port = Number(b.nc.getServer().split(':').pop());
  return cluster.nodes.findIndex((n) => n.port === port);
}

describe('natsServers', () => {
  it('reads a comma-separated NATS_URL or a list, and refuses an empty one', () => {
    expect(natsServers('nats://a:4222, nats://b:4222,nats://c:4222')).toEqual([
      'nats://a:4222',
      'nats://b:4222',
      'nats://c:4222',
    ]);
    expect(natsServers(['nats://a:4222'])).toEqual(['nats://a:4222']);
    expect(() => natsServers(' , ')).toThrow(/NATS_URL/);
  });
});

describe('a three-node NATS cluster', () => {
  it('creates the buckets with three replicas, and loses no write and no message when a node is killed, then another', async () => {
    const kv = await bus.kv('va_cluster_test');
    expect((await kv.status()).replicas).toBe(3);
    await kv.put('history', JSON.stringify(['hello']));

    // A subscription made before the faults keeps receiving: the client re-subscribes on the node it moves to.
    const heard: string[] = [];
    peer.subscribe(channels.transcript, sid, (t) => void heard.push(t.text));
    await peer.nc.flush();
    const say = (text: string) =>
      bus.publish(channels.transcript, sid, { text, final: true, stable: true, confidence: 1, startMs: 0, endMs: 1 });

    const appended: string[] = ['hello'];
    for (const round of [1, 2]) {
      const victim = nodeOf(bus);
      expect(victim).toBeGreaterThanOrEqual(0);
      process.kill(cluster.nodes[victim]!.pid, 'SIGKILL');
      // Reconnected to a survivor, and the bucket writable again once its stream has a leader among the two left.
      await waitFor(() => bus.connected && nodeOf(bus) !== victim, { timeoutMs: 10_000, message: 'reconnected' });
      const word = `round ${round}`;
      appended.push(word);
      await waitFor(async () => (await kv.put('history', JSON.stringify(appended)), true), {
        timeoutMs: 20_000,
        intervalMs: 200,
        message: 'a KV write accepted with one node down',
      });
      await waitFor(
        () => {
          say(word);
          return heard.includes(word);
        },
        { timeoutMs: 10_000, intervalMs: 200, message: `"${word}" delivered across the cluster` },
      );
      // The node comes back with its store and catches up before the next one goes.
      await cluster.restartNode(victim);
    }
    const entry = await kv.get('history');
    expect(JSON.parse(entry!.string())).toEqual(['hello', 'round 1', 'round 2']);
    expect(nodeOf(bus)).toBeGreaterThanOrEqual(0);
  }, 120_000);
});
