import { Svcm, type Service } from '@nats-io/services';
import { subjects } from '@va/protocol';
import type { Bus } from '@va/bus';

export interface HostServiceInfo {
  stage: string;
  instanceId: string;
  version: string;
  /** What the `sessions` endpoint answers: the sessions held now and the capacity. */
  sessions(): { sessions: string[]; capacity: number };
}

/** Registers this instance as a NATS service (@nats-io/services), with a `sessions` endpoint listing what it holds. */
export async function registerHostService(bus: Bus, info: HostServiceInfo): Promise<Service> {
  // @nats-io/services is still a 3.0 pre-release pinned to an older nats-core: same wire protocol, but its
  // NatsConnection type is a distinct copy, hence the cast.
  const service = await new Svcm(bus.nc as unknown as ConstructorParameters<typeof Svcm>[0]).add({
    name: info.stage,
    version: info.version,
    description: `voice-agent stage ${info.stage}`,
    metadata: { instanceId: info.instanceId },
  });
  service.addEndpoint('sessions', {
    subject: subjects.svcSessions(info.stage, info.instanceId),
    handler: (_err, msg) => {
      msg.respond(JSON.stringify({ instanceId: info.instanceId, ...info.sessions() }));
    },
  });
  return service;
}
