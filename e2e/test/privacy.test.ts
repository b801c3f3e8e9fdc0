import { describe, expect, it } from 'vitest';
import type { RunningStage } from '@va/e2e';
import type { ChildHandle, ReceivedSpan } from '@va/testkit';
import { findLeaks, normalise, privateFragments } from './privacy.js';

// The leak finder the e2e and cloud tests rely on: it must find text however it was embedded, and only then.
const stage = (name: string, lines: string[]): RunningStage => ({
  stage: name,
  pid: 1,
  child: { lines, stderr: [] } as unknown as ChildHandle,
});
const span = (attributes: ReceivedSpan['attributes']): ReceivedSpan => ({
  traceId: 't',
  spanId: 's',
  name: 'stt.transcribe',
  serviceName: 'stt',
  resource: {},
  attributes,
  startMs: 0,
  endMs: 1,
  durationMs: 1,
  events: [],
  links: [],
});

describe('the privacy scan', () => {
  const fragments = privateFragments(
    ['I would like to go hiking with my two children'],
    ['Let me check that for you. Hiking with kids is fun!'],
  );

  it('takes whole sentences and the user’s long words', () => {
    expect(normalise('  Hiking, with "kids"! ')).toBe('hiking with kids');
    expect(fragments).toEqual([
      'i would like to go hiking with my two children',
      'let me check that for you',
      'hiking with kids is fun',
      'hiking',
      'children',
    ]);
  });

  it('finds them in JSON log lines and span attributes, and secrets verbatim, hiding the secret it reports', () => {
    const leaks = findLeaks({
      fragments,
      secrets: ['sk-test-PRIVACY-1'],
      stages: [
        stage('tts', [
          '{"level":30,"msg":"session claimed","sessionId":"s-1"}',
          '{"level":30,"text":"Hiking with kids is fun!","msg":"speaking"}',
          '{"level":50,"err":{"message":"401 for key sk-test-PRIVACY-1"}}',
        ]),
      ],
      spans: [span({ 'va.text': 'The CHILDREN were there' }), span({ 'va.stage': 'stt' })],
    });
    expect(leaks.map((l) => [l.where, l.what])).toEqual([
      ['tts log line 2', 'hiking with kids is fun'],
      ['tts log line 2', 'hiking'],
      ['tts log line 3', 'a secret'],
      ['span stt/stt.transcribe', 'children'],
    ]);
    expect(leaks[2]!.excerpt).toContain('<secret>');
    expect(leaks[2]!.excerpt).not.toContain('sk-test-PRIVACY-1');
  });

  it('matches whole words only', () => {
    expect(findLeaks({ fragments: ['hiking'], stages: [stage('x', ['"msg":"hikingboots"'])], spans: [] })).toEqual([]);
  });
});
