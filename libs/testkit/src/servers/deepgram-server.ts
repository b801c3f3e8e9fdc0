import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';

/**
 * A local stand-in for Deepgram's live transcription endpoint (`GET /v1/listen`, docs/provider-protocols.md §1),
 * for tests only. It speaks the real wire protocol — `Authorization: Token <key>` on the upgrade, binary linear16
 * audio in, `KeepAlive` / `Finalize` / `CloseStream` text frames, `Results` / `SpeechStarted` / `UtteranceEnd` /
 * `Metadata` JSON out, close 1000 after CloseStream and 1011 `NET-0001` after an idle stream — but it does not
 * recognise speech: an energy VAD finds utterances on the audio clock and each utterance "says" the next text of
 * its script. Faults (a slow handshake, a dropped connection, a refused key) are switched on through `faults`.
 */
export interface DeepgramServerOptions {
  /** The key the server accepts. Default 'test-key'. */
  apiKey?: string;
  /** What successive utterances say (cycled). Default ['hello there']. */
  texts?: readonly string[];
  /**
   * 'connection' (default): every connection starts at the first text, as independent Deepgram streams would
   * hear independent audio; 'server': one script across connections (a reconnected stream goes on with it).
   */
  textScope?: 'connection' | 'server';
  /** 10 ms frames louder than this are speech. Default −45 dBFS. */
  speechDbfs?: number;
  /** An interim `Results` every this much speech (audio time). Default 200 ms. */
  interimEveryMs?: number;
  /** Without audio or a text frame for this long the server closes with NET-0001 (Deepgram: 10 s). */
  idleTimeoutMs?: number;
  /**
   * Speech longer than this is finalized in segments (`is_final` without `speech_final`), as Deepgram does with
   * long utterances. Default 0: one segment per utterance.
   */
  segmentMs?: number;
  faults?: DeepgramServerFaults;
}

export interface DeepgramServerFaults {
  /** The upgrade is answered this much later (a slow TLS/handshake path). */
  handshakeDelayMs?: number;
  /** Each connection is cut (TCP reset, no close frame) this long after it opened. */
  dropAfterMs?: number;
  /** Each connection is cut once it has received this much audio (audio time, ms): a drop at a known point. */
  dropAtAudioMs?: number;
  /** Only this many more connections are cut (counted down as they are), the rest behave. Default: all. */
  dropConnections?: number;
  /** Every upgrade gets 401, whatever the key. */
  rejectAuth?: boolean;
}

/** One WebSocket connection as the server saw it. */
export interface DeepgramConnection {
  query: URLSearchParams;
  /** performance.now() when the upgrade request arrived and when the socket opened. */
  requestedAt: number;
  openedAt: number;
  closedAt?: number;
  /** How the socket ended: the close code sent or received (1006 for a cut). */
  closeCode?: number;
  bytes: number;
  keepAlives: number;
  /** `type` of every JSON message sent, in order (`Results` as `Results:interim` / `Results:final` / `Results:speech_final`). */
  sent: string[];
  /** performance.now() of the first audio byte. */
  firstAudioAt?: number;
}

export interface DeepgramServerStats {
  /** Upgrades accepted / refused. */
  connections: number;
  rejected: number;
  /** Sockets open now. */
  open: number;
  keepAlives: number;
  bytes: number;
  finalizes: number;
  closeStreams: number;
  /** Streams closed for idleness (NET-0001). */
  idleCloses: number;
  /** Connections cut by the dropAfterMs fault. */
  drops: number;
}

export interface DeepgramServer {
  /** Base URL for the SDK's `baseUrl` (http:, which ws turns into ws:). */
  readonly url: string;
  readonly apiKey: string;
  readonly stats: DeepgramServerStats;
  readonly connections: DeepgramConnection[];
  /** Mutable: tests switch faults on and off between calls. */
  readonly faults: DeepgramServerFaults;
  close(): Promise<void>;
}

