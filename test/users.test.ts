import { randomUUID } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { keys } from '../src/stores/redis/keys';
import { openResources, type Resources } from '../src/service/resources';
import type { Session } from '../src/contracts/session';
import { createWorker } from '../src/worker';
import {
  connectionDownSignal,
  connectionUpSignal,
  userStateQuery,
  userWorkflowId,
  DownSource,
  type UserState,
} from '../src/contracts/user';
import { captureUserBroadcasts, pause, waitFor } from './helpers/broadcasts';
import { makeSession, seedApp, seedUser, startStack, testConfig, testLogger } from './helpers/stack';
import { devServerEnv, workflowBundle } from './helpers/temporal';

/**
 * Users online/offline exactly once (contract §4.1, §6.2, §7 defect 3), on the dev server in real
 * time (the soft destroy is 5 s after a close): many connections of one user, on two workers
 * polling the same task queue, closing and reconnecting together.
 */
describe('users online/offline (dev server, two workers)', () => {
  let env: TestWorkflowEnvironment;
  let stack: Awaited<ReturnType<typeof startStack>>;
  let second: { worker: Worker; running: Promise<void>; resources: Resources; connection: NativeConnection };
  let appPid: string;

  beforeAll(async () => {
    env = await devServerEnv();
    stack = await startStack(env, testConfig());
    // Its own connection: the SDK refuses two workers of one task queue on one client.
    const connection = await NativeConnection.connect({ address: env.address });
    const resources = openResources(stack.config);
    const worker = await createWorker({
      connection,
      namespace: env.namespace ?? 'default',
      taskQueue: stack.taskQueue,
      config: stack.config,
      resources,
      logger: testLogger,
      workflowBundle: await workflowBundle(),
    });
    second = { worker, running: worker.run(), resources, connection };
    ({ appPid } = await seedApp(stack.resources));
  });
  afterAll(async () => {
    if (second) {
      second.worker.shutdown();
      await second.running;
      await second.resources.close();
      await second.connection.close();
    }
    await stack?.stop();
    await env?.teardown();
  });

  const redis = () => stack.resources.redis;
  type User = Awaited<ReturnType<typeof seedUser>>;

  async function newUser() {
    const user = await seedUser(stack.resources);
    const capture = await captureUserBroadcasts(stack.config, user.clientId);
    return { user, capture };
  }

  const sessionOf = (user: User): Session =>
    makeSession(appPid, { uid: user.clientId, clientId: user.clientId, user: { ...user } });
  const reconnect = (s: Session): Session => ({ ...s, socketId: randomUUID() });

  /** Redis and the DB as the contract sees the user. */
  async function observed(user: User) {
    const [online, connections] = await Promise.all([
      redis().hget(keys.usersOnline(appPid), user.clientId),
      redis().hgetall(keys.clientConnections(appPid, user.clientId)),
    ]);
    const { rows } = await stack.resources.pg.query<{ isOnline: boolean | null; lastOnline: Date | null }>(
      'SELECT "isOnline", "lastOnline" FROM authentication_users WHERE id = $1',
      [user.id],
    );
    return {
      redisOnline: online !== null,
      onlineUser: online ? (JSON.parse(online) as Record<string, unknown>) : null,
      connections: Object.keys(connections).sort(),
      dbOnline: rows[0]?.isOnline ?? null,
      lastOnline: rows[0]?.lastOnline ?? null,
    };
  }

  /** The user online with one connection: its session. */
  async function onlineWithOne(user: User): Promise<Session> {
    const a = sessionOf(user);
    await stack.client.connected(a);
    await waitFor(
      'online',
      () => observed(user),
      (o) => o.redisOnline && o.connections.length === 1,
    );
    return a;
  }

  const userState = async (user: User): Promise<UserState> =>
    env.client.workflow.getHandle(userWorkflowId(appPid, user.clientId)).query(userStateQuery);

  const ids = (sessions: Session[]) => sessions.map((s) => s.connectionId).sort();

  it('N connections connecting, closing and reconnecting together: one connect and one disconnect per edge', async () => {
    const { user, capture } = await newUser();
    try {
      const N = 6;
      let sessions = Array.from({ length: N }, () => sessionOf(user));

      // All connect at once: one offline→online edge.
      await Promise.all(sessions.map((s) => stack.client.connected(s)));
      const up = await waitFor(
        'user online with every connection',
        () => observed(user),
        (o) => o.redisOnline && o.dbOnline === true && o.connections.length === N,
      );
      expect(up.connections).toEqual(ids(sessions));
      expect(up.onlineUser).toMatchObject({ id: user.id, clientId: user.clientId, isOnline: true });
      await waitFor(
        'the connect broadcast',
        () => capture.events(),
        (e) => e.length >= 2,
      );
      await capture.drain();
      expect(capture.events()).toEqual(['connection:status', 'connect']);
      const connectMsg = capture.messages[1]!;
      expect(connectMsg.routingKey).toBe(capture.routingKey);
      expect(connectMsg.body).toMatchObject({
        nspRoomId: `users:${user.clientId}`,
        service: 'session',
        data: { id: user.id, clientId: user.clientId, isOnline: true },
      });

      // All close at once; two reconnect 1.5 s later (before the soft destroy): the user stays
      // online and only the four that did not come back leave the user's connections.
      await Promise.all(sessions.map((s) => stack.client.disconnected(s)));
      await pause(1_500);
      const back = sessions.slice(0, 2).map(reconnect);
      await Promise.all(back.map((s) => stack.client.connected(s)));
      const partial = await waitFor(
        'the four closed connections gone, the two reconnected kept',
        () => observed(user),
        (o) => o.connections.length === 2,
        15_000,
      );
      expect(partial.connections).toEqual(ids(back));
      expect(partial).toMatchObject({ redisOnline: true, dbOnline: true });
      const mid = await userState(user);
      expect(mid.online).toBe(true);
      expect(Object.keys(mid.connections).sort()).toEqual(ids(back));
      expect(mid.counts.onlineEdges).toBe(1);
      expect(mid.counts.offlineEdges).toBe(0);
      expect(capture.events()).toEqual(['connection:status', 'connect']);

      // The two left close together: one online→offline edge, 5 s after the close.
      const closedAt = Date.now();
      await Promise.all(back.map((s) => stack.client.disconnected(s)));
      const down = await waitFor(
        'user offline',
        () => observed(user),
        (o) => !o.redisOnline && o.dbOnline === false && o.connections.length === 0,
        15_000,
      );
      expect(Date.now() - closedAt).toBeGreaterThanOrEqual(5_000);
      expect(down.lastOnline).not.toBeNull();
      await waitFor(
        'the disconnect broadcast',
        () => capture.events(),
        (e) => e.length >= 4,
      );
      await capture.drain();
      expect(capture.events()).toEqual(['connection:status', 'connect', 'connection:status', 'disconnect']);
      expect(capture.messages[3]!.body.data).toMatchObject({ id: user.id, isOnline: false });
      // Offline with nothing left: the user workflow's run is over.
      const handle = env.client.workflow.getHandle(userWorkflowId(appPid, user.clientId));
      await waitFor(
        'user workflow completed',
        async () => (await handle.describe()).status.name,
        (s) => s === 'COMPLETED',
      );

      // Three reconnect together: a new run, one more online edge.
      sessions = [...back.map(reconnect), sessionOf(user)];
      await Promise.all(sessions.map((s) => stack.client.connected(s)));
      const again = await waitFor(
        'user online again',
        () => observed(user),
        (o) => o.redisOnline && o.dbOnline === true && o.connections.length === 3,
      );
      expect(again.connections).toEqual(ids(sessions));
      await waitFor(
        'the second connect broadcast',
        () => capture.events(),
        (e) => e.length >= 6,
      );
      await capture.drain();
      expect(capture.events()).toEqual([
        'connection:status',
        'connect',
        'connection:status',
        'disconnect',
        'connection:status',
        'connect',
      ]);
      const st = await userState(user);
      expect(st.counts).toMatchObject({ onlineEdges: 1, offlineEdges: 0 });

      await Promise.all(sessions.map((s) => stack.client.invalidate(s.connectionId, 'test over')));
      await waitFor(
        'user offline at the end',
        () => observed(user),
        (o) => !o.redisOnline && o.dbOnline === false,
      );
    } finally {
      await capture.close();
    }
  });

  it('a quick close and reconnect of the only connection makes no edge; staggered closes make exactly one', async () => {
    const { user, capture } = await newUser();
    try {
      const a = await onlineWithOne(user);

      // Closed for 2 s: the soft destroy never comes, the user never flickers offline.
      await stack.client.disconnected(a);
      await pause(2_000);
      const a2 = reconnect(a);
      await stack.client.connected(a2);
      // The session itself says no soft destroy is owed any more (its reconnect took it back), so
      // no offline edge can follow: read that, then drain the broadcasts, instead of waiting 5 s.
      const back = await waitFor(
        'the reconnect applied',
        () => stack.client.describe(a.connectionId),
        (st) => st?.socketId === a2.socketId && st.status === 'connected',
      );
      expect(back).toMatchObject({ softDestroyAt: null, hardDestroyAt: null, presenceRemoved: false });
      expect(back!.counts.presenceRemovals).toBe(0);
      await capture.drain();
      expect(await observed(user)).toMatchObject({ redisOnline: true, dbOnline: true, connections: [a.connectionId] });
      expect(capture.events()).toEqual(['connection:status', 'connect']);

      // More connections, closed one after another 0.5 s apart: one offline edge after the last.
      const more = [sessionOf(user), sessionOf(user), sessionOf(user)];
      await Promise.all(more.map((s) => stack.client.connected(s)));
      await waitFor(
        'four connections',
        () => observed(user),
        (o) => o.connections.length === 4,
      );
      for (const s of [a2, ...more]) {
        await stack.client.disconnected(s);
        await pause(500);
      }
      await waitFor(
        'offline after the last soft destroy',
        () => observed(user),
        (o) => !o.redisOnline && o.dbOnline === false && o.connections.length === 0,
        15_000,
      );
      // Redis and the DB go offline before the edge's broadcasts are published: drain once the user
      // workflow has counted the edge (its activity returns after the publish confirms).
      await waitFor(
        'the offline edge recorded',
        () => userState(user),
        (st) => st.counts.offlineEdges === 1,
      );
      await capture.drain();
      expect(capture.events()).toEqual(['connection:status', 'connect', 'connection:status', 'disconnect']);
    } finally {
      await capture.close();
    }
  });

  it('a reconnect within the grace sends the user workflow no up; the down names the socket it was told of, the offline broadcast the socket that closed', async () => {
    const { user, capture } = await newUser();
    try {
      const a = await onlineWithOne(user);
      await stack.client.disconnected(a);
      const a2 = reconnect(a);
      await stack.client.connected(a2);
      await stack.client.disconnected(a2);
      // The session's effects run one after another: its connect of a2 ran before this edge.
      const st = await waitFor(
        'the offline edge recorded',
        () => userState(user),
        (u) => u.counts.offlineEdges === 1,
        15_000,
      );
      expect(st.counts).toMatchObject({ ups: 1, downs: 1, staleDowns: 0, onlineEdges: 1 });
      expect(st.lastSession?.socketId).toBe(a2.socketId);
      await capture.drain();
      expect(capture.events()).toEqual(['connection:status', 'connect', 'connection:status', 'disconnect']);
      const sockets = capture.messages.map((m) => (m.body.session as Session).socketId);
      expect(sockets).toEqual([a.socketId, a.socketId, a2.socketId, a2.socketId]);
      expect(await observed(user)).toMatchObject({ redisOnline: false, dbOnline: false, connections: [] });
    } finally {
      await capture.close();
    }
  });

  it('a down for an older socket, or from an unknown sender, changes nothing', async () => {
    const { user, capture } = await newUser();
    try {
      const a = await onlineWithOne(user);
      const handle = env.client.workflow.getHandle(userWorkflowId(appPid, user.clientId));
      await handle.signal(connectionDownSignal, {
        connectionId: a.connectionId,
        socketId: randomUUID(),
        source: DownSource.session,
      });
      await handle.signal(connectionDownSignal, { connectionId: 42, socketId: null } as never);
      const st = await waitFor(
        'signals handled',
        () => userState(user),
        // online: the edge's activity has returned (Redis shows it before its broadcasts are confirmed)
        (s) => s.counts.staleDowns === 1 && s.counts.droppedSignals === 1 && s.online,
      );
      expect(Object.keys(st.connections)).toEqual([a.connectionId]);
      expect(await observed(user)).toMatchObject({ redisOnline: true, connections: [a.connectionId] });
      await stack.client.invalidate(a.connectionId, 'test over');
      await waitFor(
        'offline',
        () => observed(user),
        (o) => !o.redisOnline && o.dbOnline === false,
      );
      // The broadcast follows the Redis/DB writes: wait for it, then make sure no other comes.
      await waitFor(
        'offline broadcast',
        () => capture.events(),
        (e) => e.length >= 4,
      );
      await capture.drain();
      expect(capture.events()).toEqual(['connection:status', 'connect', 'connection:status', 'disconnect']);
    } finally {
      await capture.close();
    }
  });

  it('many users at once stay independent: each gets exactly its own edges', async () => {
    const users = await Promise.all(Array.from({ length: 5 }, () => newUser()));
    try {
      const sessions = users.map(({ user }) => [sessionOf(user), sessionOf(user), sessionOf(user)]);
      await Promise.all(sessions.flat().map((s) => stack.client.connected(s)));
      for (const [i, { user }] of users.entries()) {
        const o = await waitFor(
          'online',
          () => observed(user),
          (x) => x.redisOnline && x.connections.length === 3,
        );
        expect(o.connections).toEqual(ids(sessions[i]!));
      }
      await Promise.all(sessions.flat().map((s) => stack.client.disconnected(s)));
      for (const { user } of users) {
        await waitFor(
          'offline',
          () => observed(user),
          (x) => !x.redisOnline && x.dbOnline === false && x.connections.length === 0,
          15_000,
        );
      }
      for (const { capture } of users) {
        await capture.drain();
        expect(capture.events()).toEqual(['connection:status', 'connect', 'connection:status', 'disconnect']);
      }
    } finally {
      await Promise.all(users.map(({ capture }) => capture.close()));
    }
  });

  it('continues as new under a stream of ups for reconnects (as workers before 0.6.2 sent) without losing the user or making an edge', async () => {
    const { user, capture } = await newUser();
    try {
      let a = sessionOf(user);
      const workflowId = userWorkflowId(appPid, user.clientId);
      // Started here with a tiny history budget; the session workflows' signals go to this run.
      await env.client.workflow.signalWithStart('userWorkflow', {
        workflowId,
        taskQueue: stack.taskQueue,
        args: [{ appPid, clientId: user.clientId, maxHistoryEvents: 40 }],
        signal: connectionUpSignal,
        signalArgs: [{ connectionId: a.connectionId, session: a }],
      });
      await stack.client.connected(a);
      await waitFor(
        'online',
        () => observed(user),
        (o) => o.redisOnline && o.connections.length === 1,
      );
      const firstRun = (await env.client.workflow.getHandle(workflowId).describe()).runId;
      const handle = env.client.workflow.getHandle(workflowId);
      for (let i = 0; i < 15; i++) {
        a = reconnect(a);
        await stack.client.connected(a);
        // Since 0.6.2 the session sends no up for a reconnect; an older worker's connect did.
        await handle.signal(connectionUpSignal, { connectionId: a.connectionId, session: a });
        await waitFor(
          'up delivered',
          () => userState(user),
          (st) => st.connections[a.connectionId]?.socketId === a.socketId,
        );
      }
      const st = await userState(user);
      expect(st.counts.continuedAsNew).toBeGreaterThanOrEqual(1);
      expect(st.online).toBe(true);
      expect(st.recorded).toEqual([a.connectionId]);
      expect((await env.client.workflow.getHandle(workflowId).describe()).runId).not.toBe(firstRun);

      await stack.client.disconnected(a);
      await waitFor(
        'offline',
        () => observed(user),
        (o) => !o.redisOnline && o.dbOnline === false && o.connections.length === 0,
        15_000,
      );
      await capture.drain();
      expect(capture.events()).toEqual(['connection:status', 'connect', 'connection:status', 'disconnect']);
    } finally {
      await capture.close();
    }
  });

  it('an anonymous session starts no user workflow', async () => {
    const { appPid: app } = await seedApp(stack.resources);
    const s = makeSession(app);
    await stack.client.connected(s);
    await stack.client.invalidate(s.connectionId, 'test over');
    await waitFor(
      'destroyed',
      async () => (await stack.client.describe(s.connectionId))?.status,
      (st) => st === 'destroyed',
    );
    const found: string[] = [];
    for await (const wf of env.client.workflow.list({ query: `WorkflowType = "userWorkflow" AND AppPid = "${app}"` })) {
      found.push(wf.workflowId);
    }
    expect(found).toEqual([]);
  });
});
