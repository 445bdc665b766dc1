import { randomUUID } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import {
  DestroyReason,
  InvalidSessionInputError,
  SessionClient,
  SessionStatus,
  gatewayWorkflowId,
  sessionWorkflowId,
  type GatewayState,
  type SessionClientOptions,
  type SessionView,
} from '../src/client';
import { keys } from '../src/stores/redis/keys';
import { gatewayStateQuery, renewLeaseSignal } from '../src/contracts/gateway';
import type { Session } from '../src/contracts/session';
import { makeSession, seedApp, startStack, testConfig } from './helpers/stack';
import { devServerEnv, timeSkippingEnv } from './helpers/temporal';
import { waitUntil } from './helpers/wait';

const IDLE = 30_000;
const LAPSE = 4 * IDLE;

describe('gateway lease (time-skipping)', () => {
  let env: TestWorkflowEnvironment;
  let stack: Awaited<ReturnType<typeof startStack>>;
  let appPid: string;
  let serverTime = 0;

  beforeAll(async () => {
    env = await timeSkippingEnv();
    stack = await startStack(env, testConfig({ WS_IDLE_TIMEOUT_MS: String(IDLE) }));
    ({ appPid } = await seedApp(stack.resources));
  });
  afterAll(async () => {
    await stack?.stop();
    await env?.teardown();
  });
  beforeEach(async () => {
    serverTime = await now();
  });

  const now = () => env.currentTimeMs();
  const gateway = (options: Partial<SessionClientOptions> = {}) =>
    stack.newClient({ now: () => serverTime, ...options });
  const state = async (c: SessionClient, s: Session): Promise<SessionView> => (await c.describe(s.connectionId))!;
  const lease = (c: SessionClient): Promise<GatewayState> =>
    env.client.workflow.getHandle(gatewayWorkflowId(c.holder.gatewayId)).query(gatewayStateQuery);
  const indexed = async (c: SessionClient, s: Session) =>
    (await stack.resources.redis.hexists(
      keys.gatewayIndex(c.holder.gatewayId, c.holder.incarnation),
      s.connectionId,
    )) === 1;
  /** Skips time in idle periods; only the given gateways renew. */
  async function advance(ms: number, ...renewing: SessionClient[]) {
    for (let left = ms; left > 0; left -= IDLE) {
      for (const c of renewing) await c.tick();
      await env.sleep(Math.min(IDLE, left));
      serverTime = await now();
    }
  }
  const settled = (c: SessionClient, s: Session, what: string, ok: (st: SessionView) => boolean) =>
    waitUntil(what, async () => ok(await state(c, s)) && state(c, s), 30_000);

  it('a lease not renewed for 4 × idle closes exactly its incarnation’s sessions, as if at its last renewal', async () => {
    const a = gateway();
    const b = gateway();
    const [a1, a2, b1] = [makeSession(appPid), makeSession(appPid), makeSession(appPid)];
    await a.connected(a1, serverTime);
    await a.connected(a2, serverTime);
    await b.connected(b1, serverTime);
    await advance(IDLE, a, b);
    const lastRenewal = (await lease(a)).current!.renewedAt;
    await advance(LAPSE + IDLE, b);
    for (const s of [a1, a2]) {
      const st = await settled(a, s, 'destroyed by the lapse', (x) => x.status === SessionStatus.destroyed);
      expect(st.destroyReason).toBe(DestroyReason.gatewayLost);
      expect(Date.parse(st.disconnectedAt!)).toBe(lastRenewal);
      expect(await stack.resources.redis.exists(keys.active(s.connectionId))).toBe(0);
    }
    expect((await state(b, b1)).status).toBe(SessionStatus.connected);
    expect(await stack.resources.redis.exists(keys.active(b1.connectionId))).toBe(1);
    const lost = await env.client.workflow.getHandle(gatewayWorkflowId(a.holder.gatewayId)).result();
    expect(lost).toMatchObject({ current: null, superseded: [a.holder.incarnation], counts: { lost: 1 } });
    expect(await stack.resources.redis.exists(keys.gatewayIndex(a.holder.gatewayId, a.holder.incarnation))).toBe(0);
  });

  it('a lost incarnation’s fan-out records its closes in one batch: each disconnect row dated at the last renewal, no close effect run by a session', async () => {
    const a = gateway();
    const held = [makeSession(appPid), makeSession(appPid), makeSession(appPid)];
    for (const s of held) await a.connected(s, serverTime);
    await advance(IDLE, a);
    const lastRenewal = (await lease(a)).current!.renewedAt;
    await advance(LAPSE + IDLE);
    for (const s of held) {
      const handle = env.client.workflow.getHandle(sessionWorkflowId(s.connectionId));
      expect(((await handle.result()) as SessionView).destroyReason).toBe(DestroyReason.gatewayLost);
      const activities = (await handle.fetchHistory()).events!.flatMap((e) => {
        const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
        return name ? [name] : [];
      });
      expect(activities).toEqual(['connectSession', 'softDestroySession', 'hardDestroySession']);
      const { rows } = await stack.resources.pg.query<{ socketId: string; at: number }>(
        `SELECT "socketId", round(extract(epoch FROM "createdAt") * 1000)::float8 AS at FROM connections
          WHERE "connectionId" = $1 AND "connectionEventType" = 'disconnect'`,
        [s.connectionId],
      );
      expect(rows).toEqual([{ socketId: s.socketId, at: lastRenewal }]);
    }
  });

  it('a new incarnation of the same gatewayId takes the lease: the old one’s sessions close, those reconnected through the new one stay', async () => {
    const old = gateway();
    const [s1, s2] = [makeSession(appPid), makeSession(appPid)];
    await old.connected(s1, serverTime);
    await old.connected(s2, serverTime);
    await advance(IDLE, old);
    const restarted = gateway({ gatewayId: old.holder.gatewayId });
    const s2again = { ...s2, socketId: randomUUID() };
    await restarted.connected(s2again, serverTime);
    const st1 = await settled(old, s1, 's1 closed', (x) => x.status !== SessionStatus.connected);
    expect(st1.destroyReason ?? 'pending').not.toBe(DestroyReason.closed);
    await advance(LAPSE + IDLE, restarted);
    expect((await state(old, s1)).destroyReason).toBe(DestroyReason.gatewayLost);
    const st2 = await state(restarted, s2);
    expect(st2).toMatchObject({
      status: SessionStatus.connected,
      socketId: s2again.socketId,
      holder: restarted.holder,
    });
    expect(await stack.resources.redis.exists(keys.gatewayIndex(old.holder.gatewayId, old.holder.incarnation))).toBe(0);
    // A renewal from the old process (still running, say) is dropped and counted.
    await old.tick().catch(() => undefined);
    const l = await lease(restarted);
    expect(l.current!.incarnation).toBe(restarted.holder.incarnation);
    expect(l.counts.droppedRenewals).toBeGreaterThanOrEqual(1);
  });

  it('a session that moves to another gateway leaves the old index and survives the old gateway’s lapse', async () => {
    const a = gateway();
    const b = gateway();
    const s = makeSession(appPid);
    await a.connected(s, serverTime);
    await waitUntil('in a’s index', () => indexed(a, s));
    const moved = { ...s, socketId: randomUUID() };
    await b.connected(moved, serverTime);
    await settled(b, s, 'moved to b', (x) => x.holder.gatewayId === b.holder.gatewayId);
    await waitUntil('left a’s index', async () => !(await indexed(a, s)));
    expect(await indexed(b, s)).toBe(true);
    await advance(LAPSE + IDLE, b);
    expect((await state(b, s)).status).toBe(SessionStatus.connected);
    // a's fan-out recorded no close for it: it had left a's index.
    const closes = await stack.resources.pg.query(
      `SELECT 1 FROM connections WHERE "connectionId" = $1 AND "connectionEventType" = 'disconnect'`,
      [s.connectionId],
    );
    expect(closes.rowCount).toBe(0);
  });

  it('a released lease (clean shutdown) closes what its gateway still held and ends the gateway run', async () => {
    const g = gateway();
    const s = makeSession(appPid);
    await g.connected(s, serverTime);
    await g.close();
    const result = await env.client.workflow.getHandle(gatewayWorkflowId(g.holder.gatewayId)).result();
    expect(result.counts.released).toBe(1);
    const st = (await env.client.workflow.getHandle(sessionWorkflowId(s.connectionId)).result()) as SessionView;
    expect(st.destroyReason).toBe(DestroyReason.gatewayLost);
  });

  it('a connect under an incarnation already lost stores nothing and closes as gateway-lost (no session slips past the fan-out)', async () => {
    const g = gateway();
    await g.connected(makeSession(appPid), serverTime);
    await g.close();
    await env.client.workflow.getHandle(gatewayWorkflowId(g.holder.gatewayId)).result();
    // The same process's late connect (say, delayed behind a worker outage) under the lost incarnation.
    const late = gateway({ ...g.holder });
    const s = makeSession(appPid);
    await late.connected(s, serverTime);
    const st = (await env.client.workflow.getHandle(sessionWorkflowId(s.connectionId)).result()) as SessionView;
    expect(st.destroyReason).toBe(DestroyReason.gatewayLost);
    expect(await indexed(late, s)).toBe(false);
    const rows = await stack.resources.pg.query('SELECT 1 FROM connections WHERE "connectionId" = $1', [
      s.connectionId,
    ]);
    expect(rows.rowCount).toBe(0);
  });

  it('a tick renews the lease even while the last tick’s heartbeats still wait on a slow server', async () => {
    // The real client, with heartbeat signals held until released (a server slow to take them).
    const waiting: (() => void)[] = [];
    const slowHandle = (h: ReturnType<typeof env.client.workflow.getHandle>) =>
      new Proxy(h, {
        get(target, prop) {
          if (prop === 'signal')
            return async (def: { name: string }, ...args: unknown[]) => {
              if (def.name === 'heartbeat') await new Promise<void>((resolve) => waiting.push(resolve));
              return (target.signal as (...a: unknown[]) => Promise<void>)(def, ...args);
            };
          const value: unknown = Reflect.get(target, prop, target);
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        },
      });
    const workflow = new Proxy(env.client.workflow, {
      get(target, prop) {
        if (prop === 'getHandle')
          return (...args: Parameters<typeof target.getHandle>) => slowHandle(target.getHandle(...args));
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const client = new Proxy(env.client, {
      get: (target, prop) => (prop === 'workflow' ? workflow : (Reflect.get(target, prop, target) as unknown)),
    });
    const g = new SessionClient(client, {
      taskQueue: stack.taskQueue,
      idleTimeoutMs: IDLE,
      gatewayId: `gw-slow-${randomUUID().slice(0, 8)}`,
      autoTick: false,
      heartbeatForwardIntervalMs: IDLE,
      now: () => serverTime,
    });
    try {
      const sessions = [makeSession(appPid), makeSession(appPid)];
      for (const s of sessions) await g.connected(s);
      serverTime += IDLE; // both heartbeats due
      const first = g.tick();
      await waitUntil('both heartbeats waiting', () => Promise.resolve(waiting.length === 2));
      await waitUntil('the first renewal', async () => (await lease(g)).counts.renewals === 1);
      const second = g.tick();
      await waitUntil(
        'the second renewal, heartbeats still waiting',
        async () => (await lease(g)).counts.renewals === 2,
      );
      expect(waiting).toHaveLength(2);
      for (const release of waiting) release();
      await Promise.all([first, second]);
      // The second tick did not send the heartbeats again: the first was still sending them.
      for (const s of sessions) expect((await state(g, s)).counts.heartbeats).toBe(1);
    } finally {
      for (const release of waiting) release();
      await g.close();
    }
  });

  it('refuses a gatewayId or incarnation that is empty, too long or has NUL, naming the field', () => {
    const refused = (o: Partial<SessionClientOptions>) => {
      try {
        new SessionClient(env.client, { taskQueue: 'tq', idleTimeoutMs: IDLE, gatewayId: 'gw', ...o });
      } catch (err) {
        if (err instanceof InvalidSessionInputError) return err.field;
        throw err;
      }
      return 'accepted';
    };
    for (const bad of ['', 'x'.repeat(256), 'a\u0000b']) {
      expect(refused({ gatewayId: bad })).toBe('gatewayId');
      expect(refused({ incarnation: bad })).toBe('incarnation');
    }
    expect(refused({ incarnation: 'x'.repeat(255) })).toBe('accepted');
  });

  it('drops and counts renewals for an unknown incarnation and malformed ones, without failing a workflow task', async () => {
    const g = gateway();
    await g.connected(makeSession(appPid), serverTime);
    const handle = env.client.workflow.getHandle(gatewayWorkflowId(g.holder.gatewayId));
    const raw = handle as unknown as { signal(def: unknown, arg: unknown): Promise<void> };
    await raw.signal(renewLeaseSignal, { incarnation: 'never-acquired' });
    await raw.signal(renewLeaseSignal, { incarnation: 5 });
    await raw.signal(renewLeaseSignal, null);
    await raw.signal(renewLeaseSignal, { incarnation: 'x'.repeat(10_000) });
    const l = await waitUntil('signals handled', async () => {
      const st = await lease(g);
      return st.counts.droppedRenewals + st.counts.droppedSignals === 4 && st;
    });
    expect(l.counts).toMatchObject({ droppedRenewals: 1, droppedSignals: 3 });
    expect(l.current!.incarnation).toBe(g.holder.incarnation);
    const history = await handle.fetchHistory();
    expect(history.events?.filter((e) => e.workflowTaskFailedEventAttributes) ?? []).toEqual([]);
  });
});

/** Real Redis TTLs need real time: the dev server, a 1 s idle period (marker `EX 3`). */
describe('gateway lease markers (dev server, real time)', () => {
  let env: TestWorkflowEnvironment;
  let stack: Awaited<ReturnType<typeof startStack>>;
  let appPid: string;
  const idle = 1_000;
  beforeAll(async () => {
    env = await devServerEnv();
    stack = await startStack(env, testConfig({ WS_IDLE_TIMEOUT_MS: String(idle) }));
    ({ appPid } = await seedApp(stack.resources));
  });
  afterAll(async () => {
    await stack?.stop();
    await env?.teardown();
  });
  const redis = () => stack.resources.redis;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('markers are refreshed while the lease lives, never for a closed session, and left to go once it lapses; a stalled gateway reconnects its sockets', async () => {
    const g = stack.newClient({ idleTimeoutMs: idle });
    const [live, closed] = [makeSession(appPid), makeSession(appPid)];
    await g.connected(live);
    await g.connected(closed);
    await waitUntil('markers', async () => (await redis().exists(keys.active(live.connectionId))) === 1);
    await g.disconnected(closed);
    const timestamps = new Set<string>();
    // 8 s of renewals every idle period: past two marker lifetimes (3 s), so only refreshes explain it.
    for (let i = 0; i < 16; i++) {
      if (i % 2 === 0) await g.tick();
      await sleep(idle / 2);
      const marker = await redis().get(keys.active(live.connectionId));
      expect(marker).not.toBeNull();
      timestamps.add((JSON.parse(marker!) as { timestamp: string }).timestamp);
    }
    expect(timestamps.size).toBeGreaterThanOrEqual(5);
    expect(await redis().exists(keys.active(closed.connectionId))).toBe(0);
    expect(await redis().ttl(keys.active(live.connectionId))).toBeLessThanOrEqual(3);
    // The process stalls: no renewal for 4 × idle; the lease lapses and its sessions are destroyed.
    const stalled = g.holder.incarnation;
    const st = await waitUntil(
      'destroyed by the lapse',
      async () => {
        const x = await g.describe(live.connectionId);
        return x?.status === SessionStatus.destroyed && x;
      },
      30_000,
    );
    expect(st.destroyReason).toBe(DestroyReason.gatewayLost);
    expect(await redis().exists(keys.active(live.connectionId))).toBe(0);
    // It wakes up: its next tick finds the lease gone and connects its held socket again under a new incarnation.
    await g.tick();
    expect(g.holder.incarnation).not.toBe(stalled);
    const back = await waitUntil('connected again', async () => {
      const x = await g.describe(live.connectionId);
      return x?.status === SessionStatus.connected && x;
    });
    expect(back.holder).toEqual(g.holder);
    // The connect effect (an activity) writes the marker a moment after the state shows the connect.
    await waitUntil('marked live again', async () => (await redis().exists(keys.active(live.connectionId))) === 1);
  }, 90_000);
});
