import WebSocket from 'ws';
import type { WebServer } from '../src/web/server.js';
import type { PageEvent, SessionFactory, WebSession } from '../src/web/session.js';

/** A session that records every mic tick (with its time) and answers each marked frame with its negation. */
export class FakeSession implements WebSession {
  readonly sessionId = 'fake-1';
  readonly resumed = false;
  readonly ticks: { at: number; frame: Int16Array }[] = [];
  closed = false;
  /** How the socket's end was taken: the session ended (true) or only lost (false). */
  ended: boolean | undefined;
  constructor(readonly emit: (e: PageEvent) => void) {}
  tick(mic: Int16Array): Int16Array | undefined {
    this.ticks.push({ at: performance.now(), frame: mic });
    const m = marker(mic);
    return m === undefined ? undefined : new Int16Array(320).fill(-m);
  }
  resumeToken(): string {
    return 'fake-token';
  }
  async close(ended = true): Promise<void> {
    this.closed = true;
    this.ended = ended;
  }
}

/** Test frames are constant and ≥ 100; the transport's comfort noise is a few units. */
export function marker(frame: Int16Array): number | undefined {
  const v = frame[0]!;
  return v >= 100 && frame.every((s) => s === v) ? v : undefined;
}

export function fakeFactory(): { factory: SessionFactory; sessions: FakeSession[] } {
  const sessions: FakeSession[] = [];
  return {
    sessions,
    factory: async (emit) => {
      const s = new FakeSession(emit);
      sessions.push(s);
      return s;
    },
  };
}

export interface Client {
  ws: WebSocket;
  events: PageEvent[];
  audio: Int16Array[];
  closed: Promise<number>;
}

export async function connect(server: WebServer, headers: Record<string, string> = {}, query = ''): Promise<Client> {
  const ws = new WebSocket(`${server.url.replace('http', 'ws')}/ws${query}`, { headers });
  const c: Client = { ws, events: [], audio: [], closed: new Promise((r) => ws.once('close', (code) => r(code))) };
  ws.on('message', (data: Buffer, isBinary) => {
    if (isBinary) c.audio.push(new Int16Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)));
    else c.events.push(JSON.parse(data.toString()) as PageEvent);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return c;
}

export const pcm = (samples: Int16Array) => Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const errors = (c: Client) => c.events.filter((e) => e.type === 'error');
