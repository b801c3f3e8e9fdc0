/** Debian's `chromium` (bootstrap installs it for the tests); playwright-core never downloads a browser. */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * The flags DESIGN.md §9 allows (no background networking on a closed network), the fake microphone playing
 * `wav` once, and what playwright needs to drive it: a fresh profile and the DevTools pipe. Nothing else:
 * playwright's own default flags are not used.
 */
export function chromiumArgs(wav: string, profile: string): string[] {
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
