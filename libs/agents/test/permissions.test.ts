import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus, natsAuthFromEnv } from '@va/bus';
import { NATS_USERS, passwordVariable } from '@va/protocol';
import { createLogger } from '@va/telemetry';
import { startNatsServer, type NatsServerHandle } from '@va/testkit';
import { AgentStore } from '../src/index.js';

const AUTH_CONF = fileURLToPath(new URL('../../../deploy/nats/auth.conf', import.meta.url));
const passwords = Object.fromEntries(NATS_USERS.map((u) => [u, `pw-${u}-${randomBytes(6).toString('hex')}`]));

let nats: NatsServerHandle;
const buses: Bus[] = [];

async function connect(user: string): Promise<Bus> {
  const auth = natsAuthFromEnv({ NATS_USER: user, NATS_PASSWORD: passwords[user] });
  const bus = await Bus.connect({ stage: user, servers: nats.url, auth, logger: createLogger(user, {}, 'silent') });
  buses.push(bus);
  return bus;
}

beforeAll(async () => {
  nats = await startNatsServer({
    config: readFileSync(AUTH_CONF, 'utf8'),
    env: Object.fromEntries(NATS_USERS.map((u) => [passwordVariable(u), passwords[u]!])),
  });
});

afterAll(async () => {
  await Promise.all(buses.map((b) => b.close()));
  await nats?.stop();
});

describe('agent profiles under the generated NATS users (deploy/nats/auth.conf)', () => {
  it('the agents user writes them, the gateway and the deep responder read them, other stages cannot', async () => {
    const writer = new AgentStore(await connect('agents'), { create: true });
    await writer.put({ name: 'concierge', instructions: 'You book tables.' });
    const gateway = new AgentStore(await connect('media-gateway'));
    expect(await gateway.resolve('concierge')).toMatchObject({ name: 'concierge', version: 1 });
    // The gateway may read, not write.
    await expect(
      new AgentStore(await connect('media-gateway'), { create: true }).put({ name: 'x', instructions: 'y' }),
    ).rejects.toThrow();
    // The deep responder reads a handoff's target, never writes; any other stage gets its agent in session.open
    // and can do neither.
    expect(await new AgentStore(await connect('deep-responder')).get('concierge')).toMatchObject({ version: 1 });
    await expect(
      new AgentStore(await connect('deep-responder'), { create: true }).put({ name: 'x', instructions: 'y' }),
    ).rejects.toThrow();
    await expect(new AgentStore(await connect('fast-responder')).get('concierge')).rejects.toThrow();
    await expect(
      new AgentStore(await connect('fast-responder'), { create: true }).put({ name: 'x', instructions: 'y' }),
    ).rejects.toThrow();
  });
});