const ENCODINGS = new Set(['linear16', 'flac', 'mulaw', 'alaw', 'amr-nb', 'amr-wb', 'opus', 'speex', 'g729']);
const BOOLEAN_PARAMS = ['interim_results', 'vad_events', 'smart_format', 'punctuate', 'diarize', 'numerals'];
/** Speech is heard as one word per this much audio. */
const WORD_MS = 200;
/** Deepgram's NET-0001 text (https://developers.deepgram.com/docs/audio-keep-alive). */
const NET_0001 = 'NET-0001: Deepgram did not receive audio data or a text message within the timeout window.';

/** Parses and checks the query as Deepgram would; returns the problem as Deepgram's 400 body would say it. */
function validate(query: URLSearchParams): string | undefined {
  for (const name of BOOLEAN_PARAMS) {
    const v = query.get(name);
    if (v !== null && v !== 'true' && v !== 'false') return `${name} must be true or false, got "${v}"`;
  }
  const encoding = query.get('encoding');
  if (encoding !== null) {
    if (!ENCODINGS.has(encoding)) return `unknown encoding "${encoding}"`;
    if (encoding !== 'linear16') return `this test server only decodes linear16, not ${encoding}`;
    const rate = Number(query.get('sample_rate'));
    if (!Number.isInteger(rate) || rate < 8000 || rate > 48000) return 'sample_rate is required with encoding';
  }
  const channels = query.get('channels');
  if (channels !== null && channels !== '1') return 'this test server only decodes channels=1';
  const endpointing = query.get('endpointing');
  if (endpointing !== null && endpointing !== 'false' && !/^\d+$/.test(endpointing)) {
    return `endpointing must be false or milliseconds, got "${endpointing}"`;
  }
  const utteranceEnd = query.get('utterance_end_ms');
  if (utteranceEnd !== null) {
    if (!/^\d+$/.test(utteranceEnd)) return `utterance_end_ms must be milliseconds, got "${utteranceEnd}"`;
    if (query.get('interim_results') !== 'true') return 'utterance_end_ms requires interim_results=true';
  }
  return undefined;
}

