import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startPipeline,
  startReverseProxy,
  startWebGateway,
  type Pipeline,
  type ReverseProxy,
  type RunningGateway,
} from '@va/e2e';
import { wordAccuracy } from '@va/testkit';
import { talkPageBrowser } from './talk-page.js';

/** This package's test output folder (git-ignored). */
const OUT_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'test-output');
const FIRST = 'the weather is nice today';
const SECOND = 'set an alarm for seven in the morning';
/** Both gateways sign and check resume tokens with it. */
const SECRET = 'failover-test-secret-0123456789';

declare const talkPage: { sessionId?: string; resumes?: number; stats: { agentMsPlayed: number } };

// Two gateway processes behind Debian's nginx (deploy/nginx/voice-agent.conf), the real talk page in headless
// Chromium: the gateway serving the call is killed (-9) while the agent answers; the page reconnects through
// nginx to the other, presents its resume token, and the conversation goes on in the same session.
describe('the talk page survives the death of its gateway', () => {
  let pipeline: Pipeline | undefined;
  const gateways: RunningGateway[] = [];
  let proxy: ReverseProxy | undefined;
  let browser: Browser | undefined;
  let page: Page | undefined;
  let work: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'va-failover-'));
    pipeline = await startPipeline({ llmTtftMs: 100, llmTokensPerSecond: 20, maxLifetimeSec: 300 });
    const env = { GATEWAY_RESUME_SECRET: SECRET, GATEWAY_WEB_TRUST_PROXY: '1' };
    for (let i = 0; i < 2; i++) gateways.push(await startWebGateway(pipeline, { port: 0, maxLifetimeSec: 300, env }));
    proxy = await startReverseProxy(
      gateways.map((g) => new URL(g.url).host),
      300,
    );
    // The fake microphone: a lead-in, the first question, quiet while the agent answers (the gateway dies in it),
    // the second, then quiet.
    ({ browser, page } = await talkPageBrowser(work, [
      { say: '', pauseMs: 500 },
      { say: FIRST, pauseMs: 9000 },
      { say: SECOND, pauseMs: 15_000 },
    ]));
  }, 120_000);

  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    await proxy?.stop();
    await Promise.all(gateways.map((g) => g.stop()));
    await pipeline?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  }, 60_000);

  it('kill -9 of the serving gateway mid-answer: the page resumes its session on the other, and the next turn is answered', async () => {
    const p = page!;
    await p.goto(`${proxy!.url}/?processing=off`);
    await p.click('#start');
    await p.waitForSelector('#status:has-text("Connected")', { timeout: 20_000 });
    const sessionId = await p.evaluate(() => talkPage.sessionId);
    expect(sessionId).toMatch(/^web-/);

    // Which instance serves the call: the one that opened the session.
    const serving = await Promise.race(
      gateways.map((g, i) => g.child.waitForJson((l) => l.msg === 'session opened', 20_000).then(() => i)),
    );
    const survivor = gateways[1 - serving]!;

    // The first answer is playing: kill its gateway.
    await p.waitForFunction(() => talkPage.stats.agentMsPlayed > 300, undefined, { timeout: 60_000 });
    const killedAt = Date.now();
    process.kill(gateways[serving]!.child.pid, 'SIGKILL');

    // The page comes back to the same session through the other instance.
    const resumed = await survivor.child.waitForJson<{ time: number }>(
      (l) => l.msg === 'session resumed' && l.sessionId === sessionId,
      20_000,
    );
    // How long the call was without a gateway (README, Reliability): written beside the other test outputs.
    await mkdir(OUT_DIR, { recursive: true });
    await writeFile(join(OUT_DIR, 'failover.json'), JSON.stringify({ resumedAfterMs: resumed.time - killedAt }) + '\n');
    await p.waitForFunction(() => talkPage.resumes === 1, undefined, { timeout: 20_000 });
    expect(await p.evaluate(() => talkPage.sessionId)).toBe(sessionId);

    // The rest of the first answer — what the dead gateway held unplayed — is asked of tts again from what was
    // heard, and played to its end by the survivor.
    const asked = await survivor.child.waitForJson<{
      turnId: string;
      replaying: boolean;
      heardTo: { fast: number; deep: number };
    }>((l) => l.msg === 'answer in flight asked again', 20_000);
    expect(asked.replaying).toBe(true);
    expect(asked.heardTo.fast + asked.heardTo.deep, 'what was heard before the kill').toBeGreaterThan(0);
    const played = await survivor.child.waitForJson<{ interrupted: boolean; playedMs: number }>(
      (l) => l.msg === 'turn played' && l.turnId === asked.turnId,
      60_000,
    );
    expect(played.interrupted).toBe(false);
    expect(played.playedMs).toBeGreaterThan(0);

    // The second question is heard and answered in that session.
    const second = p.locator('.turn.you:not(.partial)').nth(1);
    await second.waitFor({ timeout: 60_000 });
    expect(wordAccuracy(SECOND, await second.innerText())).toBeGreaterThanOrEqual(0.5);
    // The agent's line below it gets its answer, played in full (its trace link comes last).
    // (A string: it runs in the page, whose DOM this file's types do not describe.)
    await p.waitForFunction(
      `(() => {
        const lines = [...document.querySelectorAll('#log > .turn')];
        const you = lines.filter((l) => l.classList.contains('you') && !l.classList.contains('partial'));
        const after = lines.slice(lines.indexOf(you[1]) + 1);
        return you.length >= 2 && after.some((l) => l.classList.contains('agent') && l.querySelector('.trace'));
      })()`,
      undefined,
      { timeout: 60_000 },
    );
    const answers = await p.locator('.turn.agent .answer').allInnerTexts();
    expect(answers[answers.length - 1]!.trim().length).toBeGreaterThan(0);
    // The survivor now holds the session: nothing closed it.
    expect(survivor.child.lines.some((l) => l.includes('"session closed"'))).toBe(false);
  }, 240_000);
});
