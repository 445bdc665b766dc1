import { randomUUID } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { DestroyReason, SessionStatus, sessionWorkflowId, type SessionView } from '../src/client';
import { createActivities, type Activities } from '../src/activities';
import { devServerEnv, workflowBundle } from './helpers/temporal';
import { makeSession, nanoid, seedApp, startStack, testConfig, testLogger } from './helpers/stack';

const IDLE = 1_000;
const SESSIONS = 60;
// Past the SDK's heartbeat of a workflow task (80 % of its 10 s timeout): a local activity this slow
// had its marker land in a later task than the signals that came while it ran (0.2; not replayable).
const STALL_MS = 9_000;

/**
 * Slow effects (a stalled store) while signals race them, on the dev server in real time: every
 * session still completes its lifecycle, and every history it leaves replays. With 0.2's local
 * activities (src/workflows/effect-runner.ts) most of these histories failed to replay.
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
    // Of every three calls of an effect: one stalls (a store that does not answer), one fails (an
    // outage: the activity is retried), one answers at once.
    // (A close rides on the next of them: the reconnect's connect or the soft destroy.)
    for (const name of ['connectSession', 'softDestroySession'] as const) {
      const effect = real[name].bind(real) as (input: never) => Promise<unknown>;
      let n = 0;
      (acts as Record<string, unknown>)[name] = async (input: never) => {
        switch (n++ % 3) {
          case 0:
            stalled.calls++;
            await new Promise((r) => setTimeout(r, STALL_MS));
            return effect(input);
          case 1:
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
    // Every session's connect and soft destroy (with its close) ran as regular activities.
    expect(durableEffects).toBeGreaterThanOrEqual(2 * SESSIONS);
  });
});
