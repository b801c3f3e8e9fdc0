/**
 * Child process of measureIdleHop: answers every request on ECHO_SUBJECT with its payload until its parent
 * closes stdin (or 120 s pass, whatever happens to the parent).
 */
import { Bus } from '@va/bus';
import { ECHO_SUBJECT } from './bus-hop.js';

const servers = process.argv[2];
if (!servers) throw new Error('usage: idle-echo <nats url>');
const bus = await Bus.connect({ stage: 'bench-echo', servers });
const sub = bus.nc.subscribe(ECHO_SUBJECT);
const stop = () => void bus.close().then(() => process.exit(0));
process.stdin.on('end', stop).resume();
setTimeout(stop, 120_000).unref();
process.stdout.write('ready\n');
for await (const m of sub) m.respond(m.data);
