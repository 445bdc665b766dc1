import { randomUUID } from 'node:crypto';
import { temporal } from '@temporalio/proto';
import type { Client } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { SessionClient, SessionStatus, gatewayWorkflowId, sessionWorkflowId, type SessionView } from '../src/client';
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

async function waitForReconnect(client: SessionClient, connectionId: string): Promise<void> {
  for (const until = Date.now() + 20_000; Date.now() < until;) {
    const st = await client.describe(connectionId);
    if (st?.counts.reconnects === 1 && st.holder.gatewayId === client.holder.gatewayId) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${connectionId}: the reconnect never reached the session`);
}

/** The real client, recording which workflow calls reach the server. */
function recordingClient(client: Client, calls: string[]): Client {
  const pass = (target: object, prop: string | symbol) => {
    const value: unknown = Reflect.get(target, prop, target);
    return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
  };
  const recorded = <T extends object>(target: T, names: string[]): T =>
    new Proxy(target, {
      get(t, prop) {
        const value = pass(t, prop);
        if (typeof prop !== 'string' || !names.includes(prop) || typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          calls.push(prop);
          return (value as (...a: unknown[]) => unknown)(...args);
        };
      },
    });
  const starts = recorded(client.workflow, ['start', 'signalWithStart']);
  const workflow = new Proxy(starts, {
    get: (t, prop) =>
      prop === 'getHandle'
        ? (...args: Parameters<Client['workflow']['getHandle']>) =>
            recorded(client.workflow.getHandle(...args), ['describe', 'signal', 'query', 'result'])
        : (Reflect.get(t, prop) as unknown),
  });
  return new Proxy(client, { get: (t, prop) => (prop === 'workflow' ? workflow : pass(t, prop)) });
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
      // The one upsert left: SessionStatus when the close's grace ended.
      expect(kinds[EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES]).toBe(1);
    });

    it('a close and a reconnect within the grace write no SessionStatus; the close that outlives its grace writes it once, after the soft destroy', async () => {
      const { appPid } = await seedApp(stack.resources);
      const s = makeSession(appPid);
      await stack.client.connected(s);
      await stack.client.disconnected(s);
      const again = { ...s, socketId: randomUUID() };
      await stack.client.connected(again);
      for (const until = Date.now() + 10_000; ;) {
        const st = await stack.client.describe(s.connectionId);
        if (st?.socketId === again.socketId && st.status === SessionStatus.connected) break;
        if (Date.now() > until) throw new Error('the reconnect never reached the session');
        await new Promise((r) => setTimeout(r, 50));
      }
      await stack.client.disconnected(again);
      const handle = env.client.workflow.getHandle(sessionWorkflowId(s.connectionId));
      expect(((await handle.result()) as SessionView).counts.reconnects).toBe(1);
      const events = (await handle.fetchHistory()).events ?? [];
      const upserts = events.flatMap((e, i) => (e.upsertWorkflowSearchAttributesEventAttributes ? [i] : []));
      const softDestroy = events.findIndex(
        (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'softDestroySession',
      );
      expect(upserts).toHaveLength(1);
      expect(softDestroy).toBeGreaterThan(0);
      expect(upserts[0]).toBeGreaterThan(softDestroy);
    });
  });

  describe('connected() calls (dev server)', () => {
    let env: TestWorkflowEnvironment;
    let stack: Awaited<ReturnType<typeof startStack>>;
    beforeAll(async () => {
      env = await devServerEnv();
      stack = await startStack(env, testConfig());
    });
    afterAll(async () => {
      await stack?.stop();
      await env?.teardown();
    });

    it('a reconnect through another gateway costs the server a read and a signal, no refused start; a first connect a read and a start', async () => {
      const { appPid } = await seedApp(stack.resources);
      const s = makeSession(appPid);
      const calls = (gatewayId: string) => {
        const made: string[] = [];
        const client = new SessionClient(recordingClient(env.client, made), {
          taskQueue: stack.taskQueue,
          idleTimeoutMs: stack.config.idleTimeoutMs,
          gatewayId,
          autoTick: false,
        });
        return { client, made };
      };
      const first = calls('gw-cost-a');
      const second = calls('gw-cost-b');
      try {
        // The lease's own calls (its signal-with-start) come first, once per process.
        await first.client.connected(s);
        expect(first.made).toEqual(['signalWithStart', 'describe', 'start']);
        await second.client.connected({ ...s, socketId: randomUUID() });
        expect(second.made).toEqual(['signalWithStart', 'describe', 'signalWithStart']);
        await waitForReconnect(second.client, s.connectionId);
      } finally {
        await first.client.close();
        await second.client.close();
      }
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
