import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Browser } from 'playwright-core';
import { readToolPaths } from '../src/dev/environment';
import { SEARCH_ATTRIBUTES } from '../src/contracts/search-attributes';
import { TestWorkflowEnvironment as Env } from '@temporalio/testing';
import { gotoUntilVisible, launchBrowser, listedSessionIds, screenshot } from './helpers/browser';
import { makeSession, nanoid, seedApp, startStack } from './helpers/stack';

/** What an operator does: find a session by search attribute, open it, read its state. */
describe('Temporal Web UI (dev server, headless Chromium)', () => {
  let env: TestWorkflowEnvironment;
  let browser: Browser;
  const uiPort = 20000 + Math.floor(Math.random() * 20000);

  beforeAll(async () => {
    const { temporalCli } = readToolPaths();
    env = await Env.createLocal({
      server: {
        ...(temporalCli ? { executable: { type: 'existing-path', path: temporalCli } } : {}),
        uiPort,
        searchAttributes: [...SEARCH_ATTRIBUTES],
        extraArgs: ['--log-level', 'error'],
      },
    });
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await env?.teardown();
  });

  it('finds a session by AppPid and ClientId, opens it and reads its state from the Queries tab', async () => {
    const stack = await startStack(env);
    try {
      const { appPid } = await seedApp(stack.resources);
      const clientId = `client-${nanoid(6)}`;
      const s = makeSession(appPid, { clientId });
      await stack.client.connected(s);
      await stack.client.connected(makeSession(appPid)); // another session of the app, other client

      const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
      const query = encodeURIComponent(`AppPid="${appPid}" AND ClientId="${clientId}"`);
      const rowLink = page.locator(`a[href*="${encodeURIComponent(`session:${s.connectionId}`)}"]`).first();
      await gotoUntilVisible(page, `http://127.0.0.1:${uiPort}/namespaces/default/workflows?query=${query}`, rowLink);
      const listed = await listedSessionIds(page);
      expect(listed).toEqual([`session:${s.connectionId}`]);

      await rowLink.click();
      await page
        .getByRole('tab', { name: 'Queries' })
        .or(page.getByRole('link', { name: 'Queries' }))
        .first()
        .click();
      await page.getByRole('button', { name: 'Run Query' }).click();
      const result = page.locator('main').getByText('"socketId"').first();
      await result.waitFor({ timeout: 15_000 });
      const text = await page.locator('main').innerText();
      expect(text).toContain(`"status": "connected"`);
      expect(text).toContain(s.socketId);
      await screenshot(page, 'ui-session-query.png');
    } finally {
      await stack.stop();
    }
  });
});
