import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPipeline, startWebGateway, type Pipeline, type RunningGateway } from '@va/e2e';
import { STAGES } from '@va/protocol';
import { SPAN } from '@va/telemetry';
import { wordAccuracy } from '@va/testkit';
import { talkPageBrowser } from './talk-page.js';

/** Where the screenshot goes: this package's test output folder (git-ignored). */
const OUT_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'test-output');
const SAID = 'the weather is nice today';

/** What the talk page counts of the agent audio it played (`window.talkPage.stats`; runs in the page). */
interface PlayedStats {
  agentFramesPlayed: number;
  agentMsPlayed: number;
  agentPeak: number;
}
declare const talkPage: { stats: PlayedStats };

describe('the talk page in headless Chromium', () => {
  let pipeline: Pipeline | undefined;
  let gateway: RunningGateway | undefined;
  let browser: Browser | undefined;
  let page: Page | undefined;
  let work: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'va-browser-'));
    pipeline = await startPipeline({ llmTtftMs: 100, llmTokensPerSecond: 80, maxLifetimeSec: 300 });
    gateway = await startWebGateway(pipeline, { port: 0, maxLifetimeSec: 300 });
    // The fake microphone: a lead-in while the page connects, the sentence, then quiet while the agent answers.
    ({ browser, page } = await talkPageBrowser(work, [
      { say: '', pauseMs: 500 },
      { say: SAID, pauseMs: 12_000 },
    ]));
  }, 120_000);

  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    await gateway?.stop();
    await pipeline?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  }, 60_000);

  it('hears the microphone, shows the transcript and both replies, plays the agent, and traces the turn across all seven services', async () => {
    const p = page!;
    const consoleErrors: string[] = [];
    p.on('console', (m) => (m.type() === 'error' ? consoleErrors.push(m.text()) : undefined));
    p.on('pageerror', (err) => consoleErrors.push(String(err)));

    // The recording as the microphone, untouched by the browser's voice processing.
    await p.goto(`${gateway!.url}/?processing=off`);
    await p.click('#start');
    await p.waitForSelector('#status:has-text("Connected")', { timeout: 20_000 });

    // What the page shows: the user's words, then (below them) the agent's turn with its latency and trace id.
    const you = p.locator('.turn.you:not(.partial)').first();
    await you.waitFor({ timeout: 30_000 });
    expect(wordAccuracy(SAID, await you.innerText())).toBeGreaterThanOrEqual(0.6);
    expect(await p.locator('#log > .turn').first().getAttribute('class')).toContain('you');
    // The agent's turn that played (a preview dropped before it was committed leaves no line).
    const agent = p.locator('.turn.agent').first();
    // The turn's line is complete once its whole answer has played (up to ~20 s of speech; slower on a busy CI box).
    await agent.locator('.trace').waitFor({ timeout: 75_000 });
    const opener = await agent.locator('.opener').innerText();
    const answer = await agent.locator('.answer').innerText();
    expect(opener.trim().length).toBeGreaterThan(0);
    expect(answer.trim().length).toBeGreaterThan(0);
    expect(await agent.locator('.e2e').innerText()).toMatch(/answered \d+ ms after you stopped/);
    const steps = await agent
      .locator('.breakdown li')
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-step')));
    expect([...steps].sort()).toEqual(['answerAudioMs', 'audioReadyMs', 'playedMs', 'turnEndMs']);
    const traceId = (await agent.locator('.trace').innerText()).replace(/^trace /, '');
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);

    // The agent's voice came back over the socket and the page's AudioContext played it to the end.
    await p.waitForFunction(() => talkPage.stats.agentMsPlayed > 1000, undefined, { timeout: 30_000 });
    const stats = await p.evaluate(() => talkPage.stats);
    expect(stats.agentFramesPlayed).toBeGreaterThan(50);
    expect(stats.agentPeak).toBeGreaterThan(0.05); // speech, not comfort noise

    await mkdir(OUT_DIR, { recursive: true });
    await p.screenshot({ path: join(OUT_DIR, 'talk-page.png'), fullPage: true });

    // One trace for the turn, with spans from every stage's process.
    const spans = await pipeline!.otlp.waitForSpans(
      (all) => new Set(all.filter((s) => s.traceId === traceId).map((s) => s.serviceName)).size === STAGES.length,
      15_000,
    );
    const turnSpans = spans.filter((s) => s.traceId === traceId);
    expect(new Set(turnSpans.map((s) => s.serviceName))).toEqual(new Set(STAGES));
    expect(turnSpans.filter((s) => s.name === SPAN.turn)).toHaveLength(1);
    expect(consoleErrors).toEqual([]);

    // Stop: the socket closes and the gateway closes the session.
    await p.click('#stop');
    await p.waitForSelector('#status:has-text("Stopped")');
    await gateway!.child.waitForJson((l) => l.msg === 'session closed', 10_000);
  }, 180_000);
});
