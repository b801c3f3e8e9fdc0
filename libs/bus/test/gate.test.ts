import { headers as natsHeaders, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { channels, encodeAudioFrame, sessionId, subjects } from '@va/protocol';
import { createLogger } from '@va/telemetry';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { BusCounters } from '../src/counters.js';
import { ERROR_HEADER, ErrorReporter } from '../src/errors.js';
import { MessageGate } from '../src/gate.js';

/** What a gate's reporter published, without a server. */
function setup() {
  const sent: { subject: string; body: unknown; error: boolean }[] = [];
  const nc = {
    isClosed: () => false,
    publish: (subject: string, data: Uint8Array, opts?: { headers?: { has(k: string): boolean } }) =>
      void sent.push({
        subject,
        body: JSON.parse(new TextDecoder().decode(data)),
        error: opts?.headers?.has(ERROR_HEADER) ?? false,
      }),
  } as unknown as NatsConnection;
  const counters = new BusCounters('gate-test');
  const gate = new MessageGate(new ErrorReporter(nc, 'gate-test', createLogger('gate-test'), counters), counters);
  return { sent, counters, gate };
}

const sid = sessionId('gate-1');
const subject = subjects.transcript(sid);
const ch = { name: 'test.thing', schema: z.object({ n: z.number() }) };

function msg(body: string | Uint8Array, extra: Partial<Pick<Msg, 'reply' | 'headers'>> = {}): Msg {
  const data = typeof body === 'string' ? new TextEncoder().encode(body) : body;
  return { subject, data, ...extra } as unknown as Msg;
}

describe('MessageGate', () => {
  it('hands over a valid message and counts it received', () => {
    const { gate, counters, sent } = setup();
    expect(gate.json(ch, msg('{"n":1}'))).toEqual({ value: { n: 1 } });
    expect(counters.stats).toEqual({ published: 0, received: 1, rejected: 0 });
    expect(sent).toEqual([]);
  });

  it('drops a bad body with an error event, and answers an asker waiting on a reply', () => {
    const { gate, counters, sent } = setup();
    expect(gate.json(ch, msg('not json', { reply: '_INBOX.abc' }))).toBeUndefined();
    expect(gate.json(ch, msg('{"n":"x"}'))).toBeUndefined();
    expect(counters.stats.rejected).toBe(2);
    expect(sent.map((s) => [s.subject, (s.body as { code: string }).code, s.error])).toEqual([
      [channels.error.subject(sid), 'bad-message', false],
      ['_INBOX.abc', 'bad-message', true],
      [channels.error.subject(sid), 'bad-message', false],
    ]);
  });

  it('drops what the server relayed as forged, never answering its reply subject', () => {
    const { gate, counters, sent } = setup();
    const stored = natsHeaders();
    stored.set('Nats-Stream', 'KV_va_state');
    expect(gate.json(ch, msg('{"n":1}', { reply: '$JS.ACK.x' }))).toBeUndefined();
    expect(gate.json(ch, msg('{"n":1}', { headers: stored }))).toBeUndefined();
    expect(counters.stats).toEqual({ published: 0, received: 0, rejected: 2 });
    expect(sent.map((s) => [s.subject, (s.body as { code: string }).code])).toEqual([
      [channels.error.subject(sid), 'forged'],
      [channels.error.subject(sid), 'forged'],
    ]);
  });

  it('answers a request only into an inbox', () => {
    const { gate, sent } = setup();
    expect(gate.request(ch, msg('{"n":1}', { reply: '_INBOX.abc' }))).toEqual({ value: { n: 1 }, reply: '_INBOX.abc' });
    expect(gate.request(ch, msg('{"n":1}'))).toBeUndefined();
    expect(gate.request(ch, msg('{"n":1}', { reply: subjects.control(sid) }))).toBeUndefined();
    expect(sent.map((s) => (s.body as { code: string }).code)).toEqual(['forged']);
  });

  it('decodes an audio frame unless it was relayed or cannot be read', () => {
    const { gate, counters, sent } = setup();
    const data = encodeAudioFrame({ seq: 1, tsMs: 0, sampleRate: 16000, samples: new Int16Array(320) });
    expect(gate.frame('audio.in', msg(data), undefined)?.seq).toBe(1);
    expect(gate.frame('audio.in', msg(data), 'relayed from a JetStream stream (Nats-Stream)')).toBeUndefined();
    expect(gate.frame('audio.in', msg(data, { reply: '_INBOX.x' }), undefined)).toBeUndefined();
    expect(gate.frame('audio.in', msg(new Uint8Array([1, 2])), undefined)).toBeUndefined();
    expect(counters.stats).toEqual({ published: 0, received: 1, rejected: 3 });
    expect(sent.map((s) => (s.body as { code: string }).code)).toEqual(['forged', 'forged', 'bad-audio']);
  });
});
