import WebSocket from 'ws';
import { runClock, type ConversationState, type MicSource, type ScriptedUtterance } from '@va/audio';
import { FRAME_MS } from '@va/protocol';

/** The talk page's rate both ways (the gateway's web transport). */
const RATE = 16000;
const FRAME_SAMPLES = (RATE * FRAME_MS) / 1000;

/** A turn the gateway reports played (the page's `playout` event), on the caller's clock. */
export interface CallerPlayout {
  atMs: number;
  turnId: string;
  spokenText: string;
  interrupted: boolean;
  e2eMs: number | null;
  traceId: string | null;
}

/** Words of the agent as they were played (the page's captions), on the caller's clock. */
export interface CallerCaption {
  atMs: number;
  turnId: string;
  source: 'fast' | 'deep' | 'filler';
  text: string;
}

/** A lost socket and the resume that followed (caller's clock). */
export interface CallerReconnect {
  lostAtMs: number;
  /** The session taken up again (`ready` with `resumed`), null if it never was. */
  resumedAtMs: number | null;
  /** Microphone frames kept while down and sent on the resume (the rest of the gap was dropped, oldest first). */
  framesReplayed: number;
}

export interface WebCallResult {
  sessionId: string;
  durationMs: number;
  utterances: ScriptedUtterance[];
  playouts: CallerPlayout[];
  captions: CallerCaption[];
  reconnects: CallerReconnect[];
}

export interface WebCallOptions {
  /** The talk page's origin: one gateway, or a proxy in front of several (e.g. `http://127.0.0.1:8080`). */
  url: string;
  mic: MicSource;
  /** Microphone kept while the socket is down, as the page keeps it (default 2000 ms). */
  bufferMs?: number;
  /** Agent silence after the script's end before hanging up (default 3000 ms). */
  tailMs?: number;
  /** Gives up on a lost session after this long without a resume (default 20 s). */
  resumeTimeoutMs?: number;
  signal?: AbortSignal;
  /** The session is open (its id is the gateway's choice). */
  onReady?: (sessionId: string) => void;
  /** The caller began saying utterance `n` of its script (1-based). */
  onUtterance?: (n: number) => void;
  /** Called with the script over and the agent quiet, before the hang-up ends the session. */
  beforeHangUp?: (sessionId: string) => Promise<void>;
  onProgress?: (line: string) => void;
}

type PageEvent =
  | { type: 'ready'; sessionId: string; resumeToken: string; resumed: boolean }
  | { type: 'resume-token'; token: string }
  | { type: 'reply'; source: CallerCaption['source']; turnId: string; text: string }
  | ({ type: 'playout' } & Omit<CallerPlayout, 'atMs'>)
  | { type: 'error'; code: string; message: string }
  | { type: 'transcript' | 'flush' };

/**
 * A caller on the talk page, in Node: what `index.html` does, with a scripted microphone. Streams 20 ms frames
 * in real time, keeps what the page keeps when its socket is lost (the newest `bufferMs` of microphone) and
 * reconnects with its resume token — through a proxy, that may be another gateway — then sends the kept audio.
 * Records what a page sees: captions, played turns, and every loss and resume. Hangs up (a clean close ends the
 * session) once the script is over and the agent has been quiet for `tailMs`.
 */
