import { randomUUID } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import {
  DestroyReason,
  SessionClient,
  SessionStatus,
  sessionWorkflowId,
  type SessionClientOptions,
  type SessionView,
} from '../src/client';
import { keys } from '../src/stores/redis/keys';
import { activeSignal, disconnectedSignal, gatewayLostSignal, heartbeatSignal } from '../src/contracts/session';
import type { Session } from '../src/contracts/session';
import { createWorker } from '../src/worker';
import { makeSession, nanoid, seedApp, startStack, testConfig, testLogger } from './helpers/stack';
import { timeSkippingEnv, workflowBundle } from './helpers/temporal';
import { waitUntil } from './helpers/wait';

const IDLE = 30_000;
const HARD = 4 * IDLE;
/** The default heartbeat interval (30 × idle) and the liveness timeout it gives (3 ×). */
const FORWARD = 30 * IDLE;
const LIVENESS = 3 * FORWARD;
const ms = (iso: string | null) => (iso === null ? null : Date.parse(iso));

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

  // A gateway per test: a lease lapsed in one test's skipped time cannot leak into the next.
  // Its clock is the server's (skipped) time, read after every skip, so heartbeats fall due in it.
  let client: SessionClient;
  let serverTime = 0;
  const gateway = (options: Partial<SessionClientOptions> = {}) =>
    stack.newClient({ now: () => serverTime, ...options });
  beforeEach(async () => {
    serverTime = await now();
    client = gateway();
  });

  const redis = () => stack.resources.redis;
  const now = () => env.currentTimeMs();
  const state = async (s: Session): Promise<SessionView> => (await client.describe(s.connectionId))!;

  /**
   * Skips workflow time in idle periods, renewing the lease as the gateway's timer would, then waits
   * (wall clock, bounded) for the worker to act on it.
   */
  async function advanceTo(target: number, settle?: (st: SessionView) => boolean, s?: Session, holder = client) {
    for (let left = target - (await now()); left > 0; left = target - (await now())) {
      await holder.tick();
      await env.sleep(Math.min(IDLE, left));
      serverTime = await now();
    }
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
    await client.connected(s, await now());
    const room = await seedPresence(s);
    await client.disconnected(s, await now());
    const st = await state(s);
    expect(st.status).toBe(SessionStatus.disconnected);
    return { s, room, closedAt: ms(st.disconnectedAt)! };
  }

  it('removes presence 5 s after a close and destroys the session at exactly 4 × idle', async () => {
    const { s, room, closedAt } = await connectAndClose();
    const st = await state(s);
    expect(ms(st.softDestroyAt)).toBe(closedAt + 5_000);
    expect(ms(st.hardDestroyAt)).toBe(closedAt + HARD);

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

  // 0.5 s of wall clock for the reconnect's three calls: the server's clock runs on meanwhile.
  it('a reconnect at 4.5 s cancels both destroys: presence kept, session live', async () => {
    const { s, room, closedAt } = await connectAndClose();
    await advanceTo(closedAt + 4_500);
    const again = { ...s, socketId: randomUUID() };
    await client.connected(again, await now());
    await advanceTo(closedAt + HARD + 1_000);
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
    await client.connected({ ...s, socketId: randomUUID() }, await now());
    await advanceTo(closedAt + HARD + 1_000);
    const st = await state(s);
    expect(st.status).toBe(SessionStatus.connected);
    expect(st.hardDestroyAt).toBeNull();
    expect(await redis().exists(keys.rooms(s.connectionId))).toBe(1);
  });

  it('a reconnect 1 s before the hard destroy cancels it', async () => {
    const { s, closedAt } = await connectAndClose();
    await advanceTo(closedAt + HARD - 1_000);
    await client.connected({ ...s, socketId: randomUUID() }, await now());
    await advanceTo(closedAt + HARD + 5_000);
    expect((await state(s)).status).toBe(SessionStatus.connected);
    expect(await redis().exists(keys.rooms(s.connectionId))).toBe(1);
  });

  it('a reconnect 1 s after the hard destroy starts a new session', async () => {
    const { s, closedAt } = await connectAndClose();
    await advanceTo(closedAt + HARD + 1_000, (x) => x.status === SessionStatus.destroyed, s);
    const handle = env.client.workflow.getHandle(sessionWorkflowId(s.connectionId));
    const firstRun = (await handle.describe()).runId;
    await client.connected({ ...s, socketId: randomUUID() }, await now());
    const st = await state(s);
    expect(st.status).toBe(SessionStatus.connected);
    expect(st.counts.reconnects).toBe(0);
    expect((await handle.describe()).runId).not.toBe(firstRun);
    // The connect effect (an activity) marks it live a moment after the state shows it connected.
    await waitUntil('marked live', async () => (await redis().exists(keys.active(s.connectionId))) === 1);
  });

  it('a second close of the same socket changes nothing', async () => {
    const { s, closedAt } = await connectAndClose();
    await advanceTo(closedAt + 2_000);
    await client.disconnected(s, await now());
    const st = await state(s);
    expect(ms(st.disconnectedAt)).toBe(closedAt);
    expect(ms(st.hardDestroyAt)).toBe(closedAt + HARD);
  });

  it('a close of an older socket after a reconnect is stale and ignored', async () => {
    const s = makeSession(appPid);
    await client.connected(s, await now());
    const again = { ...s, socketId: randomUUID() };
    await client.connected(again, await now());
    await client.disconnected(s, await now());
    const st = await state(s);
    expect(st.status).toBe(SessionStatus.connected);
    expect(st.socketId).toBe(again.socketId);
    expect(st.counts.staleDisconnects).toBe(1);
  });

  it('invalidate destroys a connected session at once', async () => {
    const s = makeSession(appPid);
    await client.connected(s, await now());
    await seedPresence(s);
    expect(await client.invalidate(s.connectionId, 'operator: abuse')).toBe(true);
    const final: SessionView = await env.client.workflow.getHandle(sessionWorkflowId(s.connectionId)).result();
    expect(final.status).toBe(SessionStatus.destroyed);
    expect(final.destroyReason).toBe(DestroyReason.invalidated);
    expect(await redis().exists(keys.rooms(s.connectionId), keys.active(s.connectionId))).toBe(0);
  });

  const holdFor = async (duration: number, holder = client) =>
    advanceTo((await now()) + duration, undefined, undefined, holder);

  it('a session whose heartbeats stop (its gateway forgot it) is closed at its last heartbeat, 3 × the forward interval later', async () => {
    const s = makeSession(appPid);
    await client.connected(s, await now());
    // The gateway forgets the socket (a close that never reached tether): the client stops its heartbeats.
    const forgetful = gateway({ ...client.holder });
    const st0 = await state(s);
    expect(ms(st0.livenessExpiresAt)).toBe(ms(st0.lastSeenAt)! + LIVENESS);
    await holdFor(LIVENESS - IDLE, forgetful);
    expect((await state(s)).status).toBe(SessionStatus.connected);
    await holdFor(2 * IDLE, forgetful);
    await advanceTo(await now(), (x) => x.status !== SessionStatus.connected, s);
    const st = await state(s);
    expect(st.destroyReason ?? 'pending').not.toBe(DestroyReason.gatewayLost);
    expect(ms(st.disconnectedAt)).toBe(ms(st0.lastSeenAt));
    await advanceTo(ms(st.disconnectedAt)! + HARD + 1_000, (x) => x.status === SessionStatus.destroyed, s);
    expect((await state(s)).destroyReason).toBe(DestroyReason.liveness);
  });

  it('a socket that never pongs stays live for an hour while its gateway holds it (contract §7.8)', async () => {
    const s = makeSession(appPid);
    await client.connected(s, await now());
    await holdFor(3_600_000);
    const st = await state(s);
    expect(st.status).toBe(SessionStatus.connected);
    // One heartbeat per forward interval, from the client's own tick: none came from a pong.
    expect(st.counts.heartbeats).toBeGreaterThanOrEqual(3);
    expect(st.counts.heartbeats).toBeLessThanOrEqual(4);
    expect(await redis().ttl(keys.active(s.connectionId))).toBeGreaterThan(0);
  });

  it('pongs between due heartbeats cost nothing: they are coalesced by the client', async () => {
    const s = makeSession(appPid);
    await client.connected(s, await now());
    const outcomes = [];
    for (let i = 0; i < 5; i++) {
      await env.sleep(IDLE);
      serverTime = await now();
      outcomes.push(await client.heartbeat(s.connectionId, await now()));
    }
    expect(outcomes).toEqual(['coalesced', 'coalesced', 'coalesced', 'coalesced', 'coalesced']);
    expect((await state(s)).counts.heartbeats).toBe(0);
  });

  it('continues as new under a stream of heartbeats without losing state or signals', async () => {
    client = gateway({ maxHistoryEvents: 40, heartbeatForwardIntervalMs: IDLE });
    const s = makeSession(appPid);
    await client.connected(s, await now());
    for (let i = 0; i < 30; i++) {
      await env.sleep(IDLE);
      serverTime = await now();
      await client.heartbeat(s.connectionId, await now());
      await client.tick();
    }
    const st = await state(s);
    expect(st.counts.continuedAsNew).toBeGreaterThanOrEqual(1);
    expect(st.counts.heartbeats).toBe(30);
    expect(st.status).toBe(SessionStatus.connected);
    await client.disconnected(s, await now());
    const handle = env.client.workflow.getHandle(sessionWorkflowId(s.connectionId));
    const final = (await handle.result()) as SessionView;
    expect(final.destroyReason).toBe(DestroyReason.closed);
    const { events } = await handle.fetchHistory();
    console.log('LAST RUN', events!.map((e) => String(e.eventType)).join(','));
    expect(events?.filter((e) => e.workflowTaskFailedEventAttributes) ?? []).toEqual([]);
  });

  it('the state query shows times as ISO-8601 UTC strings and the deadlines next to the status', async () => {
    const { s, closedAt } = await connectAndClose();
    const st = await state(s);
    const isoUtc = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
    for (const t of [st.connectedAt, st.lastSeenAt, st.disconnectedAt, st.softDestroyAt, st.hardDestroyAt])
      expect(t).toMatch(isoUtc);
    expect(st.disconnectedAt).toBe(new Date(closedAt).toISOString());
    expect(st.livenessExpiresAt).toBeNull();
    expect(st.holder).toEqual(client.holder);
  });

  it('a session of an unknown appPid is rejected cleanly: nothing written, the run ends without failing', async () => {
    const s = makeSession('Unknown00App');
    await client.connected(s, await now());
    const final: SessionView = await env.client.workflow.getHandle(sessionWorkflowId(s.connectionId)).result();
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
    const client = new SessionClient(env.client, {
      taskQueue,
      idleTimeoutMs: IDLE,
      gatewayId: 'late',
      autoTick: false,
    });
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
      return (await handle.result()) as SessionView;
    });
    expect(final.status).toBe(SessionStatus.destroyed);
    expect(final.destroyReason).toBe(DestroyReason.closed);
    // The close came before the connect effect ran: both still land, connect first.
    const rows = await stack.resources.pg.query<{ connectionEventType: string }>(
      'SELECT "connectionEventType" FROM connections WHERE "connectionId" = $1 ORDER BY 1',
      [s.connectionId],
    );
    expect(rows.rows.map((r) => r.connectionEventType)).toEqual(['connect', 'disconnect']);
    const history = await handle.fetchHistory();
    expect(history.events?.filter((e) => e.workflowTaskFailedEventAttributes) ?? []).toEqual([]);
  });

  it('drops malformed signals sent around the client without failing a workflow task', async () => {
    const s = makeSession(appPid);
    await client.connected(s, await now());
    const handle = env.client.workflow.getHandle(sessionWorkflowId(s.connectionId));
    const raw = handle as unknown as { signal(def: unknown, arg: unknown): Promise<void> };
    await raw.signal(heartbeatSignal, { at: 'yesterday' });
    await raw.signal(disconnectedSignal, null);
    await raw.signal(disconnectedSignal, { connectionId: s.connectionId, socketId: 'x'.repeat(100_000), at: 1 });
    await raw.signal(activeSignal, { session: { ...s, user: { id: 'not-a-uuid' } }, at: 1 });
    await raw.signal(activeSignal, {
      session: { ...s, uid: 'someone-else', socketId: randomUUID() },
      at: 1,
      gateway: client.holder,
    });
    await raw.signal(activeSignal, { session: { ...s, socketId: randomUUID() }, at: 1 }); // no gateway
    await raw.signal(gatewayLostSignal, { gatewayId: '', incarnation: 'x', at: 1 });
    const st = await state(s);
    expect(st.counts.droppedSignals).toBe(7);
    expect(st.status).toBe(SessionStatus.connected);
    expect(st.socketId).toBe(s.socketId);
    const history = await handle.fetchHistory();
    const failed = history.events?.filter((e) => e.workflowTaskFailedEventAttributes) ?? [];
    expect(failed).toEqual([]);
  });
});
