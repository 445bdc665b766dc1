import { randomUUID } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities } from '../src/activities';
import { HEARTBEAT_KEY, keys } from '../src/stores/redis/keys';
import type { Session } from '../src/contracts/session';
import { ensureSweepSchedule } from '../src/service/sweep-schedule';
import { sessionWorkflowId } from '../src/contracts/session';
import {
  sweepProgressQuery,
  type SweepAnchor,
  type SweepProgress,
  type SweepWorkflowInput,
} from '../src/contracts/sweep';
import { captureUserBroadcasts, waitFor } from './helpers/broadcasts';
import { makeSession, nanoid, seedApp, seedUser, startStack, testConfig, testLogger } from './helpers/stack';
import { devServerEnv } from './helpers/temporal';

const IDLE = 30_000;
const STALE_AGE = 10 * 60_000; // well past 4 × idle

/**
 * The sweep (contract §4.1, §7 defect 5) on the dev server: hundreds of stale ids of the old
 * deployment and of lost workflows, mixed with live ones. Every run is limited to this file's
 * apps (`appPids`), since `heartbeat:keepalive` is shared with everything else on this machine.
 */
describe('sweep (dev server)', () => {
  let env: TestWorkflowEnvironment;
  let stack: Awaited<ReturnType<typeof startStack>>;

  beforeAll(async () => {
    env = await devServerEnv();
    stack = await startStack(env, testConfig({ WS_IDLE_TIMEOUT_MS: String(IDLE) }));
  });
  afterAll(async () => {
    await stack?.stop();
    await env?.teardown();
  });

  const redis = () => stack.resources.redis;
  const pg = () => stack.resources.pg;
  type User = Awaited<ReturnType<typeof seedUser>>;

  /** What the gateway and presence service leave per connection: subscriptions, presence, users. */
  async function seedConnectionState(appPid: string, cids: string[], room: string, score: number) {
    const tx = redis().multi();
    for (const cid of cids) {
      tx.hset(keys.rooms(cid), room, '1', `$$:${appPid}:3`, '1')
        .hset(keys.roomSubscriptions(cid, 'subscriptions', room), 'sub', '1')
        .hset(keys.roomSubscriptions(cid, 'presence', room), 'sub', '1')
        .hset(keys.users(cid), 'target', '1')
        .hset(keys.userSubscriptions(cid, 'target'), 'sub', '1')
        .hset(keys.presenceSets(cid), room, '1')
        .hset(keys.presenceMembers(room), cid, JSON.stringify({ connectionId: cid }))
        .rpush(keys.presenceIndex(room), cid)
        .zadd(HEARTBEAT_KEY, score, cid);
    }
    await tx.exec();
  }

  /** The old deployment's rows: a session row and its connect row. */
  async function seedRows(appPid: string, appId: string, rows: { cid: string; clientId: string | null }[]) {
    const socketIds = rows.map(() => randomUUID());
    await pg().query(
      `INSERT INTO sessions ("appId", "appPid", "keyId", uid, "clientId", "connectionId", "socketId", "createdAt", "updatedAt")
       SELECT $1, $2, 'key', COALESCE(c, cid), c, cid, sid, now(), now()
       FROM unnest($3::text[], $4::text[], $5::text[]) AS t(cid, c, sid)`,
      [appId, appPid, rows.map((r) => r.cid), rows.map((r) => r.clientId), socketIds],
    );
    await pg().query(
      `INSERT INTO connections ("appId", "appPid", uid, "clientId", "connectionId", "socketId", "connectionEventType", "connectionChange", "createdAt")
       SELECT $1, $2, COALESCE(c, cid), c, cid, sid, 'connect', 1, now()
       FROM unnest($3::text[], $4::text[], $5::text[]) AS t(cid, c, sid)`,
      [appId, appPid, rows.map((r) => r.cid), rows.map((r) => r.clientId), socketIds],
    );
  }

  /** A user the old deployment left online with these connections. */
  async function seedLegacyUser(appPid: string, user: User, cids: string[]) {
    await redis()
      .multi()
      .hset(keys.usersOnline(appPid), user.clientId, JSON.stringify({ ...user, isOnline: true }))
      .hset(keys.clientConnections(appPid, user.clientId), ...cids.flatMap((c) => [c, String(Date.now() - STALE_AGE)]))
      .exec();
    await pg().query(`UPDATE authentication_users SET "isOnline" = true, "lastOnline" = now() WHERE id = $1`, [
      user.id,
    ]);
  }

  async function userView(appPid: string, user: User) {
    const { rows } = await pg().query<{ isOnline: boolean | null }>(
      'SELECT "isOnline" FROM authentication_users WHERE id = $1',
      [user.id],
    );
    return {
      redisOnline: (await redis().hexists(keys.usersOnline(appPid), user.clientId)) === 1,
      connections: Object.keys(await redis().hgetall(keys.clientConnections(appPid, user.clientId))).sort(),
      dbOnline: rows[0]?.isOnline ?? null,
    };
  }

  const connectionKeys = (cid: string, room: string) => [
    keys.rooms(cid),
    keys.roomSubscriptions(cid, 'subscriptions', room),
    keys.roomSubscriptions(cid, 'presence', room),
    keys.users(cid),
    keys.userSubscriptions(cid, 'target'),
    keys.presenceSets(cid),
  ];

  async function runSweep(input: Omit<SweepWorkflowInput, 'idleTimeoutMs'>): Promise<SweepProgress> {
    const handle = await env.client.workflow.start('sweepWorkflow', {
      taskQueue: stack.taskQueue,
      workflowId: `sweep-test-${nanoid()}`,
      args: [{ idleTimeoutMs: IDLE, ...input }],
    });
    const result = (await handle.result()) as SweepProgress;
    expect(await handle.query(sweepProgressQuery)).toEqual(result);
    return result;
  }

  it('cleans every stale id beyond 250 (legacy and lost workflows), leaves live ones alone and stops rescanning them', async () => {
    const { appPid, appId } = await seedApp(stack.resources);
    const room = `${appPid}:room-${nanoid(6)}`;
    const old = Date.now() - STALE_AGE;
    await redis().hset(keys.presenceMembers(room), `${appPid}:someoneelse`, '{}');
    await redis().rpush(keys.presenceIndex(room), `${appPid}:someoneelse`);

    // 1. 260 anonymous ids the old deployment left behind: no workflow, no marker.
    const anonymous = Array.from({ length: 260 }, () => `${appPid}:${nanoid()}`);
    await seedConnectionState(appPid, anonymous, room, old);
    await seedRows(
      appPid,
      appId,
      anonymous.map((cid) => ({ cid, clientId: null })),
    );

    // 2. A legacy user online with three stale connections: goes offline once.
    const u1 = await seedUser(stack.resources);
    const u1Capture = await captureUserBroadcasts(stack.config, u1.clientId);
    const u1Cids = [0, 1, 2].map(() => `${appPid}:${nanoid()}`);
    await seedConnectionState(appPid, u1Cids, room, old);
    await seedRows(
      appPid,
      appId,
      u1Cids.map((cid) => ({ cid, clientId: u1.clientId })),
    );
    await seedLegacyUser(appPid, u1, u1Cids);

    // 3. A legacy user with one stale connection and one live one (marker): stays online.
    const u2 = await seedUser(stack.resources);
    const u2Capture = await captureUserBroadcasts(stack.config, u2.clientId);
    const [u2Stale, u2Live] = [`${appPid}:${nanoid()}`, `${appPid}:${nanoid()}`];
    await seedConnectionState(appPid, [u2Stale, u2Live], room, old);
    await seedRows(appPid, appId, [
      { cid: u2Stale, clientId: u2.clientId },
      { cid: u2Live, clientId: u2.clientId },
    ]);
    await seedLegacyUser(appPid, u2, [u2Stale, u2Live]);
    await redis().set(keys.active(u2Live), JSON.stringify({ connectionId: u2Live }), 'EX', 600);

    // 4. Twenty legacy ids live by their marker although their score is stale (upstream kept these forever).
    const marked = Array.from({ length: 20 }, () => `${appPid}:${nanoid()}`);
    await seedConnectionState(appPid, marked, room, old);
    for (const cid of marked) await redis().set(keys.active(cid), JSON.stringify({ connectionId: cid }), 'EX', 600);

    // 5. Live session workflows (five anonymous, one of a user) whose score went stale and marker expired.
    const u3 = await seedUser(stack.resources);
    const running: Session[] = [
      ...Array.from({ length: 5 }, () => makeSession(appPid)),
      makeSession(appPid, { uid: u3.clientId, clientId: u3.clientId, user: u3 }),
    ];
    for (const s of running) await stack.client.connected(s);
    await waitFor(
      'u3 online',
      () => userView(appPid, u3),
      (v) => v.redisOnline && v.dbOnline === true,
    );

    // 6. A user session whose workflow was terminated (lost): its user is online and must go offline.
    const u4 = await seedUser(stack.resources);
    const u4Capture = await captureUserBroadcasts(stack.config, u4.clientId);
    const lost = makeSession(appPid, { uid: u4.clientId, clientId: u4.clientId, user: u4 });
    await stack.client.connected(lost);
    await waitFor(
      'u4 online',
      () => userView(appPid, u4),
      (v) => v.redisOnline && v.connections.length === 1,
    );
    await env.client.workflow.getHandle(sessionWorkflowId(lost.connectionId)).terminate('lost');

    const liveWorkflows = running.map((s) => s.connectionId);
    await seedConnectionState(appPid, [...liveWorkflows, lost.connectionId], room, old);
    await redis().del(...[...running, lost].map((s) => keys.active(s.connectionId)));

    const stale = [...anonymous, ...u1Cids, u2Stale, lost.connectionId];
    const live = [...marked, u2Live, ...liveWorkflows];
    expect(stale.length + live.length).toBeGreaterThan(250);

    const startedAt = Date.now();
    const progress = await runSweep({ appPids: [appPid], pageSize: 100, concurrency: 8 });
    expect(progress).toMatchObject({
      cleaned: stale.length,
      skipped: live.length,
      failed: 0,
      done: true,
    });
    expect(progress.scanned).toBeGreaterThanOrEqual(stale.length + live.length);
    expect(progress.pages).toBeGreaterThanOrEqual(3);

    // Stale: every key gone, no score, presence without them, disconnectedAt set.
    for (const cid of stale) {
      expect(await redis().exists(...connectionKeys(cid, room))).toBe(0);
    }
    const scores = await redis().zmscore(HEARTBEAT_KEY, ...stale);
    expect(scores.every((s) => s === null)).toBe(true);
    expect(await redis().hkeys(keys.presenceMembers(room))).toEqual(expect.arrayContaining([`${appPid}:someoneelse`]));
    const members = new Set(await redis().hkeys(keys.presenceMembers(room)));
    expect(stale.filter((c) => members.has(c))).toEqual([]);
    const index = new Set(await redis().lrange(keys.presenceIndex(room), 0, -1));
    expect(stale.filter((c) => index.has(c))).toEqual([]);
    const { rows } = await pg().query<{ n: string }>(
      `SELECT count(*) AS n FROM sessions WHERE "connectionId" = ANY($1) AND "disconnectedAt" IS NOT NULL`,
      [stale.filter((c) => c !== lost.connectionId && !liveWorkflows.includes(c))],
    );
    expect(Number(rows[0]!.n)).toBe(stale.length - 1);

    // Live: untouched, still members, scores refreshed past the cutoff (no longer stale).
    for (const cid of live) {
      expect(await redis().exists(...connectionKeys(cid, room))).toBe(connectionKeys(cid, room).length);
      expect(members.has(cid)).toBe(true);
    }
    const liveScores = await redis().zmscore(HEARTBEAT_KEY, ...live);
    expect(liveScores.every((s) => s !== null && Number(s) >= startedAt)).toBe(true);
    for (const s of running) {
      expect((await stack.client.describe(s.connectionId))?.status).toBe('connected');
    }

    // Users: u1 and u4 offline (Redis and DB agree), each with exactly one disconnect; u2 and u3 online.
    const u1View = await waitFor(
      'u1 offline',
      () => userView(appPid, u1),
      (v) => !v.redisOnline && v.dbOnline === false && v.connections.length === 0,
    );
    expect(u1View.connections).toEqual([]);
    await waitFor(
      'u4 offline',
      () => userView(appPid, u4),
      (v) => !v.redisOnline && v.dbOnline === false && v.connections.length === 0,
    );
    expect(await userView(appPid, u2)).toEqual({ redisOnline: true, connections: [u2Live], dbOnline: true });
    expect(await userView(appPid, u3)).toMatchObject({
      redisOnline: true,
      dbOnline: true,
      connections: [running[5]!.connectionId],
    });
    await new Promise((r) => setTimeout(r, 1_500));
    expect(u1Capture.events()).toEqual(['connection:status', 'disconnect']);
    expect(u1Capture.messages[1]!.body.data).toMatchObject({ id: u1.id, isOnline: false });
    expect(u2Capture.events()).toEqual([]);
    expect(u4Capture.events()).toEqual(['connection:status', 'connect', 'connection:status', 'disconnect']);
    await Promise.all([u1Capture.close(), u2Capture.close(), u4Capture.close()]);

    // A second run finds nothing of this app to do: the live ids are no longer stale.
    const again = await runSweep({ appPids: [appPid] });
    expect(again).toMatchObject({ cleaned: 0, skipped: 0, failed: 0, done: true });

    for (const s of running) await stack.client.invalidate(s.connectionId, 'test over');
  });

  it('pins the stale threshold at now − 4 × idle: 3.5 × idle old is kept, 4.5 × idle old is cleaned', async () => {
    // Contract §3: stale means a score older than now − 4 × idle. Margins of half an idle (15 s here,
    // far more than the time between seeding and the workflow's now) put the two ids on either side
    // of 4 × idle and inside 3 × and 5 ×: a threshold of 3 × idle cleans the first, 5 × keeps the second.
    const { appPid } = await seedApp(stack.resources);
    const recent = `${appPid}:${nanoid()}`;
    const old = `${appPid}:${nanoid()}`;
    const now = Date.now();
    const recentScore = now - 4 * IDLE + IDLE / 2;
    const oldScore = now - 4 * IDLE - IDLE / 2;
    await redis().zadd(HEARTBEAT_KEY, recentScore, recent, oldScore, old);
    try {
      const progress = await runSweep({ appPids: [appPid] });
      expect(progress).toMatchObject({ cleaned: 1, failed: 0 });
      expect(await redis().zscore(HEARTBEAT_KEY, old)).toBeNull();
      expect(Number(await redis().zscore(HEARTBEAT_KEY, recent))).toBe(recentScore);
    } finally {
      await redis().zrem(HEARTBEAT_KEY, recent, old);
    }
  });

  it('pages after an anchor: out-of-scope ids stay in place, and an anchor removed between pages loses nothing', async () => {
    const [{ appPid: mine }, { appPid: other }] = [await seedApp(stack.resources), await seedApp(stack.resources)];
    const base = Date.now() - STALE_AGE;
    // Interleaved, pairs sharing a score: the page boundaries fall inside groups of equal scores.
    const ours = Array.from({ length: 40 }, () => `${mine}:${nanoid()}`);
    const theirs = Array.from({ length: 40 }, () => `${other}:${nanoid()}`);
    const tx = redis().multi();
    ours.forEach((cid, i) => tx.zadd(HEARTBEAT_KEY, base + Math.floor(i / 4), cid));
    theirs.forEach((cid, i) => tx.zadd(HEARTBEAT_KEY, base + Math.floor(i / 4), cid));
    await tx.exec();

    const activities = createActivities({
      ...stack.resources,
      config: stack.config,
      logger: testLogger,
      temporal: env.client,
      taskQueue: stack.taskQueue,
    });
    const cutoff = Date.now() - 4 * IDLE;
    // Start just before our ids: the shared zset may hold other runs' stale ids with older scores.
    let anchor: SweepAnchor | null = { member: ' ', score: String(base - 1) };
    let cleaned = 0;
    const removedAnchors: string[] = [];
    for (let pages = 0; pages < 100; pages++) {
      const page = await activities.sweepPage({ cutoff, limit: 7, concurrency: 3, anchor, appPids: [mine] });
      cleaned += page.cleaned;
      expect(page.failed).toBe(0);
      anchor = page.anchor;
      // Our own out-of-scope anchor leaves the set before the next page (only ours: the zset is shared).
      if (anchor?.member.startsWith(`${other}:`) && removedAnchors.length < 5) {
        await redis().zrem(HEARTBEAT_KEY, anchor.member);
        removedAnchors.push(anchor.member);
      }
      if (page.read < 7) break;
    }
    expect(removedAnchors.length).toBe(5);
    expect(cleaned).toBe(ours.length);
    expect((await redis().zmscore(HEARTBEAT_KEY, ...ours)).every((x) => x === null)).toBe(true);
    const left = theirs.filter((c) => !removedAnchors.includes(c));
    expect((await redis().zmscore(HEARTBEAT_KEY, ...left)).every((x) => x !== null)).toBe(true);
    await redis().zrem(HEARTBEAT_KEY, ...theirs);
  });

  it('the schedule is created once and updated in place, runs the sweep every CRON_SCHEDULE_MINS with overlap SKIP', async () => {
    const { appPid, appId } = await seedApp(stack.resources);
    const cid = `${appPid}:${nanoid()}`;
    const room = `${appPid}:room`;
    await seedConnectionState(appPid, [cid], room, Date.now() - STALE_AGE);
    await seedRows(appPid, appId, [{ cid, clientId: null }]);

    const scheduleId = `sweep-test-${nanoid()}`;
    const opts = { scheduleId, taskQueue: stack.taskQueue, sweep: { appPids: [appPid] } };
    // Workers starting together: one creates, the other updates, neither fails.
    const starts = await Promise.all(
      [1, 2].map(() => ensureSweepSchedule(env.client, testConfig({ CRON_SCHEDULE_MINS: '5' }), opts)),
    );
    expect(starts.map((r) => r.created).sort()).toEqual([false, true]);
    const config = testConfig({ CRON_SCHEDULE_MINS: '7', WS_IDLE_TIMEOUT_MS: String(IDLE) });
    const second = await ensureSweepSchedule(env.client, config, opts);
    expect(second).toEqual({ scheduleId, created: false });

    const handle = env.client.schedule.getHandle(scheduleId);
    try {
      const d = await handle.describe();
      expect(d.spec.intervals).toEqual([expect.objectContaining({ every: 7 * 60_000 })]);
      expect(d.policies.overlap).toBe('SKIP');
      expect(d.policies.catchupWindow).toBe(7 * 60_000);
      expect(d.action).toMatchObject({
        type: 'startWorkflow',
        workflowType: 'sweepWorkflow',
        taskQueue: stack.taskQueue,
      });
      expect(d.action.args).toEqual([{ appPids: [appPid], idleTimeoutMs: IDLE }]);

      await handle.trigger();
      const run = await waitFor(
        'a sweep started by the schedule',
        async () => (await handle.describe()).info.recentActions,
        (a) => a.length > 0,
      );
      const wf = env.client.workflow.getHandle(run[0]!.action.workflow.workflowId);
      const result = (await wf.result()) as SweepProgress;
      expect(result).toMatchObject({ cleaned: 1, failed: 0, done: true });
      expect(await redis().exists(keys.rooms(cid))).toBe(0);
      expect(await redis().zscore(HEARTBEAT_KEY, cid)).toBeNull();
    } finally {
      await handle.delete();
    }
  });
});
