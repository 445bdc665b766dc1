import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';

/** Debian's Chromium (scripts/browser.sh), driven by playwright-core: no browser download. */
export const CHROMIUM = '/usr/bin/chromium';
/** Screenshots of the UI tests (git-ignored). */
export const SHOTS = path.resolve(__dirname, '../../test-results');
// Flags for a closed network: without them Chromium keeps dialling Google's services.
const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: run 'npm run setup -- --browser' (installs Debian's chromium)`);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS });
}

/**
 * Visibility is eventually consistent: (re)load `url` until `target` shows, at most `tries` times,
 * waiting `waitMs` after each load (the page itself renders slowly on a loaded machine).
 */
export async function gotoUntilVisible(
  page: Page,
  url: string,
  target: Locator,
  // Visibility is eventually consistent; under a loaded machine the dev server's list lags by tens of seconds.
  { tries = 40, waitMs = 1500 }: { tries?: number; waitMs?: number } = {},
): Promise<void> {
  for (let i = 0; i < tries && !(await target.isVisible()); i++) {
    await page.goto(url);
    await target.waitFor({ timeout: waitMs }).catch(() => undefined);
  }
}

/** The workflow ids of the session rows the workflow list shows. */
export function listedSessionIds(page: Page): Promise<string[]> {
  return page
    .locator('a[href*="/workflows/session%3A"]')
    .evaluateAll((as) => [
      ...new Set(
        as.map((a) => decodeURIComponent((a as unknown as { pathname: string }).pathname.split('/')[4] ?? '')),
      ),
    ]);
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, name), fullPage: true });
}
