import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { writeWav } from '@va/audio';
import { utterances, type Turn } from '@va/testkit';

/** Debian's `chromium` (bootstrap installs it for the tests); playwright-core never downloads a browser. */
const CHROMIUM = '/usr/bin/chromium';

/**
 * The flags DESIGN.md §9 allows (no background networking on a closed network), the fake microphone playing
 * `wav` once, and what playwright needs to drive it: a fresh profile and the DevTools pipe. Nothing else:
 * playwright's own default flags are not used.
 */
function chromiumArgs(wav: string, profile: string): string[] {
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${wav}%noloop`,
    `--user-data-dir=${profile}`,
    '--remote-debugging-pipe',
  ];
}

/** Headless Chromium whose microphone says `script` (synthesized here, 48 kHz as a sound card gives it). */
export async function talkPageBrowser(work: string, script: Turn[]): Promise<{ browser: Browser; page: Page }> {
  const wav = join(work, 'mic.wav');
  await writeFile(wav, writeWav(await utterances(script, { sampleRate: 48_000 })));
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    ignoreDefaultArgs: true,
    args: chromiumArgs(wav, join(work, 'profile')),
    timeout: 30_000,
  });
  return { browser, page: await browser.newPage() };
}
