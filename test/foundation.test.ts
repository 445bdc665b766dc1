import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { SessionStatus, sessionWorkflowId } from '../src/client';
import { devServerEnv, timeSkippingEnv } from './helpers/temporal';
import { makeSession, seedApp, startStack, testConfig } from './helpers/stack';

describe('time-skipping test server (Java, from Maven Central)', () => {
  let env: TestWorkflowEnvironment;
  beforeAll(async () => {
    env = await timeSkippingEnv();
  });
  afterAll(async () => {
    await env?.teardown();
  });

  it('runs a full day of workflow time in seconds: a session closed with a 6 h idle is destroyed 24 h later', async () => {
    const stack = await startStack(env, testConfig({ WS_IDLE_TIMEOUT_MS: String(6 * 3600_000) }));
    try {
      const { appPid } = await seedApp(stack.resources);
      const session = makeSession(appPid);
      const wallStart = Date.now();
      await stack.client.connected(session);
      await stack.client.disconnected(session);
      const handle = env.client.workflow.getHandle(sessionWorkflowId(session.connectionId));
      const before = await env.currentTimeMs();
      const final = await handle.result();
      const skipped = (await env.currentTimeMs()) - before;
      expect(final.status).toBe(SessionStatus.destroyed);
      expect(skipped).toBeGreaterThanOrEqual(24 * 3600_000);
      expect(Date.now() - wallStart).toBeLessThan(60_000);
    } finally {
      await stack.stop();
    }
  });
});

describe('dev server (Temporal CLI, from the Go module proxy)', () => {
  let env: TestWorkflowEnvironment;
  beforeAll(async () => {
    env = await devServerEnv();
  });
  afterAll(async () => {
    await env?.teardown();
  });

  it('runs a session workflow and lists it by the registered search attributes', async () => {
    const stack = await startStack(env);
    try {
      const { appPid } = await seedApp(stack.resources);
      const session = makeSession(appPid);
      await stack.client.connected(session);
      let found: string[] = [];
      for (let i = 0; i < 50 && found.length === 0; i++) {
        found = [];
        for await (const wf of env.client.workflow.list({
          query: `AppPid = "${appPid}" AND SessionStatus = "connected"`,
        })) {
          found.push(wf.workflowId);
        }
        if (found.length === 0) await new Promise((r) => setTimeout(r, 200));
      }
      expect(found).toEqual([sessionWorkflowId(session.connectionId)]);
      const state = await stack.client.describe(session.connectionId);
      expect(state?.status).toBe(SessionStatus.connected);
    } finally {
      await stack.stop();
    }
  });
});
