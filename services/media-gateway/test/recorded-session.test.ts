import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '@va/bus';
import { sessionId, SessionRecording } from '@va/protocol';
import { createLogger } from '@va/telemetry';
import { startNatsServer, type NatsServerHandle } from '@va/testkit';
import { Admission } from '../src/admission.js';
import { runRecordedSession } from '../src/recorded-session.js';
import { type MicSource } from '@va/audio';

/** A microphone that "says" one line: 200 ms of frames, then nothing. */
class OneLineMic implements MicSource {
  readonly utterances = [{ say: 'my card number is 4111 1111', startMs: 0, endMs: 200 }];
  private frames = 10;
  next(frameSamples: number): Int16Array | null {
    return this.frames-- > 0 ? new Int16Array(frameSamples).fill(300) : null;
  }
}

let nats: NatsServerHandle;
let bus: Bus;
const dir = mkdtempSync(join(tmpdir(), 'va-recorded-'));

beforeAll(async () => {
  nats = await startNatsServer();
  // Quiet: no session-context here, so the words run reads no history (a warning that is expected).
  bus = await Bus.connect({
    stage: 'media-gateway',
    servers: nats.url,
    logger: createLogger('media-gateway', {}, 'error'),
  });
});
afterAll(async () => {
  await bus?.drain();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('the recorded session file', () => {
  it('holds the conversation’s words only when asked to (GATEWAY_RECORD_TEXT)', async () => {
    const run = (id: string, recordText: boolean) =>
      runRecordedSession(bus, sessionId(id), new OneLineMic(), {
        sampleRate: 16000,
        outDir: dir,
        recordAudio: false,
        recordText,
        tailMs: 50,
        maxTailMs: 1000,
        // No stage required: this test is about the file (admission has its own test).
        admission: new Admission(bus, { stages: [], openTimeoutMs: 200, log: bus.log }),
        signal: new AbortController().signal,
      });
    await run('rec-quiet', false);
    const quiet = readFileSync(join(dir, 'rec-quiet.session.json'), 'utf8');
    expect(quiet).not.toContain('4111');
    expect(SessionRecording.parse(JSON.parse(quiet))).toMatchObject({
      text: false,
      utterances: [{ say: '', startMs: 0, endMs: 200 }],
      history: [],
    });
    await run('rec-words', true);
    const words = SessionRecording.parse(JSON.parse(readFileSync(join(dir, 'rec-words.session.json'), 'utf8')));
    expect(words).toMatchObject({ text: true, utterances: [{ say: 'my card number is 4111 1111' }] });
  });
});
