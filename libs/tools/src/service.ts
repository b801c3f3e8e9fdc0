import { Svcm, type Service, type ServiceMsg } from '@nats-io/services';
import { Bus, extractTrace } from '@va/bus';
import { subjects, TOOL_METADATA, TOOL_SERVICE_KIND, ToolName, type ToolReply } from '@va/protocol';
import {
  ATTR,
  createLogger,
  recordError,
  shutdownTelemetry,
  SPAN,
  startStageSpan,
  startTelemetry,
  type Logger,
} from '@va/telemetry';
import { z } from 'zod';

/** A tool as a service: what the model is told (name, description, the JSON Schema of `args`) and what it does. */
export interface ToolServiceDefinition<A extends z.ZodType = z.ZodType> {
  name: string;
  description: string;
  args: A;
  /** Runs one call; `signal` fires when the call times out here. Returns anything JSON-serializable. */
  run(args: z.infer<A>, signal: AbortSignal): Promise<unknown>;
  /** A call running longer is abandoned with an error result. Default 5 s. */
  timeoutMs?: number;
  version?: string;
}

/** Declares a tool service with its argument type inferred from the schema. */
export function defineToolService<A extends z.ZodType>(def: ToolServiceDefinition<A>): ToolServiceDefinition<A> {
  ToolName.parse(def.name);
  return def;
}

const DEFAULT_TIMEOUT_MS = 5_000;
const errorOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * Serves one tool on the bus: registered as a NATS micro service (found by `$SRV.INFO`), its endpoint on
 * `va.v1.tool.<name>` in a queue group (run several instances to scale it). Each call: arguments checked against
 * the schema, run under a timeout, a `tool.run` span joined to the caller's trace; every failure is an `error`
 * reply the model reads — the service itself never stops on bad input.
 */
export async function startToolService(bus: Bus, def: ToolServiceDefinition, log?: Logger): Promise<Service> {
  const { $schema: _drop, ...parameters } = z.toJSONSchema(def.args) as Record<string, unknown>;
  // @nats-io/services is a 3.0 pre-release on an older nats-core copy: same wire protocol, a distinct type.
  const service = await new Svcm(bus.nc as unknown as ConstructorParameters<typeof Svcm>[0]).add({
    name: def.name,
    version: def.version ?? '0.1.0',
    description: def.description,
    metadata: { [TOOL_METADATA.kind]: TOOL_SERVICE_KIND },
  });
  service.addEndpoint('call', {
    subject: subjects.toolService(def.name),
    metadata: { [TOOL_METADATA.description]: def.description, [TOOL_METADATA.parameters]: JSON.stringify(parameters) },
    handler: (err, msg) => {
      if (err) return void log?.warn({ err: errorOf(err) }, 'tool endpoint error');
      void answer(def, msg, log);
    },
  });
  return service;
}

async function answer(def: ToolServiceDefinition, msg: ServiceMsg, log?: Logger): Promise<void> {
  const span = startStageSpan(SPAN.toolRun, {
    parent: extractTrace(msg.headers as Parameters<typeof extractTrace>[0]),
    stage: `tool:${def.name}`,
    attributes: { [ATTR.toolName]: def.name },
  });
  const reply = await runCall(def, msg.data);
  if ('error' in reply) {
    span.setAttribute(ATTR.toolOutcome, 'error');
    recordError(span, new Error(reply.error));
    log?.warn({ tool: def.name, error: reply.error }, 'tool call failed');
  } else span.setAttribute(ATTR.toolOutcome, 'ok');
  span.end();
  msg.respond(JSON.stringify(reply));
}

/** One call's reply: the result, or the reason there is none (bad JSON, bad arguments, a throw, a timeout). */
export async function runCall(def: ToolServiceDefinition, data: Uint8Array): Promise<ToolReply> {
  let args: unknown;
  try {
    const text = new TextDecoder().decode(data).trim();
    args = def.args.parse(text === '' ? {} : JSON.parse(text));
  } catch (err) {
    const why = err instanceof z.ZodError ? z.prettifyError(err).replace(/\n/g, ' ') : errorOf(err);
    return { error: `bad arguments for ${def.name}: ${why}` };
  }
  const timeoutMs = def.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const result = await Promise.race([
      def.run(args, signal),
      new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
    ]);
    return { result: result ?? null };
  } catch (err) {
    if (signal.aborted) return { error: `${def.name} timed out after ${timeoutMs} ms` };
    return { error: `${def.name} failed: ${errorOf(err)}` };
  }
}

/**
 * A tool service's whole `main`: connects to NATS (NATS_URL, NATS_USER=tools + NATS_PASSWORD_FILE with
 * authorization), serves the tool, and stops cleanly on SIGTERM/SIGINT (the service deregisters, calls in flight
 * finish).
 */
export async function runToolService(def: ToolServiceDefinition): Promise<void> {
  startTelemetry({ serviceName: `tool-${def.name}` });
  const log = createLogger(`tool-${def.name}`);
  const bus = await Bus.connect({ stage: 'tools', instanceId: def.name, logger: log });
  const service = await startToolService(bus, def, log);
  log.info({ tool: def.name, subject: subjects.toolService(def.name) }, 'tool service ready');
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await service.stop();
  await bus.drain();
  await shutdownTelemetry();
}
