import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { SessionStatus, sessionWorkflowId } from '../src/client';
import { timeSkippingEnv } from './helpers/temporal';
import { makeSession, seedApp, startStack, testConfig } from './helpers/stack';

const IDLE = 30_000;

/**
 * History cost of one connected session-hour at one pong per 30 s. The naive design (a signal, an
 * activity and a timer re-armed per pong) costs about 120 × 12 = 1,440 events. Forwarding every
 * other pong (10 events each: signal, two workflow tasks, the mark-live activity) and one liveness
 * timer that fires and is re-armed about once a minute (5 events) cost about 900 an hour plus the
 * close and destroy. Cheaper designs (a local activity, moving the timer by cancelling it) diverged
 * on replay after worker restarts in the failure suite; correctness first.
 */
describe('session history cost', () => {
  let env: TestWorkflowEnvironment;
  beforeAll(async () => {
    env = await timeSkippingEnv();
  });
  afterAll(async () => {
    await env?.teardown();
  });

  it('a one-hour session at 30 s pongs, then close and destroy, stays under 1,000 history events', async () => {
    const stack = await startStack(env, testConfig({ WS_IDLE_TIMEOUT_MS: String(IDLE) }));
    try {
      const { appPid } = await seedApp(stack.resources);
      const s = makeSession(appPid);
      await stack.client.connected(s, await env.currentTimeMs());
      for (let t = 0; t < 3600_000; t += IDLE) {
        await env.sleep(IDLE);
        await stack.client.heartbeat(s.connectionId, await env.currentTimeMs());
      }
      await stack.client.disconnected(s, await env.currentTimeMs());
      const handle = env.client.workflow.getHandle(sessionWorkflowId(s.connectionId));
      const final = await handle.result();
      expect(final.status).toBe(SessionStatus.destroyed);
      // Every run of the chain (a session continues as new at about an hour).
      let events = 0;
      const kinds: Record<string, number> = {};
      for (let runId: string | undefined = undefined; ;) {
        const history = await env.client.workflow.getHandle(sessionWorkflowId(s.connectionId), runId).fetchHistory();
        for (const e of history.events ?? []) kinds[String(e.eventType)] = (kinds[String(e.eventType)] ?? 0) + 1;
        events += history.events?.length ?? 0;
        runId = history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
        if (!runId) break;
      }
      console.log(JSON.stringify(kinds));
      console.log(`history events for a 1 h session at 30 s pongs, close and destroy: ${events}`);
      expect(final.counts.continuedAsNew).toBeLessThanOrEqual(1);
      expect(events).toBeLessThan(1_000);
    } finally {
      await stack.stop();
    }
  });
});
