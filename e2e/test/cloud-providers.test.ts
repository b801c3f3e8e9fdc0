import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ATTR, SPAN } from '@va/telemetry';
import { runConversation } from '@va/e2e';
import { startDeepgramServer, type DeepgramServer } from '@va/testkit';
import { startElevenLabsServer, type ElevenLabsServer } from '@va/testkit';
import { findLeaks, privateFragments } from './privacy.js';

// The cloud adapters in the real pipeline (seven processes), each against a local server that speaks its
// provider's wire protocol: what `npm run demo -- --providers cloud` does with real keys, minus the internet.
const SAID = ['what is the weather like today', 'thank you very much'];
const SCRIPT = { turns: SAID.map((say) => ({ say, pauseMs: 700 })) };
// Distinctive keys, so a leak into any log line or span cannot hide behind a common string.
const secret = (prefix: string) => `${prefix}-PRIVACY-${randomBytes(8).toString('hex')}`;
const KEYS = { deepgram: secret('dg-test'), elevenlabs: secret('xi-test'), llm: secret('sk-test') };

let deepgram: DeepgramServer;
let elevenlabs: ElevenLabsServer;
beforeAll(async () => {
  deepgram = await startDeepgramServer({ texts: SAID, textScope: 'server', apiKey: KEYS.deepgram });
  elevenlabs = await startElevenLabsServer({ lifetimeMs: 240_000, apiKey: KEYS.elevenlabs });
});
afterAll(async () => {
  await deepgram?.close();
  await elevenlabs?.close();
});

describe('cloud providers in the pipeline (local protocol servers)', () => {
  it('hears through Deepgram, speaks through ElevenLabs, and the spans name them', async () => {
    const { report, summary, spans, stages } = await runConversation({
      script: SCRIPT,
      outDir: join(tmpdir(), `va-cloud-${process.pid}`),
      llmTtftMs: 100,
      llmTokensPerSecond: 80,
      env: {
        STT_PROVIDER: 'deepgram',
        DEEPGRAM_API_KEY: deepgram.apiKey,
        DEEPGRAM_BASE_URL: deepgram.url,
        TTS_PROVIDER: 'elevenlabs',
        ELEVENLABS_API_KEY: elevenlabs.apiKey,
        ELEVENLABS_BASE_URL: elevenlabs.url,
        // The local LLM servers take any key: the responders and summaries send this one.
        LLM_API_KEY: KEYS.llm,
      },
    });
    expect(report.turns.map((t) => t.transcript)).toEqual(SAID);
    for (const turn of report.turns) {
      expect(turn.opener.length + turn.answer.length).toBeGreaterThan(0);
      expect(summary.segments.some((s) => s.turnId === turn.turnId)).toBe(true);
      const mine = spans.filter((s) => s.traceId === turn.traceId);
      expect(mine.find((s) => s.name === SPAN.sttTranscribe)?.attributes[ATTR.provider]).toBe('deepgram');
      expect(mine.filter((s) => s.name === SPAN.ttsSynthesize).map((s) => s.attributes[ATTR.provider])).toContain(
        'elevenlabs',
      );
    }
    // Keys stay out of traces and logs, and so does what was said (VA_TRACE_TEXT is not set).
    expect(deepgram.apiKey).toBe(KEYS.deepgram);
    expect(elevenlabs.apiKey).toBe(KEYS.elevenlabs);
    const fragments =
      process.env.VA_TRACE_TEXT === '1'
        ? []
        : privateFragments(
            SAID,
            report.turns.flatMap((t) => [t.opener, t.answer]),
          );
    expect(findLeaks({ fragments, secrets: Object.values(KEYS), stages, spans })).toEqual([]);
  }, 240_000);
});
