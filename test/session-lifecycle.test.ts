import { randomUUID } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { DestroyReason, SessionClient, SessionStatus, sessionWorkflowId, type SessionState } from '../src/client';
import { keys } from '../src/activities/redis-keys';
import { disconnectedSignal, heartbeatSignal, activeSignal } from '../src/workflows/messages';
import type { Session } from '../src/session';
import { createWorker } from '../src/worker';
import { makeSession, nanoid, seedApp, startStack, testConfig, testLogger } from './helpers/stack';
import { timeSkippingEnv, workflowBundle } from './helpers/temporal';

const IDLE = 30_000;
const HARD = 4 * IDLE;

/**
 * Every path of the session lifecycle on the time-skipping server: workflow time jumps, activities
 * write to the real Redis and Postgres. Times are offsets from the close, in workflow time.
 */
describe('session lifecycle (time-skipping)', () => {
  let env: TestWorkflowEnvironment;
  let stack: Awaited<ReturnType<typeof startStack>>;
  let appPid: string;

  beforeAll(async () => {
    env = await timeSkippingEnv();
    stack = await startStack(env, testConfig({ WS_IDLE_TIMEOUT_MS: String(IDLE) }));
    ({ appPid } = await seedApp(stack.resources));
  });
  afterAll(async () => {
    await stack?.stop();
    await env?.teardown();
  });

  const redis = () => stack.resources.redis;
  const now = () => env.currentTimeMs();
  const state = async (s: Session): Promise<SessionState> => (await stack.client.describe(s.connectionId))!;

  /** Skips workflow time, then waits (wall clock, bounded) for the worker to act on it. */
  async function advanceTo(target: number, settle?: (st: SessionState) => boolean, s?: Session) {
    const delta = target - (await now());
    if (delta > 0) await env.sleep(delta);
    if (settle && s) {
      // Wall clock for the worker to run what the skipped time made due (slow on a busy machine).
      for (let i = 0; i < 300; i++) {
        if (settle(await state(s))) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`state did not settle: ${JSON.stringify(await state(s))}`);
    }
  }

  async function seedPresence(s: Session, room = `${appPid}:room-${randomUUID().slice(0, 8)}`) {
    await redis()
      .multi()
      .hset(keys.presenceSets(s.connectionId), room, '1')
      .hset(keys.presenceMembers(room), s.connectionId, JSON.stringify({ clientId: s.clientId ?? null }))
      .hset(keys.presenceMembers(room), `${appPid}:someoneelse`, '{}')
      .rpush(keys.presenceIndex(room), s.connectionId, `${appPid}:someoneelse`)
      .hset(keys.rooms(s.connectionId), room, '1')
      .hset(keys.roomSubscriptions(s.connectionId, 'subscriptions', room), 'sub', '1')
      .exec();
    return room;
  }
  const isMember = async (s: Session, room: string) =>
    (await redis().hexists(keys.presenceMembers(room), s.connectionId)) === 1;

  async function connectAndClose(s = makeSession(appPid)) {
    await stack.client.connected(s, await now());
    const room = await seedPresence(s);
    await stack.client.disconnected(s, await now());
    const st = await state(s);
    expect(st.status).toBe(SessionStatus.disconnected);
    return { s, room, closedAt: st.disconnectedAt! };
  }

  it('removes presence 5 s after a close and destroys the session at exactly 4 × idle', async () => {
    const { s, room, closedAt } = await connectAndClose();
    const st = await state(s);
    expect(st.softDestroyAt).toBe(closedAt + 5_000);
    expect(st.hardDestroyAt).toBe(closedAt + HARD);

    await advanceTo(closedAt + 4_900);
    expect(await isMember(s, room)).toBe(true);
    await advanceTo(closedAt + 5_100, (x) => x.presenceRemoved, s);
    expect(await isMember(s, room)).toBe(false);
    expect(await redis().lrange(keys.presenceIndex(room), 0, -1)).toEqual([`${appPid}:someoneelse`]);

    await advanceTo(closedAt + HARD - 1_000);
    expect((await state(s)).status).toBe(SessionStatus.disconnected);
    expect(await redis().exists(keys.rooms(s.connectionId))).toBe(1);

    await advanceTo(closedAt + HARD + 1_000, (x) => x.status === SessionStatus.destroyed, s);
    expect((await state(s)).destroyReason).toBe(DestroyReason.closed);
    expect(
      await redis().exists(keys.rooms(s.connectionId), keys.roomSubscriptions(s.connectionId, 'subscriptions', room)),
    ).toBe(0);
    expect(await redis().zscore('heartbeat:keepalive', s.connectionId)).toBeNull();
    const row = await stack.resources.pg.query('SELECT "disconnectedAt" FROM sessions WHERE "connectionId" = $1', [
      s.connectionId,
    ]);
    expect(row.rows[0].disconnectedAt).not.toBeNull();
  });

  it('a reconnect at 4.9 s cancels both destroys: presence kept, session live', async () => {
    const { s, room, closedAt } = await connectAndClose();
    await advanceTo(closedAt + 4_900);
    const again = { ...s, socketId: randomUUID() };
    await stack.client.connected(again, await now());
    await advanceTo(closedAt + HARD + 1_000);
    // No heartbeats yet: still inside the liveness window of the reconnect (4 × idle).
    const st = await state(s);
    expect(st.status).toBe(SessionStatus.connected);
    expect(st.presenceRemoved).toBe(false);
    expect(st.softDestroyAt).toBeNull();
    expect(st.hardDestroyAt).toBeNull();
    expect(st.counts.reconnects).toBe(1);
    expect(await isMember(s, room)).toBe(true);
    expect(await redis().exists(keys.rooms(s.connectionId))).toBe(1);
  });

  it('a reconnect at 5.1 s keeps the session although presence was already removed', async () => {
    const { s, room, closedAt } = await connectAndClose();
    await advanceTo(closedAt + 5_100, (x) => x.presenceRemoved, s);
    expect(await isMember(s, room)).toBe(false);
    await stack.client.connected({ ...s, socketId: randomUUID() }, await now());
    await advanceTo(closedAt + HARD + 1_000);
    const st = await state(s);
    expect(st.status).toBe(SessionStatus.connected);
    expect(st.hardDestroyAt).toBeNull();
    expect(await redis().exists(keys.rooms(s.connectionId))).toBe(1);
  });

  it('a reconnect 1 s before the hard destroy cancels it', async () => {
    const { s, closedAt } = await connectAndClose();
    await advanceTo(closedAt + HARD - 1_000);
    await stack.client.connected({ ...s, socketId: randomUUID() }, await now());
    await advanceTo(closedAt + HARD + 5_000);
    expect((await state(s)).status).toBe(SessionStatus.connected);
    expect(await redis().exists(keys.rooms(s.connectionId))).toBe(1);
  });

  it('a reconnect 1 s after the hard destroy starts a new session', async () => {
    const { s, closedAt } = await connectAndClose();
    await advanceTo(closedAt + HARD + 1_000, (x) => x.status === SessionStatus.destroyed, s);
    const handle = env.client.workflow.getHandle(sessionWorkflowId(s.connectionId));
    const firstRun = (await handle.describe()).runId;
    await stack.client.connected({ ...s, socketId: randomUUID() }, await now());
    const st = await state(s);
    expect(st.status).toBe(SessionStatus.connected);
    expect(st.counts.reconnects).toBe(0);
    expect((await handle.describe()).runId).not.toBe(firstRun);
    expect(await redis().exists(keys.active(s.connectionId))).toBe(1);
  });

  it('a second close of the same socket changes nothing', async () => {
    const { s, closedAt } = await connectAndClose();
    await advanceTo(closedAt + 2_000);
    await stack.client.disconnected(s, await now());
    const st = await state(s);
    expect(st.disconnectedAt).toBe(closedAt);
    expect(st.hardDestroyAt).toBe(closedAt + HARD);
  });

  it('a close of an older socket after a reconnect is stale and ignored', async () => {
    const s = makeSession(appPid);
    await stack.client.connected(s, await now());
    const again = { ...s, socketId: randomUUID() };
    await stack.client.connected(again, await now());
    await stack.client.disconnected(s, await now());
    const st = await state(s);
    expect(st.status).toBe(SessionStatus.connected);
    expect(st.socketId).toBe(again.socketId);
    expect(st.counts.staleDisconnects).toBe(1);
  });

  it('invalidate destroys a connected session at once', async () => {
    const s = makeSession(appPid);
    await stack.client.connected(s, await now());
    await seedPresence(s);
    expect(await stack.client.invalidate(s.connectionId, 'operator: abuse')).toBe(true);
    const final: SessionState = await env.client.workflow.getHandle(sessionWorkflowId(s.connectionId)).result();
    expect(final.status).toBe(SessionStatus.destroyed);
    expect(final.destroyReason).toBe(DestroyReason.invalidated);
    expect(await redis().exists(keys.rooms(s.connectionId), keys.active(s.connectionId))).toBe(0);
  });

  it('a connected session with no sign of life for 4 × idle is closed at its last sign of life and destroyed', async () => {
    const s = makeSession(appPid);
    await stack.client.connected(s, await now());
    const { lastSeenAt } = await state(s);
    await advanceTo(lastSeenAt + HARD - 1_000);
    expect((await state(s)).status).toBe(SessionStatus.connected);
    await advanceTo(lastSeenAt + HARD + 1_000, (x) => x.status === SessionStatus.destroyed, s);
    const st = await state(s);
    expect(st.destroyReason).toBe(DestroyReason.liveness);
    expect(st.disconnectedAt).toBe(lastSeenAt);
  });

  it('pongs keep a session live indefinitely (a chatty client is never purged while connected)', async () => {
    const s = makeSession(appPid);
    await stack.client.connected(s, await now());
    for (let i = 0; i < 20; i++) {
      await env.sleep(IDLE);
      await stack.client.heartbeat(s.connectionId, await now());
    }
    const st = await state(s);
    expect(st.status).toBe(SessionStatus.connected);
    expect(st.counts.heartbeats).toBe(10); // every other pong is forwarded
    expect(await redis().ttl(keys.active(s.connectionId))).toBeGreaterThan(0);
  });

  it('continues as new under a stream of heartbeats without losing state or signals', async () => {
    const config = testConfig({ WS_IDLE_TIMEOUT_MS: String(IDLE) });
    const { SessionClient } = await import('../src/client');
    const client = new SessionClient(env.client, {
      taskQueue: stack.taskQueue,
      idleTimeoutMs: config.idleTimeoutMs,
      maxHistoryEvents: 40,
      heartbeatForwardIntervalMs: 0,
    });
    const s = makeSession(appPid);
    await client.connected(s, await now());
    for (let i = 0; i < 30; i++) {
      await env.sleep(IDLE);
      await client.heartbeat(s.connectionId, await now());
    }
    const st = await state(s);
    expect(st.counts.continuedAsNew).toBeGreaterThanOrEqual(1);
    expect(st.counts.heartbeats).toBe(30);
    expect(st.status).toBe(SessionStatus.connected);
    await client.disconnected(s, await now());
    await advanceTo((await state(s)).disconnectedAt! + HARD + 1_000, (x) => x.status === SessionStatus.destroyed, s);
  });

  it('a session of an unknown appPid is rejected cleanly: nothing written, the run ends without failing', async () => {
    const s = makeSession('Unknown00App');
    await stack.client.connected(s, await now());
    const final: SessionState = await env.client.workflow.getHandle(sessionWorkflowId(s.connectionId)).result();
    expect(final.status).toBe(SessionStatus.destroyed);
    expect(final.invalidateReason).toMatch(/unknown appPid/);
    const rows = await stack.resources.pg.query('SELECT 1 FROM sessions WHERE "connectionId" = $1', [s.connectionId]);
    expect(rows.rowCount).toBe(0);
    expect(await redis().exists(keys.active(s.connectionId))).toBe(0);
    expect(await redis().zscore('heartbeat:keepalive', s.connectionId)).toBeNull();
  });

  it('handles a close that arrives with the start, before any worker ran the workflow', async () => {
    // No worker polls this queue yet: the start and both signals land in the first workflow task.
    const taskQueue = `late-${nanoid(8)}`;
    const client = new SessionClient(env.client, { taskQueue, idleTimeoutMs: IDLE });
    const s = makeSession(appPid);
    await client.connected(s, await now());
    expect(await client.disconnected(s, await now())).toBe(true);
    const worker = await createWorker({
      connection: env.nativeConnection,
      namespace: env.namespace ?? 'default',
      taskQueue,
      config: stack.config,
      resources: stack.resources,
      logger: testLogger,
      workflowBundle: await workflowBundle(),
    });
    const handle = env.client.workflow.getHandle(sessionWorkflowId(s.connectionId));
    const final = await worker.runUntil(async () => {
      await env.sleep(HARD + 1_000);
      return (await handle.result()) as SessionState;
    });
    expect(final.status).toBe(SessionStatus.destroyed);
    expect(final.destroyReason).toBe(DestroyReason.closed);
    const history = await handle.fetchHistory();
    expect(history.events?.filter((e) => e.workflowTaskFailedEventAttributes) ?? []).toEqual([]);
  });

  it('drops malformed signals sent around the client without failing a workflow task', async () => {
    const s = makeSession(appPid);
    await stack.client.connected(s, await now());
    const handle = env.client.workflow.getHandle(sessionWorkflowId(s.connectionId));
    const raw = handle as unknown as { signal(def: unknown, arg: unknown): Promise<void> };
    await raw.signal(heartbeatSignal, { at: 'yesterday' });
    await raw.signal(disconnectedSignal, null);
    await raw.signal(disconnectedSignal, { connectionId: s.connectionId, socketId: 'x'.repeat(100_000), at: 1 });
    await raw.signal(activeSignal, { session: { ...s, user: { id: 'not-a-uuid' } }, at: 1 });
    await raw.signal(activeSignal, { session: { ...s, uid: 'someone-else', socketId: randomUUID() }, at: 1 });
    const st = await state(s);
    expect(st.counts.droppedSignals).toBe(5);
    expect(st.status).toBe(SessionStatus.connected);
    expect(st.socketId).toBe(s.socketId);
    const history = await handle.fetchHistory();
    const failed = history.events?.filter((e) => e.workflowTaskFailedEventAttributes) ?? [];
    expect(failed).toEqual([]);
  });
});
