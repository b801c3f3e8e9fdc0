#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { Bus } from '@va/bus';
import { createLogger } from '@va/telemetry';
import { readProfileFile } from './file.js';
import { AgentProfileError, AgentStore } from './store.js';

const USAGE = `usage: npm run agent -- <command>
  put <file.json|.yaml>        store a profile (a new version of its agent; applies to new sessions at once)
  get <name> [--version N]     print a profile (the latest, or version N)
  list                         the stored agents and their versions
  rm <name>                    remove an agent (its past versions stay in the bucket's history)
NATS: NATS_URL (default nats://127.0.0.1:4222); with authorization NATS_USER=agents and NATS_PASSWORD_FILE.`;

/** Exit codes: 0 done, 1 not found or NATS unreachable, 2 bad usage or an invalid profile. */
class UsageError extends Error {}

const CONNECT_TIMEOUT_MS = 5_000;

async function connect(): Promise<Bus> {
  const url = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`cannot reach NATS at ${url}`)), CONNECT_TIMEOUT_MS);
  });
  try {
    return await Promise.race([
      Bus.connect({ stage: 'agents', servers: url, logger: createLogger('agents', {}, 'warn') }),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function run(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { version: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  const [command, arg] = positionals;
  if (values.help || !command) throw new UsageError('');
  if (command !== 'list' && !arg) throw new UsageError(`${command} needs an argument`);
  const version = values.version === undefined ? undefined : Number(values.version);
  if (version !== undefined && !(Number.isInteger(version) && version > 0)) {
    throw new UsageError('--version must be a positive integer');
  }
  const input = command === 'put' ? await readProfileFile(arg!) : undefined;
  const bus = await connect();
  try {
    const store = new AgentStore(bus, { create: command === 'put' });
    switch (command) {
      case 'put': {
        const stored = await store.put(input);
        console.log(`stored ${stored.name} version ${stored.version}`);
        return 0;
      }
      case 'get': {
        const profile = await store.get(arg!, version);
        if (!profile) {
          console.error(`no agent ${arg}${version ? ` version ${version}` : ''}`);
          return 1;
        }
        console.log(JSON.stringify(profile, null, 2));
        return 0;
      }
      case 'list': {
        for (const p of await store.list()) {
          const tools = p.tools.length > 0 ? ` tools: ${p.tools.join(', ')}` : '';
          console.log(`${p.name}\tversion ${p.version}${p.greeting ? '\tgreets' : ''}${tools}`);
        }
        return 0;
      }
      case 'rm': {
        if (await store.remove(arg!)) {
          console.log(`removed ${arg}`);
          return 0;
        }
        console.error(`no agent ${arg}`);
        return 1;
      }
      default:
        throw new UsageError(`unknown command ${command}`);
    }
  } finally {
    await bus.drain();
  }
}

try {
  process.exitCode = await run(process.argv.slice(2));
} catch (err) {
  if (err instanceof UsageError) {
    if (err.message) console.error(err.message);
    console.error(USAGE);
    process.exitCode = 2;
  } else if (err instanceof AgentProfileError) {
    console.error(err.message);
    process.exitCode = 2;
  } else {
    console.error(err instanceof Error ? err.message : String(err));
    process.exitCode = 1;
  }
  // A connection that never came up keeps retrying in the background: do not wait for it.
  process.exit();
}