export async function runWebCall(opts: WebCallOptions): Promise<WebCallResult> {
  const wsBase = opts.url.replace(/^http/, 'ws');
  const bufferFrames = Math.round((opts.bufferMs ?? 2000) / FRAME_MS);
  const progress = opts.onProgress ?? (() => undefined);
  const playouts: CallerPlayout[] = [];
  const captions: CallerCaption[] = [];
  const reconnects: CallerReconnect[] = [];
  let t0 = 0;
  const now = () => performance.now() - t0;
  let sessionId = '';
  let token = '';
  let socket: WebSocket | undefined;
  let kept: Buffer[] = [];
  let lastAgentAudio = -Infinity;
  let lastAnswerEnd = -Infinity;
  let agentTurnStartMs: number | undefined;
  let lastCaptionTurn: string | undefined;
  let failure: Error | undefined;
  let hangingUp = false;

  /** Connects (fresh, or resuming with the token); resolves on `ready`, rejects on a refusal or a lost socket. */
  const attach = (resume: boolean) =>
    new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(`${wsBase}/ws${resume ? `?resume=${encodeURIComponent(token)}` : ''}`);
      let ready = false;
      ws.on('message', (data: Buffer, isBinary) => {
        if (isBinary) {
          lastAgentAudio = now();
          return;
        }
        const e = JSON.parse(data.toString()) as PageEvent;
        if (e.type === 'ready') {
          ready = true;
          sessionId = e.sessionId;
          token = e.resumeToken;
          resolve(ws);
        } else if (e.type === 'resume-token') token = e.token;
        else if (e.type === 'reply') {
          captions.push({ atMs: now(), turnId: e.turnId, source: e.source, text: e.text });
          if (e.turnId !== lastCaptionTurn) agentTurnStartMs = now();
          lastCaptionTurn = e.turnId;
        } else if (e.type === 'playout') {
          const { type: _type, ...p } = e;
          playouts.push({ ...p, atMs: now() });
          if (!p.interrupted && p.spokenText !== '') lastAnswerEnd = now();
        } else if (e.type === 'error' && !ready) reject(new Error(`${e.code}: ${e.message}`));
      });
      // After ready, a socket error is followed by its close (handled there).
      ws.on('error', (err) => (ready ? undefined : reject(err)));
      ws.once('close', (code) => {
        if (!ready) reject(new Error(`closed before ready (${code})`));
        else if (!hangingUp && socket === ws) void lost();
      });
    });

  /** The socket was lost: keep the microphone, reconnect with back-off, send what was kept. */
  const lost = async () => {
    socket = undefined;
    const r: CallerReconnect = { lostAtMs: now(), resumedAtMs: null, framesReplayed: 0 };
    reconnects.push(r);
    progress(`socket lost at ${Math.round(r.lostAtMs)} ms: resuming`);
    // The page's back-off (index.html's app.js): 0.5 s, then doubling.
    for (let delay = 500; now() - r.lostAtMs < (opts.resumeTimeoutMs ?? 20_000); delay = Math.min(5000, delay * 2)) {
      await new Promise((resolve) => setTimeout(resolve, delay));
      if (hangingUp) return;
      try {
        const ws = await attach(true);
        r.resumedAtMs = now();
        r.framesReplayed = kept.length;
        for (const f of kept) ws.send(f);
        kept = [];
        socket = ws;
        progress(`resumed ${Math.round(r.resumedAtMs - r.lostAtMs)} ms after the loss`);
        return;
      } catch (err) {
        // refused for good (a forged or expired token): the page would start over; a caller here fails.
        if (String(err).includes('resume-refused')) {
          failure = err as Error;
          return;
        }
      }
    }
    failure = new Error(`no resume within ${opts.resumeTimeoutMs ?? 20_000} ms`);
  };

  socket = await attach(false);
  t0 = performance.now();
  progress(`session ${sessionId} ready`);
  opts.onReady?.(sessionId);
  let micOver: number | undefined;
  const state = (): ConversationState => {
    const t = now();
    const spoken = opts.mic.utterances.at(-1)?.endMs ?? -Infinity;
    return {
      nowMs: t,
      // Idle: the answer to the last utterance has been played (or none is owed), and nothing plays now.
      idle: lastAnswerEnd >= spoken && t - lastAgentAudio > 2 * FRAME_MS,
      lastActivity: Math.max(lastAgentAudio, spoken),
      ...(agentTurnStartMs !== undefined ? { agentTurnStartMs } : {}),
    };
  };
  const tailMs = opts.tailMs ?? 3000;
  await runClock(
    FRAME_MS,
    () => {
      if (failure) return false;
      if (micOver === undefined) {
        const said = opts.mic.utterances.length;
        const frame = opts.mic.next(FRAME_SAMPLES, state());
        if (opts.mic.utterances.length > said) opts.onUtterance?.(opts.mic.utterances.length);
        if (frame === null) micOver = now();
        else {
          const bytes = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
          if (socket?.readyState === WebSocket.OPEN) socket.send(bytes);
          else {
            kept.push(Buffer.from(bytes));
            if (kept.length > bufferFrames) kept.shift();
          }
        }
        return true;
      }
      const quiet = now() - Math.max(lastAgentAudio, micOver);
      return quiet < tailMs && now() - micOver < 60_000;
    },
    opts.signal ?? new AbortController().signal,
  );
  if (!failure) await opts.beforeHangUp?.(sessionId);
  hangingUp = true;
  const ws = socket as WebSocket | undefined;
  if (ws && ws.readyState === WebSocket.OPEN) {
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      ws.close(1000, 'bye');
      setTimeout(resolve, 5000).unref();
    });
  }
  if (failure) throw failure;
  return {
    sessionId,
    durationMs: now(),
    utterances: opts.mic.utterances,
    playouts,
    captions,
    reconnects,
  };
}
