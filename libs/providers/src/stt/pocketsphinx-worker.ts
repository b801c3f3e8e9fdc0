/**
 * Decoder worker for LocalSTT: pocketsphinx's calls block (model load ≈ 0.3 s, ps_end_utt tens of ms), so they
 * run here and never on the service's event loop. One decoder per worker, loaded once, one stream at a time.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { Decoder } from './pocketsphinx.js';
import { StreamRecognizer } from './recognizer.js';
import { DECODER_SAMPLE_RATE, type DecoderWorkerData, type FromWorker, type ToWorker } from './worker-protocol.js';

if (!parentPort) throw new Error('pocketsphinx-worker must run in a worker thread');
const port: MessagePort = parentPort;
const post = (msg: FromWorker) => port.postMessage(msg);

/**
 * pocketsphinx's VAD reports speech for the first second of a fresh decoder whatever it hears, until its noise
 * estimate settles (measured: speech from 120 ms to 1000 ms on pure noise at any level). Fed to every session's
 * first stream, that second would merge into the first utterance and put its startMs near 0. So the worker opens
 * an utterance and settles the VAD on a little noise before it is ready; from then on the decoder always has an
 * utterance open between streams, and that noise-only stretch never ends an utterance (see recognizer.ts).
 */
const SETTLE_MS = 1500;

function settle(decoder: Decoder): void {
  let seed = 1;
  const noise = new Int16Array((DECODER_SAMPLE_RATE * SETTLE_MS) / 1000).map(() => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return ((seed >>> 16) % 9) - 4; // ±4 LSB
  });
  decoder.startUtterance();
  decoder.process(noise);
}

function loadDecoder(): Decoder | undefined {
  try {
    const started = performance.now();
    const loaded = Decoder.load((workerData as DecoderWorkerData).modelDir);
    settle(loaded);
    post({ type: 'ready', loadMs: performance.now() - started });
    return loaded;
  } catch (err) {
    post({ type: 'error', message: err instanceof Error ? err.message : String(err) });
    port.close(); // nothing else keeps this thread alive: it exits
    return undefined;
  }
}

const decoder = loadDecoder();
let current: { run: number; recognizer: StreamRecognizer } | undefined;

function handle(decoder: Decoder, msg: ToWorker): void {
  if (msg.type === 'close') {
    decoder.free();
    port.close(); // nothing else keeps this thread alive: it exits
    return;
  }
  if (msg.type === 'start') {
    current?.recognizer.abort();
    const run = msg.run;
    current = { run, recognizer: new StreamRecognizer(decoder, (event) => post({ type: 'event', run, event })) };
    return;
  }
  // Messages of a run that is no longer current (already ended or aborted) are dropped.
  if (current?.run !== msg.run) {
    if (msg.type === 'audio') post({ type: 'consumed', run: msg.run });
    else post({ type: 'done', run: msg.run });
    return;
  }
  switch (msg.type) {
    case 'audio':
      current.recognizer.push(msg.samples, msg.startMs, msg.endMs);
      post({ type: 'consumed', run: msg.run });
      break;
    case 'end':
    case 'abort':
      if (msg.type === 'end') current.recognizer.finish();
      else current.recognizer.abort();
      current = undefined;
      post({ type: 'done', run: msg.run });
      break;
  }
}

if (decoder)
  port.on('message', (msg: ToWorker) => {
    try {
      handle(decoder, msg);
    } catch (err) {
      // The decoder's state is unknown after a failed call: report it, and LocalSTT replaces this worker.
      post({ type: 'error', message: err instanceof Error ? err.message : String(err) });
    }
  });
