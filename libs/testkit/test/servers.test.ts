import { request } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { validate, readQuery } from '../src/servers/deepgram-query.js';
import { TextScript } from '../src/servers/deepgram-transcript.js';
import { PendingText } from '../src/servers/elevenlabs-stream-input.js';
import { LocalHttpServer, refuseUpgrade, sendJson, writeInSteps } from '../src/servers/local-http.js';

describe('PendingText (ElevenLabs stream-input buffering)', () => {
  it('holds text until a flush, then gives all of it', () => {
    const text = new PendingText();
    expect(text.add('Hello ', {})).toBeUndefined();
    expect(text.add('there.', { flush: true })).toBe('Hello there.');
    expect(text.drain()).toBe('');
  });

  it('try_trigger_generation needs 50 characters', () => {
    const text = new PendingText();
    expect(text.add('short ', { try_trigger_generation: true })).toBeUndefined();
    expect(text.add('x'.repeat(50), { try_trigger_generation: true })).toBe(`short ${'x'.repeat(50)}`);
  });

  it('follows the chunk length schedule, cutting at the last space and keeping the rest', () => {
    const text = new PendingText();
    const config = { generation_config: { chunk_length_schedule: [10, 20] } };
    expect(text.add('one two', config)).toBeUndefined();
    expect(text.add(' three', config)).toBe('one two ');
    // The next threshold is 20.
    expect(text.add(' four five', config)).toBeUndefined();
    expect(text.add(' six seven', config)).toBe('three four five six ');
    expect(text.drain()).toBe('seven');
  });
});

describe('Deepgram query', () => {
  it('refuses what Deepgram refuses and reads the defaults', () => {
    expect(validate(new URLSearchParams('interim_results=yes'))).toMatch(/must be true or false/);
    expect(validate(new URLSearchParams('utterance_end_ms=1000'))).toMatch(/requires interim_results/);
    expect(validate(new URLSearchParams('encoding=linear16&sample_rate=16000'))).toBeUndefined();
    expect(readQuery(new URLSearchParams())).toMatchObject({
      sampleRate: 16000,
      endpointingMs: 10,
      utteranceEndMs: undefined,
      modelName: 'general-nova-3',
    });
    expect(readQuery(new URLSearchParams('endpointing=false')).endpointingMs).toBeUndefined();
  });

  it('a script cycles its texts', () => {
    const script = new TextScript(['a', 'b']);
    expect([script.next(), script.next(), script.next()]).toEqual(['a', 'b', 'a']);
  });
});

describe('LocalHttpServer', () => {
  let server: LocalHttpServer | undefined;
  afterEach(() => server?.close());

  const get = (path: string) =>
    new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
      const req = request(`${server!.origin}${path}`, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });

  it('listens on 127.0.0.1, numbers connections, streams in steps, closes once', async () => {
    const numbers: number[] = [];
    server = new LocalHttpServer(async (req, res) => {
      numbers.push(server!.connectionNumber(req.socket));
      if (req.url === '/json') return sendJson(res, 201, { ok: true });
      res.writeHead(200);
      const outcome = await writeInSteps(res, new Uint8Array(10).fill(7), { step: 3, delayMs: 1 });
      expect(outcome).toBe('written');
      res.end();
    });
    await server.listen();
    expect(server.origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await get('/json')).toEqual({ status: 201, body: Buffer.from('{"ok":true}') });
    const body = await get('/bytes');
    expect([...body.body]).toEqual(Array(10).fill(7));
    expect(numbers.every((n) => n >= 1)).toBe(true);
    let fired = false;
    server.later(50, () => (fired = true));
    const closed = server.close();
    expect(server.close()).toBe(closed);
    await closed;
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(fired).toBe(false);
  });

  it('cuts a body where cutBefore says', async () => {
    let outcome: string | undefined;
    server = new LocalHttpServer(async (_req, res) => {
      res.writeHead(200);
      outcome = await writeInSteps(res, new Uint8Array(10), {
        step: 2,
        delayMs: 1,
        cutBefore: (writes) => writes >= 2,
      });
    });
    await server.listen();
    await expect(get('/')).rejects.toThrow();
    expect(outcome).toBe('cut');
  });

  it('refuseUpgrade answers with a JSON error and closes', async () => {
    server = new LocalHttpServer(async () => undefined);
    server.http.on('upgrade', (_req, socket) => refuseUpgrade(socket, 401, { detail: 'no' }, { 'x-why': 'key' }));
    await server.listen();
    const answer = await new Promise<string>((resolve) => {
      const socket = connect(Number(new URL(server!.origin).port), '127.0.0.1');
      let data = '';
      socket.on('data', (c) => (data += String(c)));
      socket.on('close', () => resolve(data));
      socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    });
    expect(answer).toMatch(/^HTTP\/1\.1 401 Unauthorized\r\n/);
    expect(answer).toMatch(/x-why: key\r\n/);
    expect(answer.endsWith('\r\n\r\n{"detail":"no"}')).toBe(true);
  });
});
