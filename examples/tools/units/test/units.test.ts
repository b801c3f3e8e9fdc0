import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus, newHeaders } from '@va/bus';
import { SPAN } from '@va/telemetry';
import {
  spawnNode,
  startNatsServer,
  startOtlpReceiver,
  waitFor,
  type ChildHandle,
  type NatsServerHandle,
  type OtlpReceiver,
} from '@va/testkit';
import { RemoteTools, runCall } from '@va/tools';
import { context, trace, TraceFlags } from '@opentelemetry/api';
import { convert, convertUnits } from '../src/units.js';

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

describe('convert_units (the example tool)', () => {
  it('converts within a dimension, temperatures with their offsets, and refuses across dimensions', () => {
    expect(convert(5, 'km', 'mi')).toBe(3.107);
    expect(convert(70, 'F', 'C')).toBe(21.11);
    expect(convert(0, 'C', 'K')).toBe(273.1);
    expect(convert(1, 'lb', 'kg')).toBe(0.4536);
    expect(convert(100, 'km/h', 'mph')).toBe(62.14);
    expect(() => convert(1, 'km', 'kg')).toThrow(/cannot convert km to kg: km is length, kg is weight/);
  });

  it('answers a call with a result, and bad arguments or a bad conversion with an error reply', async () => {
    expect(await runCall(convertUnits, json({ value: 2, from: 'cup', to: 'ml' }))).toEqual({
      result: { value: 2, from: 'cup', to: 'ml', result: 473.2 },
    });
    expect(await runCall(convertUnits, json({ value: 'two', from: 'cup', to: 'ml' }))).toMatchObject({
      error: expect.stringMatching(/^bad arguments for convert_units: .*value/),
    });
    expect(await runCall(convertUnits, new TextEncoder().encode('{not json'))).toMatchObject({
      error: expect.stringMatching(/^bad arguments/),
    });
    expect(await runCall(convertUnits, json({ value: 1, from: 'km', to: 'F' }))).toEqual({
      error: 'convert_units failed: cannot convert km to F: km is length, F is a temperature',
    });
  });
});

describe('the tool service process (node dist/main.js)', () => {
  let nats: NatsServerHandle;
  let otlp: OtlpReceiver;
  let bus: Bus;
  let child: ChildHandle | undefined;
  beforeAll(async () => {
    [nats, otlp] = await Promise.all([startNatsServer(), startOtlpReceiver()]);
    bus = await Bus.connect({ stage: 'deep-responder', servers: nats.url });
  });
  afterAll(async () => {
    child?.kill('SIGKILL');
    await bus?.drain();
    await nats?.stop();
    await otlp?.stop();
  });

  it('is found on the bus, answers with the real conversion, joins the caller’s trace, and is gone when stopped', async () => {
    const tools = new RemoteTools(bus, { discoverEveryMs: 200 }).start();
    try {
      child = spawnNode(MAIN, {
        env: {
          NATS_URL: nats.url,
          OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint,
          OTEL_BSP_SCHEDULE_DELAY: '100',
          LOG_LEVEL: 'info', // the ready line is what the test waits for
        },
        name: 'tool-units',
        maxLifetimeSec: 120,
      });
      await child.waitForJson((l: { msg?: string }) => l.msg === 'tool service ready', 20_000);
      const found = await waitFor(() => tools.get('convert_units'), { message: 'the tool discovered' });
      expect(found.description).toMatch(/Converts a quantity/);
      expect(found.parameters).toMatchObject({ type: 'object', required: ['value', 'from', 'to'] });

      // A caller's span context, as the deep responder's `tool` span would send it.
      const traceId = '0af7651916cd43dd8448eb211c80319c';
      const parent = trace.setSpanContext(context.active(), {
        traceId,
        spanId: 'b7ad6b7169203331',
        traceFlags: TraceFlags.SAMPLED,
      });
      expect(newHeaders({}, parent).get('traceparent')).toContain(traceId);
      const reply = await tools.call('convert_units', JSON.stringify({ value: 10, from: 'mi', to: 'km' }), {
        signal: new AbortController().signal,
        timeoutMs: 2_000,
        context: parent,
      });
      expect(reply).toEqual({ result: { value: 10, from: 'mi', to: 'km', result: 16.09 } });
      const spans = await otlp.waitForSpans((all) => all.some((s) => s.name === SPAN.toolRun), 10_000);
      const run = spans.find((s) => s.name === SPAN.toolRun)!;
      expect(run.traceId).toBe(traceId);
      expect(run.parentSpanId).toBe('b7ad6b7169203331');

      child.kill('SIGTERM');
      expect((await child.exited).code).toBe(0);
      await waitFor(() => tools.get('convert_units') === undefined, { message: 'the tool gone from discovery' });
      expect(await tools.call('convert_units', '{}', { signal: new AbortController().signal, timeoutMs: 500 })).toEqual(
        { error: 'there is no tool named convert_units' },
      );
    } finally {
      tools.stop();
    }
  });
});
