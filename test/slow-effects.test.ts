import { randomUUID } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { DestroyReason, SessionStatus, sessionWorkflowId, type SessionView } from '../src/client';
import { createActivities, type Activities } from '../src/activities';
import { withinLocalBudget } from '../src/activities/local-attempt';
import { devServerEnv, workflowBundle } from './helpers/temporal';
import { makeSession, nanoid, seedApp, startStack, testConfig, testLogger } from './helpers/stack';

const IDLE = 1_000;
const SESSIONS = 60;
// Past the SDK's heartbeat of a workflow task (80 % of its 10 s timeout): without a bound, the
// local activity's marker would land in a later task than the signals that came while it ran.
const STALL_MS = 9_000;

/**
 * Slow effects (a stalled store) while signals race them, on the dev server in real time: every
 * session still completes its lifecycle, and every history it leaves replays. Without the local
 * activities' bound (src/workflows/effect-runner.ts) most of these histories fail to replay.
 */
describe('slow effects and racing signals (dev server)', () => {
  let env: TestWorkflowEnvironment;
  let stack: Awaited<ReturnType<typeof startStack>>;
  let worker: Worker;
  let running: Promise<void>;
  let taskQueue: string;
  const stalled = { calls: 0 };

  beforeAll(async () => {
    env = await devServerEnv();
    stack = await startStack(env, testConfig({ WS_IDLE_TIMEOUT_MS: String(IDLE) }));
    taskQueue = `slow-${stack.taskQueue}`;
    const real = createActivities({
      ...stack.resources,
      config: stack.config,
      logger: testLogger,
      temporal: env.client,
      taskQueue,
    });
    const acts: Activities = { ...real };
    // Of every four calls of an effect that may run locally: one stalls before the effect's own
    // budget starts (the SDK's timeout ends the local attempt), one stalls inside it (the effect
    // answers NotLanded), one fails (an outage: NotLanded, or a retry of the regular activity), one
    // answers at once.
    for (const name of ['connectSession', 'closeSession', 'softDestroySession'] as const) {
      const effect = real[name].bind(real) as (input: never) => Promise<unknown>;
      const stall = () => new Promise((r) => setTimeout(r, STALL_MS));
      const inside = withinLocalBudget(async (input: never) => {
        await stall();
        return effect(input);
      });
      let n = 0;
      (acts as Record<string, unknown>)[name] = async (input: never) => {
        switch (n++ % 4) {
          case 0:
            stalled.calls++;
            await stall();
            return effect(input);
          case 1:
            stalled.calls++;
            return inside(input);
          case 2:
            stalled.calls++;
            throw new Error('store unavailable');
          default:
            return effect(input);
        }
      };
    }
    worker = await Worker.create({
      connection: env.nativeConnection,
      namespace: env.namespace ?? 'default',
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: acts,
      maxConcurrentLocalActivityExecutions: 4 * SESSIONS,
      maxConcurrentActivityTaskExecutions: 4 * SESSIONS,
    });
    running = worker.run();
  });
  afterAll(async () => {
    worker?.shutdown();
    await running;
    await stack?.stop();
    await env?.teardown();
  });

  it('a close and a reconnect racing stalled effects: every session destroyed, every history replays', async () => {
    const { appPid } = await seedApp(stack.resources);
    const client = stack.newClient({ taskQueue, gatewayId: `slow-${nanoid(6)}`, autoTick: true });
    const lifecycle = async (i: number) => {
      const first = makeSession(appPid);
      const second = { ...first, socketId: randomUUID() };
      await client.connected(first);
      // The old socket's close and the new socket's open reach the workflow in either order.
      if (i % 2 === 0) await Promise.all([client.disconnected(first), client.connected(second)]);
      else await Promise.all([client.connected(second), client.disconnected(first)]);
      await client.disconnected(second);
      return first.connectionId;
    };
    const ids = await Promise.all(Array.from({ length: SESSIONS }, (_, i) => lifecycle(i)));
    const views = await Promise.all(
      ids.map((id) => env.client.workflow.getHandle(sessionWorkflowId(id)).result() as Promise<SessionView>),
    );
    for (const view of views) {
      expect(view.status).toBe(SessionStatus.destroyed);
      expect(view.destroyReason).toBe(DestroyReason.closed);
    }
    expect(stalled.calls).toBeGreaterThan(SESSIONS);

    const bundle = await workflowBundle();
    const failures: string[] = [];
    let durableEffects = 0;
    for (const id of ids) {
      const history = await env.client.workflow.getHandle(sessionWorkflowId(id)).fetchHistory();
      durableEffects += (history.events ?? []).filter(
        (e) =>
          e.activityTaskScheduledEventAttributes?.activityType?.name !== 'hardDestroySession' &&
          e.activityTaskScheduledEventAttributes,
      ).length;
      try {
        await Worker.runReplayHistory({ workflowBundle: bundle }, history, sessionWorkflowId(id));
      } catch (err) {
        failures.push(`${id}: ${String(err).slice(0, 200)}`);
      }
    }
    expect(failures).toEqual([]);
    // The stalled local attempts were run again as regular activities.
    expect(durableEffects).toBeGreaterThan(0);
  });
});