function refuse(socket: Duplex, status: number, text: string, errCode: string, errMsg: string): void {
  const body = JSON.stringify({ err_code: errCode, err_msg: errMsg, request_id: randomUUID() });
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\ncontent-type: application/json\r\ndg-error: ${errMsg}\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

export async function startDeepgramServer(opts: DeepgramServerOptions = {}): Promise<DeepgramServer> {
  const apiKey = opts.apiKey ?? 'test-key';
  const texts = opts.texts?.length ? opts.texts : ['hello there'];
  const speechDbfs = opts.speechDbfs ?? -45;
  const interimEveryMs = opts.interimEveryMs ?? 200;
  const idleTimeoutMs = opts.idleTimeoutMs ?? 10_000;
  const segmentMs = opts.segmentMs ?? 0;
  const textScope = opts.textScope ?? 'connection';
  const faults: DeepgramServerFaults = { ...opts.faults };
  const stats: DeepgramServerStats = {
    connections: 0,
    rejected: 0,
    open: 0,
    keepAlives: 0,
    bytes: 0,
    finalizes: 0,
    closeStreams: 0,
    idleCloses: 0,
    drops: 0,
  };
  const connections: DeepgramConnection[] = [];
  const sockets = new Set<WebSocket>();
  const pendingUpgrades = new Set<NodeJS.Timeout>();
  let utterances = 0;
  let closing = false;

  const wss = new WebSocketServer({ noServer: true });
  const http: Server = createServer((_req, res) => {
    res.writeHead(404).end();
  });

  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer, requestedAt: number) => {
    if (closing) return void socket.destroy();
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== '/v1/listen') {
      stats.rejected++;
      return refuse(socket, 404, 'Not Found', 'NOT_FOUND', `no such path ${url.pathname}`);
    }
    if (faults.rejectAuth || req.headers.authorization !== `Token ${apiKey}`) {
      stats.rejected++;
      return refuse(socket, 401, 'Unauthorized', 'INVALID_AUTH', 'Invalid credentials.');
    }
    const problem = validate(url.searchParams);
    if (problem) {
      stats.rejected++;
      return refuse(socket, 400, 'Bad Request', 'INVALID_QUERY_PARAMETER', problem);
    }
    wss.handleUpgrade(req, socket, head, (ws) => serve(ws, url.searchParams, requestedAt));
  };

  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const requestedAt = performance.now();
    socket.on('error', () => {}); // a client that gives up mid-handshake is not the server's problem
    const delay = faults.handshakeDelayMs ?? 0;
    if (delay <= 0) return upgrade(req, socket, head, requestedAt);
    const timer = setTimeout(() => {
      pendingUpgrades.delete(timer);
      upgrade(req, socket, head, requestedAt);
    }, delay);
    pendingUpgrades.add(timer);
  });

  /** One live stream: the audio clock, the VAD and the transcript state of one connection. */
  function serve(ws: WebSocket, query: URLSearchParams, requestedAt: number): void {
    stats.connections++;
    stats.open++;
    sockets.add(ws);
    const record: DeepgramConnection = {
      query,
      requestedAt,
      openedAt: performance.now(),
      bytes: 0,
      keepAlives: 0,
      sent: [],
    };
    connections.push(record);

    const requestId = randomUUID();
    const sampleRate = Number(query.get('sample_rate') ?? 16000);
    const interim = query.get('interim_results') === 'true';
    const vadEvents = query.get('vad_events') === 'true';
    const endpointingRaw = query.get('endpointing');
    // Deepgram's default endpointing is 10 ms; `false` turns it off.
    const endpointingMs = endpointingRaw === 'false' ? undefined : Number(endpointingRaw ?? 10);
    const utteranceEndMs = query.has('utterance_end_ms') ? Number(query.get('utterance_end_ms')) : undefined;
    const frameSamples = Math.round(sampleRate / 100);
    const frameBytes = frameSamples * 2;

    let carry = Buffer.alloc(0);
    let samplesSeen = 0;
    /** Stream time (ms) up to which results were finalized: the next Results starts here. */
    let cursorMs = 0;
    let lastWordEndMs: number | undefined;
    let wordsSinceUtteranceEnd = false;
    interface Speech {
      startMs: number;
      lastVoiceMs: number;
      words: string[];
      /** Words already finalized. */
      done: number;
      segStartMs: number;
      nextInterimMs: number;
    }
    let speech: Speech | undefined;
    let ended = false;
    let heardHere = 0;

    const send = (msg: { type: string; is_final?: boolean; speech_final?: boolean; [field: string]: unknown }) => {
      if (ws.readyState !== ws.OPEN) return;
      const empty = (msg as { channel?: { alternatives?: { transcript?: string }[] } }).channel?.alternatives?.[0]
        ?.transcript;
      const kind = empty === '' ? 'empty' : msg.speech_final ? 'speech_final' : msg.is_final ? 'final' : 'interim';
      record.sent.push(msg.type === 'Results' ? `Results:${kind}` : msg.type);
      ws.send(JSON.stringify(msg));
    };
    /**
     * A `Results` with words `from`..`to` of the utterance `s`. Word i is said at [start + i·WORD_MS, +WORD_MS],
     * the last one until the speech's end, all within the speech heard so far: the same word has the same times
     * in every interim and in its final.
     */
    const results = (
      s: Speech | undefined,
      from: number,
      to: number,
      endMs: number,
      flags: { isFinal: boolean; speechFinal: boolean; fromFinalize?: boolean },
    ) => {
      const words = s ? s.words.slice(from, to) : [];
      const timed = words.map((word, k) => {
        const i = from + k;
        const last = i === s!.words.length - 1;
        return {
          word: word.toLowerCase().replace(/[^\p{L}\p{N}']/gu, ''),
          start: Math.min(s!.startMs + i * WORD_MS, s!.lastVoiceMs) / 1000,
          end: (last ? s!.lastVoiceMs : Math.min(s!.startMs + (i + 1) * WORD_MS, s!.lastVoiceMs)) / 1000,
          confidence: flags.isFinal ? 0.98 : 0.7,
          punctuated_word: word,
        };
      });
      send({
        type: 'Results',
        channel_index: [0, 1],
        duration: Math.max(0, endMs - cursorMs) / 1000,
        start: cursorMs / 1000,
        is_final: flags.isFinal,
        speech_final: flags.speechFinal,
        from_finalize: flags.fromFinalize ?? false,
        channel: {
          alternatives: [
            { transcript: words.join(' '), confidence: words.length ? (flags.isFinal ? 0.98 : 0.7) : 0, words: timed },
          ],
        },
        metadata: {
          request_id: requestId,
          model_info: { name: `general-${query.get('model') ?? 'nova-3'}`, version: 'test', arch: 'test' },
          model_uuid: '00000000-0000-0000-0000-000000000000',
        },
      });
      if (timed.length) {
        lastWordEndMs = timed.at(-1)!.end * 1000;
        wordsSinceUtteranceEnd = true;
      }
    };
    /** Words heard so far in the current utterance (one per WORD_MS of speech), never the last before the final. */
    const heard = (s: Speech) =>
      Math.min(s.words.length - 1, Math.max(1, Math.ceil((s.lastVoiceMs - s.startMs) / WORD_MS)));

    /** Finalizes the current segment: the rest of the words when the utterance ended, else those heard so far. */
    const finalize = (nowMs: number, flags: { speechFinal: boolean; fromFinalize?: boolean; whole: boolean }) => {
      const s = speech;
      if (!s) {
        if (flags.fromFinalize) results(undefined, 0, 0, nowMs, { isFinal: true, ...flags });
        cursorMs = nowMs;
        return;
      }
      const upTo = flags.whole ? s.words.length : Math.max(s.done, heard(s));
      results(s, s.done, upTo, nowMs, { isFinal: true, ...flags });
      cursorMs = nowMs;
      s.done = upTo;
      s.segStartMs = s.lastVoiceMs;
      if (flags.whole) speech = undefined;
    };

    const frame = (samples: Int16Array) => {
      const startMs = (samplesSeen * 1000) / sampleRate;
      samplesSeen += samples.length;
      const endMs = (samplesSeen * 1000) / sampleRate;
      let sum = 0;
      for (const s of samples) sum += s * s;
      const dbfs = 10 * Math.log10(sum / samples.length / (32768 * 32768) + 1e-12);
      const voiced = dbfs > speechDbfs;
      if (voiced) {
        if (!speech) {
          const text = texts[(textScope === 'server' ? utterances++ : heardHere++) % texts.length]!;
          speech = {
            startMs,
            lastVoiceMs: endMs,
            words: text.split(/\s+/).filter(Boolean),
            done: 0,
            segStartMs: startMs,
            nextInterimMs: startMs + interimEveryMs,
          };
          if (vadEvents) send({ type: 'SpeechStarted', channel: [0], timestamp: startMs / 1000 });
        }
        speech.lastVoiceMs = endMs;
        if (interim && endMs >= speech.nextInterimMs) {
          speech.nextInterimMs += interimEveryMs;
          const upTo = Math.max(speech.done, heard(speech));
          results(speech, speech.done, upTo, endMs, { isFinal: false, speechFinal: false });
        }
        if (segmentMs > 0 && endMs - speech.segStartMs >= segmentMs && heard(speech) > speech.done) {
          finalize(endMs, { speechFinal: false, whole: false });
        }
      } else if (speech && endpointingMs !== undefined && endMs - speech.lastVoiceMs >= endpointingMs) {
        finalize(endMs, { speechFinal: true, whole: true });
      }
      if (
        !voiced &&
        utteranceEndMs !== undefined &&
        wordsSinceUtteranceEnd &&
        lastWordEndMs !== undefined &&
        endMs - Math.max(lastWordEndMs, speech?.lastVoiceMs ?? 0) >= utteranceEndMs
      ) {
        wordsSinceUtteranceEnd = false;
        send({ type: 'UtteranceEnd', channel: [0, 1], last_word_end: (speech?.lastVoiceMs ?? lastWordEndMs) / 1000 });
        // With endpointing off, Deepgram still settles the words later: an is_final without speech_final.
        if (speech) finalize(endMs, { speechFinal: false, whole: true });
        wordsSinceUtteranceEnd = false;
      }
    };

    const audio = (data: Buffer) => {
      record.bytes += data.length;
      stats.bytes += data.length;
      record.firstAudioAt ??= performance.now();
      let buf = carry.length ? Buffer.concat([carry, data]) : data;
      let at = 0;
      for (; at + frameBytes <= buf.length; at += frameBytes) {
        if (dropAtAudioMs !== undefined && (samplesSeen * 1000) / sampleRate >= dropAtAudioMs) return cut();
        const samples = new Int16Array(frameSamples);
        for (let i = 0; i < frameSamples; i++) samples[i] = buf.readInt16LE(at + i * 2);
        frame(samples);
      }
      buf = buf.subarray(at);
      carry = Buffer.from(buf);
    };

    let idle: NodeJS.Timeout | undefined;
    const touch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        stats.idleCloses++;
        end(1011, NET_0001);
      }, idleTimeoutMs);
    };
    let drop: NodeJS.Timeout | undefined;
    const cut = () => {
      if (ended) return;
      ended = true;
      stats.drops++;
      ws.terminate();
    };
    const willDrop =
      (faults.dropAfterMs !== undefined || faults.dropAtAudioMs !== undefined) &&
      (faults.dropConnections ?? Infinity) > 0;
    if (willDrop && faults.dropConnections !== undefined) faults.dropConnections--;
    const dropAtAudioMs = willDrop ? faults.dropAtAudioMs : undefined;
    if (willDrop && faults.dropAfterMs !== undefined) drop = setTimeout(cut, faults.dropAfterMs);
    const end = (code: number, reason: string) => {
      if (ended) return;
      ended = true;
      clearTimeout(idle);
      clearTimeout(drop);
      ws.close(code, reason);
    };

    touch();
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (ended) return;
      touch();
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (isBinary) return audio(buf);
      let msg: { type?: unknown };
      try {
        msg = JSON.parse(buf.toString('utf8')) as { type?: unknown };
      } catch {
        return end(1008, 'DATA-0000: could not parse the text message');
      }
      const nowMs = (samplesSeen * 1000) / sampleRate;
      if (msg.type === 'KeepAlive') {
        record.keepAlives++;
        stats.keepAlives++;
      } else if (msg.type === 'Finalize') {
        stats.finalizes++;
        finalize(nowMs, { speechFinal: false, fromFinalize: true, whole: true });
      } else if (msg.type === 'CloseStream') {
        stats.closeStreams++;
        if (speech) finalize(nowMs, { speechFinal: true, whole: true });
        send({
          type: 'Metadata',
          transaction_key: 'deprecated',
          request_id: requestId,
          sha256: '0'.repeat(64),
          created: new Date().toISOString(),
          duration: nowMs / 1000,
          channels: 1,
        });
        end(1000, '');
      }
    });
    ws.on('close', (code) => {
      clearTimeout(idle);
      clearTimeout(drop);
      ended = true;
      stats.open--;
      sockets.delete(ws);
      record.closedAt = performance.now();
      record.closeCode = code;
    });
    ws.on('error', () => {});
  }

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(0, '127.0.0.1', () => resolve());
  });
  const address = http.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return {
    url: `http://127.0.0.1:${port}`,
    apiKey,
    stats,
    connections,
    faults,
    async close() {
      closing = true;
      for (const t of pendingUpgrades) clearTimeout(t);
      pendingUpgrades.clear();
      for (const ws of sockets) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
