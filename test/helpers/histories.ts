import { randomUUID } from 'node:crypto';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import {
  SessionStatus,
  gatewayWorkflowId,
  sessionWorkflowId,
  type SessionClient,
  type SessionView,
} from '../../src/client';
import { HEARTBEAT_KEY } from '../../src/stores/redis/keys';
import { activeSignal, disconnectedSignal, heartbeatSignal } from '../../src/contracts/session';
import { userWorkflowId } from '../../src/contracts/user';
import { makeSession, seedApp, seedUser, type startStack } from './stack';

export interface RecordedHistory {
  /** File name stem: what the history exercises. */
  name: string;
  workflowId: string;
  /** The history, protobuf-encoded (exact, and free of the SDK's JSON helpers' protobufjs copies). */
  bytes: Uint8Array;
}

type Stack = Awaited<ReturnType<typeof startStack>>;

/**
 * Runs one session through every branch of the workflow code on the time-skipping server and
 * returns the histories: the fixtures of test/replay.test.ts (`npm run record-histories`).
 */
export async function recordHistories(env: TestWorkflowEnvironment, stack: Stack): Promise<RecordedHistory[]> {
  const idle = stack.config.idleTimeoutMs;
  const { appPid } = await seedApp(stack.resources);
  const now = () => env.currentTimeMs();
  // A heartbeat every idle period and a low continue-as-new threshold, so one short run covers both
  // paths; the clients' clock is the server's, read after each skip.
  let clock = await now();
  const gateway = (gatewayId: string) =>
    stack.newClient({ gatewayId, heartbeatForwardIntervalMs: idle, maxHistoryEvents: 60, now: () => clock });
  const client = gateway(`rec-${appPid}`);
  const sleep = async (ms: number, ...renewing: SessionClient[]) => {
    for (let left = ms; left > 0; left -= idle) {
      await env.sleep(Math.min(idle, left));
      clock = await now();
      for (const c of renewing) await c.tick();
    }
  };
  const untilDestroyed = async (connectionId: string): Promise<SessionView> =>
    env.client.workflow.getHandle(sessionWorkflowId(connectionId)).result() as Promise<SessionView>;

  // Pongs through continue-as-new, malformed and stale signals, reconnect inside the soft destroy,
  // reconnect after presence removal, close, destroy.
  const user = await seedUser(stack.resources);
  const s = makeSession(appPid, { clientId: user.clientId, user });
  await client.connected(s, await now());
  await sleep(12 * idle, client);
  const handle = env.client.workflow.getHandle(sessionWorkflowId(s.connectionId));
  const raw = handle as unknown as { signal(def: unknown, arg: unknown): Promise<void> };
  await raw.signal(heartbeatSignal, { at: 'yesterday' });
  await raw.signal(activeSignal, {
    session: { ...s, uid: 'someone-else', socketId: randomUUID() },
    at: 1,
    gateway: client.holder,
  });
  await client.disconnected(s, await now());
  await sleep(2_000, client);
  const second = { ...s, socketId: randomUUID() };
  await client.connected(second, await now());
  await raw.signal(disconnectedSignal, { connectionId: s.connectionId, socketId: s.socketId, at: await now() });
  await client.disconnected(second, await now());
  await sleep(6_000, client);
  const third = { ...s, socketId: randomUUID() };
  await client.connected(third, await now());
  await client.disconnected(third, await now());
  await sleep(4 * idle + 1_000, client);
  const final = await untilDestroyed(s.connectionId);
  if (final.status !== SessionStatus.destroyed) throw new Error(`recording: session not destroyed`);

  // Liveness expiry (3 heartbeat intervals, before the lease's 4 idle periods), a lost gateway's
  // session and the gateway's own run, an operator's invalidate, an unknown app.
  const forgetful = gateway(`rec-forgetful-${appPid}`);
  const quiet = makeSession(appPid);
  await forgetful.connected(quiet, await now());
  await sleep(3 * idle + 1_000);
  await untilDestroyed(quiet.connectionId);
  // The default forward interval: the lease lapses (4 idle periods) long before liveness would.
  const lost = stack.newClient({ gatewayId: `rec-lost-${appPid}`, now: () => clock });
  const orphan = makeSession(appPid);
  await lost.connected(orphan, await now());
  await sleep(idle, lost);
  await sleep(5 * idle);
  await untilDestroyed(orphan.connectionId);
  await env.client.workflow.getHandle(gatewayWorkflowId(lost.holder.gatewayId)).result();
  const invalidated = makeSession(appPid);
  await client.connected(invalidated, await now());
  await client.invalidate(invalidated.connectionId, 'recorded for replay');
  await untilDestroyed(invalidated.connectionId);
  const unknown = makeSession('Unknown00App');
  await client.connected(unknown, await now());
  await untilDestroyed(unknown.connectionId);

  const userId = userWorkflowId(appPid, user.clientId);
  await env.client.workflow.getHandle(userId).result();

  // A sweep that cleans this app's stale ids (left by no workflow).
  const stale = Array.from({ length: 3 }, () => makeSession(appPid).connectionId);
  await stack.resources.redis.zadd(HEARTBEAT_KEY, ...stale.flatMap((cid) => [1, cid]));
  const sweepId = `sweep-recorded-${appPid}`;
  await env.client.workflow.execute('sweepWorkflow', {
    taskQueue: stack.taskQueue,
    workflowId: sweepId,
    args: [{ idleTimeoutMs: idle, appPids: [appPid], pageSize: 100 }],
  });

  const runs: { name: string; workflowId: string }[] = [
    { name: 'session-user-reconnects-destroyed', workflowId: sessionWorkflowId(s.connectionId) },
    { name: 'session-liveness-expired', workflowId: sessionWorkflowId(quiet.connectionId) },
    { name: 'session-gateway-lost', workflowId: sessionWorkflowId(orphan.connectionId) },
    { name: 'gateway-lease-lapsed', workflowId: gatewayWorkflowId(lost.holder.gatewayId) },
    { name: 'session-invalidated', workflowId: sessionWorkflowId(invalidated.connectionId) },
    { name: 'session-unknown-app', workflowId: sessionWorkflowId(unknown.connectionId) },
    { name: 'user-online-offline', workflowId: userId },
    { name: 'sweep-stale-ids', workflowId: sweepId },
  ];
  const recorded = await Promise.all(
    runs.map(async ({ name, workflowId }) => ({
      name,
      workflowId,
      bytes: encode(await env.client.workflow.getHandle(workflowId).fetchHistory()),
    })),
  );
  // The run that continued as new (the handle above reads the chain's last run).
  const last = await env.client.workflow.getHandle(sessionWorkflowId(s.connectionId)).fetchHistory();
  const firstRunId = last.events?.[0]?.workflowExecutionStartedEventAttributes?.firstExecutionRunId;
  if (!firstRunId) throw new Error('recording: no first run id');
  const first = await env.client.workflow.getHandle(sessionWorkflowId(s.connectionId), firstRunId).fetchHistory();
  recorded.push({
    name: 'session-continued-as-new',
    workflowId: sessionWorkflowId(s.connectionId),
    bytes: encode(first),
  });
  return recorded;
}

const History = temporal.api.history.v1.History;
const encode = (history: temporal.api.history.v1.IHistory) => History.encode(history).finish();
export const decodeHistory = (bytes: Uint8Array) => History.decode(bytes);
