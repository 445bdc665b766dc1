import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { SessionStatus, gatewayWorkflowId, sessionWorkflowId, type SessionView } from '../src/client';
import { devServerEnv, timeSkippingEnv } from './helpers/temporal';
import { makeSession, seedApp, startStack, testConfig } from './helpers/stack';

const { EventType } = temporal.api.enums.v1;

/** Every run of a workflow chain (continue-as-new), newest first: event counts by type. */
async function chainEvents(env: TestWorkflowEnvironment, workflowId: string) {
  let events = 0;
  const kinds: Record<string, number> = {};
  for (let runId: string | undefined = undefined; ;) {
    const history = await env.client.workflow.getHandle(workflowId, runId).fetchHistory();
    for (const e of history.events ?? []) kinds[String(e.eventType)] = (kinds[String(e.eventType)] ?? 0) + 1;
    events += history.events?.length ?? 0;
    runId = history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
    if (!runId) break;
  }
  return { events, kinds };
}

/**
 * The event budget of docs/design.md, counted on the servers: a lifecycle on the dev server (the
 * state transitions are its own count), a connected hour on the time-skipping server.
 */
describe('session history cost', () => {
  describe('connect → close → destroy (dev server)', () => {
    let env: TestWorkflowEnvironment;
    let stack: Awaited<ReturnType<typeof startStack>>;
    beforeAll(async () => {
      env = await devServerEnv();
      stack = await startStack(env, testConfig({ WS_IDLE_TIMEOUT_MS: '1500' }));
    });
    afterAll(async () => {
      await stack?.stop();
      await env?.teardown();
    });

    it('costs at most 38 history events and 20 state transitions (three effects as regular activities started eagerly, the close recorded by the soft destroy, no patch marker)', async () => {
      const { appPid } = await seedApp(stack.resources);
      const s = makeSession(appPid);
      await stack.client.connected(s);
      await stack.client.disconnected(s);
      const handle = env.client.workflow.getHandle(sessionWorkflowId(s.connectionId));
      const final = (await handle.result()) as SessionView;
      expect(final.status).toBe(SessionStatus.destroyed);
      const d = await handle.describe();
      const transitions = Number(d.raw.workflowExecutionInfo?.stateTransitionCount);
      console.log(`lifecycle: ${d.historyLength} events, ${transitions} state transitions`);
      expect(d.historyLength).toBeLessThanOrEqual(38);
      expect(transitions).toBeLessThanOrEqual(20);
      const history = await handle.fetchHistory();
      const activities = (history.events ?? []).flatMap((e) => {
        const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
        return name ? [name] : [];
      });
      expect(activities).toEqual(['connectSession', 'softDestroySession', 'hardDestroySession']);
      // A run started since 0.4 never asks patched(): no marker, no TemporalChangeVersion upsert.
      const { kinds } = await chainEvents(env, sessionWorkflowId(s.connectionId));
      expect(kinds[EventType.EVENT_TYPE_MARKER_RECORDED] ?? 0).toBe(0);
      // The one upsert left: SessionStatus at the close.
      expect(kinds[EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES]).toBe(1);
    });
  });

  describe('a connected hour (time-skipping)', () => {
    let env: TestWorkflowEnvironment;
    let stack: Awaited<ReturnType<typeof startStack>>;
    const IDLE = 30_000;
    beforeAll(async () => {
      env = await timeSkippingEnv();
      stack = await startStack(env, testConfig({ WS_IDLE_TIMEOUT_MS: String(IDLE) }));
    });
    afterAll(async () => {
      await stack?.stop();
      await env?.teardown();
    });

    it('costs the session at most 40 events an hour at 30 s idle; the lease costs its gateway apart', async () => {
      let clock = await env.currentTimeMs();
      const client = stack.newClient({ now: () => clock });
      const { appPid } = await seedApp(stack.resources);
      const s = makeSession(appPid);
      await client.connected(s, clock);
      const opened = (await chainEvents(env, sessionWorkflowId(s.connectionId))).events;
      for (let t = 0; t < 3_600_000; t += IDLE) {
        await env.sleep(IDLE);
        clock = await env.currentTimeMs();
        await client.tick(); // one lease renewal per idle period, and the heartbeat when due
      }
      const hour = (await chainEvents(env, sessionWorkflowId(s.connectionId))).events - opened;
      const lease = await chainEvents(env, gatewayWorkflowId(client.holder.gatewayId));
      console.log(`connected hour: ${hour} session events; lease: ${lease.events} gateway events`, lease.kinds);
      expect((await client.describe(s.connectionId))!.status).toBe(SessionStatus.connected);
      expect(hour).toBeLessThanOrEqual(40);
      // The lease's own cost is per gateway: about 10 events per renewal (signal, task, refresh
      // activity, task) and its lapse checks, whatever it holds.
      expect(lease.events).toBeLessThanOrEqual(120 * 12);
    });
  });
});
