import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import amqp from 'amqplib';
import { createActivities } from '../src/activities';
import { ROOMS_EXCHANGE, javaStringHash, roomRoutingKey, userRoutingKey } from '../src/stores/amqp/routing';
import type { Config } from '../src/config';
import { createLogger } from '../src/logger';
import { openResources, type Resources } from '../src/service/resources';
import type { Session } from '../src/contracts/session';
import { PgStore } from '../src/stores/postgres';
import { GatewayIndex } from '../src/stores/redis/gateway-index';
import { markerTemplate, sessionOfTemplate } from '../src/stores/redis/marker';
import { waitFor } from './helpers/broadcasts';
import { makeSession, nanoid, seedApp, seedUser, testConfig, testLogger } from './helpers/stack';

/**
 * The activities against the real Redis, Postgres and RabbitMQ, called as plain functions (no
 * Temporal). Keys, TTLs, rows and messages are written out literally from the contract
 * (docs/contract.md §4–§6), not taken from src/stores/redis/keys.ts, so that a
 * wrong key in the implementation fails here. Every id is random: other tests share the services.
 */

const IDLE_MS = 30_000;
const QUEUE_COUNT = 20;
const NAMESPACES = ['subscriptions', 'presence', 'metrics', 'intellect'];

// Java's "room1".hashCode() (114·31⁴ + 111·31³ + 111·31² + 109·31 + 49), bucket 14 of 20.
const ROOM1 = { roomId: 'room1', hash: 108_698_294, bucket: 14 };
// Room ids with ':' and a negative Java hash: the bucket is ((h % 20) + 20) % 20 as the gateway
// computes it; Math.abs(h % 20) would give 6 and 8 and route the message to nobody.
const CHAT = { roomId: 'chat:general', hash: -1_179_717_946, bucket: 14 };
const LOBBY = { roomId: 'game:lobby:eu', hash: -1_366_516_388, bucket: 12 };

interface Captured {
  routingKey: string;
  messageId?: string;
  body: {
    nspRoomId: string;
    event: string;
    data: Record<string, unknown>;
    service: string;
    session: unknown;
    sentinel?: string;
  };
}

/** An exclusive auto-delete queue bound to the rooms exchange with the given routing keys. */
async function captureRoutingKeys(config: Config, routingKeys: string[]) {
  const connection = await amqp.connect(config.rabbitmq.url);
  const channel = await connection.createChannel();
  await channel.assertExchange(ROOMS_EXCHANGE, 'topic', { durable: true });
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  for (const key of routingKeys) await channel.bindQueue(queue, ROOMS_EXCHANGE, key);
  const messages: Captured[] = [];
  await channel.consume(
    queue,
    (m) => {
      if (m)
        messages.push({
          routingKey: m.fields.routingKey,
          ...(typeof m.properties.messageId === 'string' && { messageId: m.properties.messageId }),
          body: JSON.parse(m.content.toString()) as Captured['body'],
        });
    },
    { noAck: true },
  );
  return {
    messages,
    /** Messages other than sentinels. */
    broadcasts: () => messages.filter((m) => m.body.sentinel === undefined),
    async close() {
      await channel.close().catch(() => undefined);
      await connection.close().catch(() => undefined);
    },
  };
}

/** The removal part of a presence leave's message id (after the room). */
const removalOf = (m: { messageId?: string }) => m.messageId!.slice(m.messageId!.lastIndexOf(':') + 1);

describe('activities against real Redis, Postgres and RabbitMQ', () => {
  let config: Config;
  let resources: Resources;
  let activities: ReturnType<typeof createActivities>;
  const touchedKeys = new Set<string>();
  const touchedApps: string[] = [];

  beforeAll(() => {
    config = testConfig({ WS_IDLE_TIMEOUT_MS: String(IDLE_MS), RABBIT_MQ_QUEUE_COUNT: String(QUEUE_COUNT) });
    resources = openResources(config);
    activities = createActivities({ ...resources, config, logger: testLogger });
  });
  afterAll(async () => {
    const cids = [...touchedKeys].filter((k) => /^session:.*:active$/.test(k)).map((k) => k.slice(8, -7));
    if (cids.length > 0) await resources.redis.zrem('heartbeat:keepalive', ...cids);
    if (touchedKeys.size > 0) await resources.redis.del(...touchedKeys);
    for (const appPid of touchedApps) {
      await resources.pg.query('DELETE FROM connections WHERE "appPid" = $1', [appPid]);
      await resources.pg.query('DELETE FROM sessions WHERE "appPid" = $1', [appPid]);
      await resources.pg.query('DELETE FROM applications WHERE pid = $1', [appPid]);
    }
    await resources.close();
  });

  const redis = () => resources.redis;
  const track = (...ks: string[]) => ks.forEach((k) => touchedKeys.add(k));

  async function app(): Promise<string> {
    const { appPid } = await seedApp(resources);
    touchedApps.push(appPid);
    return appPid;
  }

  /** An authenticated session: uid = clientId, with the user object the gateway holds. */
  async function userSession(appPid: string): Promise<Session> {
    const user = await seedUser(resources);
    return makeSession(appPid, { uid: user.clientId, clientId: user.clientId, user });
  }

  async function scanKeys(pattern: string): Promise<string[]> {
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis().scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      found.push(...batch);
    } while (cursor !== '0');
    return found.sort();
  }

  /**
   * What the gateway and the presence service write for a connection (§4): the rooms hash (rooms
   * and a routing-key field), the four per-room namespace hashes, the users index and per-user
   * subscriptions, the presence-sets hash, and the connection's presence membership. Returns the
   * connection:{cid}:* keys written.
   */
  async function seedConnection(
    session: Session,
    { rooms, presenceRooms, users }: { rooms: string[]; presenceRooms: string[]; users: string[] },
  ): Promise<string[]> {
    const cid = session.connectionId;
    const written: string[] = [];
    const m = redis().multi();
    const roomsKey = `connection:${cid}:rooms`;
    for (const room of rooms) m.hset(roomsKey, room, new Date().toISOString());
    m.hset(roomsKey, `$$:${session.appPid}:${ROOM1.bucket}`, '1'); // a routing-key field, no room
    written.push(roomsKey);
    for (const room of rooms) {
      for (const ns of NAMESPACES) {
        const k = `connection:${cid}:${ns}:${room}`;
        m.hset(k, `${room}::${ns}:event`, '1');
        written.push(k);
      }
    }
    const usersKey = `connection:${cid}:users`;
    for (const clientId of users) {
      m.hset(usersKey, clientId, '1');
      const k = `connection:${cid}:users:${clientId}`;
      m.hset(k, `users:${clientId}:$:user:connect`, '1');
      written.push(k);
    }
    if (users.length > 0) written.push(usersKey);
    const setsKey = `connection:${cid}:presence-sets`;
    for (const room of presenceRooms) {
      m.hset(setsKey, room, '1');
      m.hset(`presence:${room}:members`, cid, JSON.stringify({ clientId: session.clientId, connectionId: cid }));
      m.rpush(`presence:${room}:index`, cid);
      track(`presence:${room}:members`, `presence:${room}:index`);
    }
    if (presenceRooms.length > 0) written.push(setsKey);
    await m.exec();
    track(...written, `session:${cid}:active`, `connection:${cid}:presence-leaving`);
    return written.sort();
  }

  /** Another member of a presence room (a different connection), written before and after ours. */
  async function seedOtherMember(room: string, position: 'before' | 'after'): Promise<string> {
    const other = `${room.split(':')[0]}:${nanoid()}`;
    await redis().hset(`presence:${room}:members`, other, JSON.stringify({ connectionId: other }));
    if (position === 'before') await redis().lpush(`presence:${room}:index`, other);
    else await redis().rpush(`presence:${room}:index`, other);
    track(`presence:${room}:members`, `presence:${room}:index`);
    return other;
  }

  /**
   * Absence of a message, deterministically: a sentinel published on the same channel after the
   * activity arrives after anything the activity published to the same queue.
   */
  async function drain(capture: Awaited<ReturnType<typeof captureRoutingKeys>>, routingKey: string) {
    const sentinel = randomUUID();
    await resources.amqp.publish(routingKey, { sentinel });
    await waitFor(
      'sentinel',
      () => capture.messages.some((m) => m.body.sentinel === sentinel),
      (v) => v,
      10_000,
    );
  }

  describe('routing (§6)', () => {
    it('javaStringHash matches Java String.hashCode, including 32-bit overflow to negative values', () => {
      expect(javaStringHash(ROOM1.roomId)).toBe(ROOM1.hash);
      expect(javaStringHash(CHAT.roomId)).toBe(CHAT.hash);
      expect(javaStringHash(LOBBY.roomId)).toBe(LOBBY.hash);
      expect(javaStringHash('')).toBe(0);
    });

    it('routes a room by the id after the first ":" with a non-negative bucket, also for negative hashes', () => {
      expect(roomRoutingKey(`Fef8GnS7C5zN:${ROOM1.roomId}`, QUEUE_COUNT)).toBe(`$$:Fef8GnS7C5zN:${ROOM1.bucket}`);
      expect(roomRoutingKey(`Fef8GnS7C5zN:${CHAT.roomId}`, QUEUE_COUNT)).toBe(`$$:Fef8GnS7C5zN:${CHAT.bucket}`);
      expect(roomRoutingKey(`Fef8GnS7C5zN:${LOBBY.roomId}`, QUEUE_COUNT)).toBe(`$$:Fef8GnS7C5zN:${LOBBY.bucket}`);
      // Users are not app-scoped: `$$:users:{bucket(clientId)}`.
      expect(userRoutingKey(LOBBY.roomId, QUEUE_COUNT)).toBe(`$$:users:${LOBBY.bucket}`);
    });
  });

  describe('markSessionLive (§4.1 mark live)', () => {
    it('writes the marker JSON with socketId and timestamp, EX 3 × idle seconds, and the heartbeat score', async () => {
      const appPid = await app();
      const session = await userSession(appPid);
      const cid = session.connectionId;
      track(`session:${cid}:active`);
      const at = Date.now() - 1_234;
      await activities.markSessionLive({ session, at });

      const marker = await redis().get(`session:${cid}:active`);
      expect(JSON.parse(marker!)).toEqual({ ...session, timestamp: new Date(at).toISOString() });
      const ttl = await redis().pttl(`session:${cid}:active`);
      expect(ttl).toBeGreaterThan(((3 * IDLE_MS) / 1000 - 2) * 1000);
      expect(ttl).toBeLessThanOrEqual(90_000); // 3 × 30 s
      expect(await redis().zscore('heartbeat:keepalive', cid)).toBe(String(at));
    });

    it('a pong moves the score forward and renews the marker lifetime, a new socket replaces the socketId', async () => {
      const appPid = await app();
      const session = makeSession(appPid);
      const cid = session.connectionId;
      track(`session:${cid}:active`);
      const at = Date.now() - 60_000;
      await activities.markSessionLive({ session, at });
      await redis().expire(`session:${cid}:active`, 5);
      const reconnected = { ...session, socketId: randomUUID() };
      await activities.markSessionLive({ session: reconnected, at: at + 30_000 });

      const marker = JSON.parse((await redis().get(`session:${cid}:active`))!) as Session;
      expect(marker.socketId).toBe(reconnected.socketId);
      expect(marker.timestamp).toBe(new Date(at + 30_000).toISOString());
      expect(await redis().ttl(`session:${cid}:active`)).toBeGreaterThan(80);
      expect(await redis().zscore('heartbeat:keepalive', cid)).toBe(String(at + 30_000));
    });

    it('derives the marker lifetime from WS_IDLE_TIMEOUT_MS (7 s idle: EX 21)', async () => {
      const short = testConfig({ WS_IDLE_TIMEOUT_MS: '7000', RABBIT_MQ_QUEUE_COUNT: String(QUEUE_COUNT) });
      const acts = createActivities({ ...resources, config: short, logger: testLogger });
      const session = makeSession(await app());
      track(`session:${session.connectionId}:active`);
      await acts.markSessionLive({ session, at: Date.now() });
      const ttl = await redis().pttl(`session:${session.connectionId}:active`);
      expect(ttl).toBeGreaterThan(19_000);
      expect(ttl).toBeLessThanOrEqual(21_000);
    });
  });

  describe('recordConnectionEvent (§5)', () => {
    async function sessionRows(cid: string) {
      const { rows } = await resources.pg.query<{
        appId: string;
        appPid: string;
        keyId: string;
        uid: string;
        clientId: string | null;
        connectionId: string;
        socketId: string;
        createdAt: Date;
        updatedAt: Date;
        deletedAt: Date | null;
        disconnectedAt: Date | null;
      }>(
        `SELECT "appId", "appPid", "keyId", uid, "clientId", "connectionId", "socketId", "createdAt", "updatedAt",
                "deletedAt", "disconnectedAt"
         FROM sessions WHERE "connectionId" = $1`,
        [cid],
      );
      return rows;
    }

    async function connectionRows(cid: string) {
      const { rows } = await resources.pg.query<{
        appId: string;
        appPid: string;
        uid: string;
        clientId: string | null;
        connectionId: string;
        socketId: string;
        connectionEventType: string;
        connectionChange: number;
        createdAtMs: number;
      }>(
        `SELECT "appId", "appPid", uid, "clientId", "connectionId", "socketId", "connectionEventType",
                "connectionChange", round(extract(epoch FROM "createdAt") * 1000)::float8 AS "createdAtMs"
         FROM connections WHERE "connectionId" = $1 ORDER BY "connectionEventType"`,
        [cid],
      );
      return rows;
    }

    it('connect then disconnect: one sessions row (updatedAt bumped), one connect +1 and one disconnect -1 row at gateway time', async () => {
      const { appPid, appId } = await seedApp(resources);
      touchedApps.push(appPid);
      const session = await userSession(appPid);
      const cid = session.connectionId;
      const connectAt = Date.now() - 3_600_000 + 123; // an hour ago: not the database's now()
      const disconnectAt = connectAt + 45_678;

      expect(await activities.recordConnectionEvent({ session, type: 'connect', at: connectAt })).toEqual({
        currentSocket: true,
      });
      const [afterConnect, ...extra] = await sessionRows(cid);
      expect(extra).toHaveLength(0);
      expect(afterConnect).toMatchObject({
        appId,
        appPid,
        keyId: session.keyId,
        uid: session.clientId,
        clientId: session.clientId,
        connectionId: cid,
        socketId: session.socketId,
        deletedAt: null,
        disconnectedAt: null,
      });
      expect(await connectionRows(cid)).toEqual([
        {
          appId,
          appPid,
          uid: session.uid,
          clientId: session.clientId,
          connectionId: cid,
          socketId: session.socketId,
          connectionEventType: 'connect',
          connectionChange: 1,
          createdAtMs: connectAt,
        },
      ]);

      await new Promise((r) => setTimeout(r, 20));
      expect(await activities.recordConnectionEvent({ session, type: 'disconnect', at: disconnectAt })).toEqual({
        currentSocket: true,
      });
      const rows = await sessionRows(cid);
      expect(rows).toHaveLength(1);
      expect(rows[0]!.createdAt).toEqual(afterConnect!.createdAt);
      expect(rows[0]!.updatedAt.getTime()).toBeGreaterThan(afterConnect!.updatedAt.getTime());
      const events = await connectionRows(cid);
      expect(events.map((e) => [e.connectionEventType, e.connectionChange, e.createdAtMs, e.socketId])).toEqual([
        ['connect', 1, connectAt, session.socketId],
        ['disconnect', -1, disconnectAt, session.socketId],
      ]);
    });

    it('a reconnect updates the connect row socketId in place; the old socket disconnect is stale (currentSocket false)', async () => {
      const appPid = await app();
      const first = makeSession(appPid);
      const cid = first.connectionId;
      const second = { ...first, socketId: randomUUID() };
      const t0 = Date.now() - 10_000;

      await activities.recordConnectionEvent({ session: first, type: 'connect', at: t0 });
      await activities.recordConnectionEvent({ session: second, type: 'connect', at: t0 + 1_000 });
      expect(
        (await connectionRows(cid)).map((e) => [e.connectionEventType, e.connectionChange, e.createdAtMs, e.socketId]),
      ).toEqual([['connect', 1, t0, second.socketId]]);

      expect(await activities.recordConnectionEvent({ session: first, type: 'disconnect', at: t0 + 2_000 })).toEqual({
        currentSocket: false,
      });
      expect(await activities.recordConnectionEvent({ session: second, type: 'disconnect', at: t0 + 3_000 })).toEqual({
        currentSocket: true,
      });
      const events = await connectionRows(cid);
      expect(events.map((e) => [e.connectionEventType, e.connectionChange, e.createdAtMs, e.socketId])).toEqual([
        ['connect', 1, t0, second.socketId],
        ['disconnect', -1, t0 + 2_000, second.socketId],
      ]);
      const sessions = await sessionRows(cid);
      expect(sessions).toHaveLength(1);
      // On conflict only "updatedAt" changes: the row keeps the first socket it was inserted with.
      expect(sessions[0]!.socketId).toBe(first.socketId);
    });

    it('an unknown appPid fails non-retryably with type UnknownApplication, logs an error and writes nothing', async () => {
      const lines: string[] = [];
      const logger = createLogger({ level: 'error', write: (l) => lines.push(l) });
      const acts = createActivities({ ...resources, config, logger });
      const session = makeSession(nanoid()); // no applications row for this pid

      const err: unknown = await acts.recordConnectionEvent({ session, type: 'connect', at: Date.now() }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ApplicationFailure);
      expect(err).toMatchObject({ nonRetryable: true, type: 'UnknownApplication' });
      expect((err as Error).message).toContain(session.appPid);

      for (const table of ['sessions', 'connections']) {
        const { rows } = await resources.pg.query<{ n: string }>(
          `SELECT count(*) AS n FROM ${table} WHERE "connectionId" = $1 OR "appPid" = $2`,
          [session.connectionId, session.appPid],
        );
        expect([table, rows[0]!.n]).toEqual([table, '0']);
      }
      const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(logged).toEqual([
        expect.objectContaining({ level: 'error', connectionId: session.connectionId, appPid: session.appPid }),
      ]);
    });

    it('a close leaves its gateway’s index only with its own socket: an entry a reconnect wrote for a newer socket stays', async () => {
      const appPid = await app();
      const holder = { gatewayId: `gw-${nanoid()}`, incarnation: randomUUID() };
      const index = new GatewayIndex(resources.redis, IDLE_MS);
      const key = `tether:gateway:${holder.gatewayId}:${holder.incarnation}`;
      const old = makeSession(appPid);
      const again = { ...old, socketId: randomUUID() };
      track(key, `session:${old.connectionId}:active`);
      await index.enter(again, Date.now(), holder, null);
      await index.leave(old.connectionId, holder, old.socketId); // a late attempt of the old socket's close
      expect(await redis().hget(key, old.connectionId)).toContain(again.socketId);
      await index.leave(old.connectionId, holder, again.socketId);
      expect(await redis().hexists(key, old.connectionId)).toBe(0);
    });

    it('a reconnect’s connect records the old socket’s close first (its index entry, its disconnect row), then connects the new one', async () => {
      const appPid = await app();
      const [oldHolder, newHolder] = [0, 1].map(() => ({ gatewayId: `gw-${nanoid()}`, incarnation: randomUUID() }));
      const track2 = [oldHolder, newHolder].map((h) => `tether:gateway:${h!.gatewayId}:${h!.incarnation}`);
      const old = makeSession(appPid);
      const again = { ...old, socketId: randomUUID() };
      track(...track2, `session:${old.connectionId}:active`);
      const t0 = Date.now() - 10_000;
      await activities.connectSession({ session: old, at: t0, holder: oldHolder!, previousHolder: null });
      const closed = { socketId: old.socketId, at: t0 + 1_000, holder: oldHolder! };
      const reconnect = { session: again, at: t0 + 1_500, holder: newHolder!, previousHolder: oldHolder!, closed };
      const rows = async () =>
        (await connectionRows(old.connectionId)).map((e) => [e.connectionEventType, e.createdAtMs, e.socketId]);
      await activities.connectSession(reconnect);
      expect(await redis().hexists(track2[0]!, old.connectionId)).toBe(0);
      expect(await redis().hget(track2[1]!, old.connectionId)).toContain(again.socketId);
      const written = [
        ['connect', t0, again.socketId],
        ['disconnect', t0 + 1_000, old.socketId],
      ];
      expect(await rows()).toEqual(written);
      // A retry of the same connect writes the same rows.
      await activities.connectSession(reconnect);
      expect(await rows()).toEqual(written);
    });

    it('the soft destroy records an owed close before it removes presence: out of the index, the disconnect row', async () => {
      const appPid = await app();
      const holder = { gatewayId: `gw-${nanoid()}`, incarnation: randomUUID() };
      const key = `tether:gateway:${holder.gatewayId}:${holder.incarnation}`;
      const s = makeSession(appPid);
      track(key, `session:${s.connectionId}:active`);
      const t0 = Date.now() - 10_000;
      await activities.connectSession({ session: s, at: t0, holder, previousHolder: null });
      expect(await redis().hexists(key, s.connectionId)).toBe(1);
      await activities.softDestroySession({
        session: s,
        closingSocketId: s.socketId,
        close: { socketId: s.socketId, at: t0 + 2_000, holder },
      });
      expect(await redis().hexists(key, s.connectionId)).toBe(0);
      expect((await connectionRows(s.connectionId)).map((e) => [e.connectionEventType, e.createdAtMs])).toEqual([
        ['connect', t0],
        ['disconnect', t0 + 2_000],
      ]);
    });

    it('a lost gateway’s closes recorded in bulk (from the index’s marker templates) write the rows a disconnect writes; an unknown app is left out; twice is once', async () => {
      const appPid = await app();
      const t0 = Date.now() - 60_000;
      // Non-ASCII ids: the template's offset counts bytes, and must give back these exact strings.
      const one = await userSession(appPid);
      const bulk = await userSession(appPid);
      Object.assign(bulk, { keyId: `clé-${nanoid()}`, uid: `ünï-${bulk.uid}` });
      for (const s of [one, bulk]) await activities.recordConnectionEvent({ session: s, type: 'connect', at: t0 });
      const before = (await sessionRows(bulk.connectionId))[0]!;
      await new Promise((r) => setTimeout(r, 20));

      await activities.recordConnectionEvent({ session: one, type: 'disconnect', at: t0 + 5_000 });
      const stranger = makeSession(nanoid()); // no applications row
      const pgStore = new PgStore(resources.pg);
      const fromIndex = [bulk, stranger].map((s) => sessionOfTemplate(markerTemplate(s)));
      expect(fromIndex[0]).toEqual({
        appPid,
        keyId: bulk.keyId,
        uid: bulk.uid,
        clientId: bulk.clientId,
        connectionId: bulk.connectionId,
        socketId: bulk.socketId,
      });
      expect(await pgStore.recordDisconnects(fromIndex, t0 + 5_000)).toEqual([bulk.connectionId]);
      expect(await pgStore.recordDisconnects(fromIndex, t0 + 5_000)).toEqual([bulk.connectionId]);

      const shape = async (s: Session) =>
        (await connectionRows(s.connectionId)).map((e) => ({
          ...e,
          uid: e.uid === s.uid,
          clientId: e.clientId === s.clientId,
          connectionId: e.connectionId === s.connectionId,
          socketId: e.socketId === s.socketId,
        }));
      expect(await shape(bulk)).toEqual(await shape(one));
      expect((await shape(bulk)).map((e) => [e.connectionEventType, e.createdAtMs])).toEqual([
        ['connect', t0],
        ['disconnect', t0 + 5_000],
      ]);
      const after = await sessionRows(bulk.connectionId);
      expect(after).toHaveLength(1);
      expect(after[0]!.updatedAt.getTime()).toBeGreaterThan(before.updatedAt.getTime());
      const { rows } = await resources.pg.query<{ n: string }>(
        'SELECT count(*) AS n FROM connections WHERE "connectionId" = $1',
        [stranger.connectionId],
      );
      expect(rows[0]!.n).toBe('0');
    });
  });

  describe('removeSessionPresence (§4.1 remove presence, §6.1)', () => {
    it('removes only this member from every presence room, deletes presence-sets and publishes one leave per room', async () => {
      const appPid = await app();
      const session = await userSession(appPid);
      const cid = session.connectionId;
      const rooms = [ROOM1, CHAT, LOBBY].map((r) => `${appPid}:${r.roomId}`);
      await seedConnection(session, { rooms, presenceRooms: rooms, users: [] });
      const others = new Map<string, string[]>();
      for (const room of rooms) {
        others.set(room, [await seedOtherMember(room, 'before'), await seedOtherMember(room, 'after')]);
      }
      // The closing socket's own marker is still alive 5 s after the close: no obstacle.
      await activities.markSessionLive({ session, at: Date.now() });
      const capture = await captureRoutingKeys(config, [`$$:${appPid}:14`, `$$:${appPid}:12`]);
      try {
        const before = Date.now();
        const result = await activities.removeSessionPresence({ session, closingSocketId: session.socketId });
        const after = Date.now();
        expect(result.skipped).toBe(false);
        expect([...result.rooms].sort()).toEqual([...rooms].sort());

        for (const room of rooms) {
          const [a, b] = others.get(room)!;
          expect((await redis().hkeys(`presence:${room}:members`)).sort()).toEqual([a, b].sort());
          expect(await redis().lrange(`presence:${room}:index`, 0, -1)).toEqual([a, b]);
        }
        expect(await redis().exists(`connection:${cid}:presence-sets`)).toBe(0);
        // Presence removal leaves subscriptions (the hard destroy purges them).
        expect(await redis().exists(`connection:${cid}:rooms`)).toBe(1);

        await drain(capture, `$$:${appPid}:12`);
        await drain(capture, `$$:${appPid}:14`);
        const leaves = capture.broadcasts();
        expect(leaves).toHaveLength(3);
        const expected = [
          { room: rooms[0]!, routingKey: `$$:${appPid}:14` },
          { room: rooms[1]!, routingKey: `$$:${appPid}:14` },
          { room: rooms[2]!, routingKey: `$$:${appPid}:12` },
        ];
        for (const { room, routingKey } of expected) {
          const message = leaves.find((m) => m.body.nspRoomId === room);
          expect(message).toBeDefined();
          expect(message!.routingKey).toBe(routingKey);
          // One removal: the same id suffix for every room (and every attempt, below).
          expect(message!.messageId).toBe(`${cid}:${session.socketId}:leave:${room}:${removalOf(leaves[0]!)}`);
          expect(removalOf(message!)).toMatch(/^[0-9a-f]{12}$/);
          expect(message!.body).toEqual({
            nspRoomId: room,
            event: `${room}:$:presence:leave`,
            data: {
              connectionId: cid,
              clientId: session.clientId,
              event: 'leave',
              timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
              user: session.user,
            },
            service: 'session',
            session,
          });
          const ts = Date.parse(message!.body.data.timestamp as string);
          expect(ts).toBeGreaterThanOrEqual(before);
          expect(ts).toBeLessThanOrEqual(after);
        }
      } finally {
        await capture.close();
      }
    });

    it('is idempotent: a second run removes nothing more and publishes no second leave', async () => {
      const appPid = await app();
      const session = await userSession(appPid);
      const cid = session.connectionId;
      const room = `${appPid}:${ROOM1.roomId}`;
      await seedConnection(session, { rooms: [room], presenceRooms: [room], users: [] });
      const other = await seedOtherMember(room, 'after');
      const capture = await captureRoutingKeys(config, [`$$:${appPid}:${ROOM1.bucket}`]);
      try {
        await activities.removeSessionPresence({ session, closingSocketId: session.socketId });
        await drain(capture, `$$:${appPid}:${ROOM1.bucket}`);
        expect(capture.broadcasts()).toHaveLength(1);

        const second = await activities.removeSessionPresence({ session, closingSocketId: session.socketId });
        expect(second).toEqual({ skipped: false, rooms: [] });
        await drain(capture, `$$:${appPid}:${ROOM1.bucket}`);
        expect(capture.broadcasts()).toHaveLength(1);
        expect(await redis().hkeys(`presence:${room}:members`)).toEqual([other]);
        expect(await redis().lrange(`presence:${room}:index`, 0, -1)).toEqual([other]);
        expect(await redis().exists(`connection:${cid}:presence-sets`, `connection:${cid}:presence-leaving`)).toBe(0);
      } finally {
        await capture.close();
      }
    });

    /** The real publisher, held before each publish until `open()` (or failing from a given publish). */
    function heldPublisher(failFrom = Infinity) {
      let open: () => void = () => undefined;
      const opened = new Promise<void>((r) => (open = r));
      let calls = 0;
      const publisher = Object.create(resources.amqp) as Resources['amqp'];
      publisher.publish = async (routingKey, body, opts) => {
        if (++calls >= failFrom) throw new Error('broker gone');
        await opened;
        return resources.amqp.publish(routingKey, body, opts);
      };
      return { publisher, open };
    }

    const leftRooms = (capture: Awaited<ReturnType<typeof captureRoutingKeys>>) =>
      capture
        .broadcasts()
        .map((m) => m.body.nspRoomId)
        .sort();

    /** A user session present in `roomIds`, and the key of the claim on its owed leaves. */
    async function presentSession(roomIds: { roomId: string }[]) {
      const appPid = await app();
      const session = await userSession(appPid);
      const cid = session.connectionId;
      const rooms = roomIds.map((r) => `${appPid}:${r.roomId}`);
      await seedConnection(session, { rooms, presenceRooms: rooms, users: [] });
      const claim = `tether:connection:${cid}:presence-leave-claim`;
      track(claim);
      return { appPid, session, cid, rooms, claim };
    }

    it('two attempts at once publish each leave once: the second waits while the first holds the claim', async () => {
      const { appPid, session, rooms, claim } = await presentSession([ROOM1, CHAT]);
      // Both rooms route to bucket 14.
      const capture = await captureRoutingKeys(config, [`$$:${appPid}:${ROOM1.bucket}`]);
      try {
        // The first attempt (a local activity past its budget, say) is stuck on the broker.
        const held = heldPublisher();
        const stuck = createActivities({ ...resources, amqp: held.publisher, config, logger: testLogger });
        const first = stuck.removeSessionPresence({ session, closingSocketId: session.socketId });
        await waitFor(
          'the first attempt claims the leaves',
          () => redis().exists(claim),
          (n) => n === 1,
        );
        await expect(activities.removeSessionPresence({ session, closingSocketId: session.socketId })).rejects.toThrow(
          /being published by another attempt/,
        );
        held.open();
        expect([...(await first).rooms].sort()).toEqual([...rooms].sort());
        expect(await redis().exists(claim)).toBe(0);
        // The retry of the second finds nothing owed.
        expect(await activities.removeSessionPresence({ session, closingSocketId: session.socketId })).toEqual({
          skipped: false,
          rooms: [],
        });
        await drain(capture, `$$:${appPid}:${ROOM1.bucket}`);
        expect(leftRooms(capture)).toEqual([...rooms].sort());
      } finally {
        await capture.close();
      }
    });

    it('an attempt that fails midway releases its claim and leaves owed only what it did not publish', async () => {
      const { appPid, session, cid, rooms, claim } = await presentSession([ROOM1, CHAT, LOBBY]);
      const routing = [`$$:${appPid}:${ROOM1.bucket}`, `$$:${appPid}:${CHAT.bucket}`, `$$:${appPid}:${LOBBY.bucket}`];
      const capture = await captureRoutingKeys(config, [...new Set(routing)]);
      try {
        const failing = heldPublisher(2);
        failing.open();
        const broken = createActivities({ ...resources, amqp: failing.publisher, config, logger: testLogger });
        await expect(broken.removeSessionPresence({ session, closingSocketId: session.socketId })).rejects.toThrow(
          'broker gone',
        );
        expect(await redis().exists(claim)).toBe(0);
        expect(await redis().hlen(`connection:${cid}:presence-leaving`)).toBe(2);
        const retry = await activities.removeSessionPresence({ session, closingSocketId: session.socketId });
        expect(retry.rooms).toHaveLength(2);
        for (const key of new Set(routing)) await drain(capture, key);
        expect(leftRooms(capture)).toEqual([...rooms].sort());
      } finally {
        await capture.close();
      }
    });

    it('a retry after a lost confirm resends under the same message id; presence added again is another removal, with another id', async () => {
      const { appPid, session, cid, rooms } = await presentSession([ROOM1]);
      const key = `$$:${appPid}:${ROOM1.bucket}`;
      const capture = await captureRoutingKeys(config, [key]);
      try {
        // The broker takes the message, the confirm never reaches the attempt.
        const lossy = Object.create(resources.amqp) as Resources['amqp'];
        lossy.publish = async (routingKey, body, opts) => {
          await resources.amqp.publish(routingKey, body, opts);
          throw new Error('confirm lost');
        };
        const broken = createActivities({ ...resources, amqp: lossy, config, logger: testLogger });
        await expect(broken.removeSessionPresence({ session, closingSocketId: session.socketId })).rejects.toThrow(
          'confirm lost',
        );
        await activities.removeSessionPresence({ session, closingSocketId: session.socketId });
        await drain(capture, key);
        const [first, repeat] = capture.broadcasts();
        expect(capture.broadcasts()).toHaveLength(2);
        expect(repeat!.messageId).toBe(first!.messageId);

        // The gateway adds the member again (a reconnect racing the destroy): a new lifetime.
        await seedConnection(session, { rooms, presenceRooms: rooms, users: [] });
        await activities.removeSessionPresence({ session, closingSocketId: session.socketId });
        await drain(capture, key);
        expect(capture.broadcasts()).toHaveLength(3);
        const next = capture.broadcasts()[2]!;
        expect(next.body.nspRoomId).toBe(rooms[0]);
        expect(next.messageId).toMatch(new RegExp(`^${cid}:${session.socketId}:leave:${rooms[0]}:[0-9a-f]{12}$`));
        expect(next.messageId).not.toBe(first!.messageId);
      } finally {
        await capture.close();
      }
    });

    it('is skipped when the active marker names a newer socket: presence kept, no leave published', async () => {
      const appPid = await app();
      const session = await userSession(appPid);
      const cid = session.connectionId;
      const room = `${appPid}:${CHAT.roomId}`;
      await seedConnection(session, { rooms: [room], presenceRooms: [room], users: [] });
      const newer = { ...session, socketId: randomUUID() };
      await activities.markSessionLive({ session: newer, at: Date.now() });
      const capture = await captureRoutingKeys(config, [`$$:${appPid}:${CHAT.bucket}`]);
      try {
        const result = await activities.removeSessionPresence({ session, closingSocketId: session.socketId });
        expect(result).toEqual({ skipped: true, rooms: [] });
        expect(await redis().hexists(`presence:${room}:members`, cid)).toBe(1);
        expect(await redis().lrange(`presence:${room}:index`, 0, -1)).toEqual([cid]);
        expect(await redis().hgetall(`connection:${cid}:presence-sets`)).toEqual({ [room]: '1' });
        await drain(capture, `$$:${appPid}:${CHAT.bucket}`);
        expect(capture.broadcasts()).toHaveLength(0);
      } finally {
        await capture.close();
      }
    });
  });

  describe('destroySession (§4.1 remove presence + purge subscriptions, §5 disconnectedAt)', () => {
    async function disconnectedAt(cid: string): Promise<Date | null> {
      const { rows } = await resources.pg.query<{ disconnectedAt: Date | null }>(
        'SELECT "disconnectedAt" FROM sessions WHERE "connectionId" = $1',
        [cid],
      );
      expect(rows).toHaveLength(1);
      return rows[0]!.disconnectedAt;
    }

    /** A connection that connected and closed: rows in Postgres, gateway keys, heartbeat score. */
    async function closedConnection(appPid: string, rooms: string[], users: string[]) {
      const session = await userSession(appPid);
      const at = Date.now() - 5_000;
      await activities.recordConnectionEvent({ session, type: 'connect', at });
      await activities.markSessionLive({ session, at });
      const written = await seedConnection(session, { rooms, presenceRooms: rooms.slice(0, 1), users });
      await activities.recordConnectionEvent({ session, type: 'disconnect', at: at + 1_000 });
      return { session, written };
    }

    it('purges every connection:{cid}:* key listed, ZREMs the heartbeat, sets disconnectedAt and leaves other connections alone', async () => {
      const appPid = await app();
      const rooms = [`${appPid}:${ROOM1.roomId}`, `${appPid}:${CHAT.roomId}`];
      const users = [nanoid(), nanoid()];
      const { session, written } = await closedConnection(appPid, rooms, users);
      const other = await closedConnection(appPid, rooms, users);
      const cid = session.connectionId;
      const otherMember = await seedOtherMember(rooms[0]!, 'before');

      // Sanity: the seeded layout is exactly the one of §4 (rooms, 4 × 2 namespace hashes, users
      // index + 2 user subscriptions, presence-sets).
      expect(written).toHaveLength(1 + 8 + 1 + 2 + 1);
      expect(await scanKeys(`connection:${cid}:*`)).toEqual(written);
      expect(written).toContain(`connection:${cid}:intellect:${appPid}:${CHAT.roomId}`);

      const capture = await captureRoutingKeys(config, [`$$:${appPid}:${ROOM1.bucket}`]);
      try {
        const result = await activities.destroySession({ session, closingSocketId: session.socketId });
        // Rooms hash + 8 namespace hashes + users index + 2 user subscriptions + the marker.
        expect(result).toEqual({ skipped: false, rooms: [rooms[0]], keysDeleted: 1 + 8 + 1 + 2 + 1 });

        expect(await scanKeys(`connection:${cid}:*`)).toEqual([]);
        expect(await redis().exists(`session:${cid}:active`)).toBe(0);
        expect(await redis().zscore('heartbeat:keepalive', cid)).toBeNull();
        expect((await redis().hkeys(`presence:${rooms[0]}:members`)).sort()).toEqual(
          [otherMember, other.session.connectionId].sort(),
        );
        expect(await redis().lrange(`presence:${rooms[0]}:index`, 0, -1)).toEqual([
          otherMember,
          other.session.connectionId,
        ]);
        const first = await disconnectedAt(cid);
        expect(first).toBeInstanceOf(Date);

        // The other connection of the same app, rooms and users is untouched.
        expect(await scanKeys(`connection:${other.session.connectionId}:*`)).toEqual(other.written);
        expect(await redis().zscore('heartbeat:keepalive', other.session.connectionId)).not.toBeNull();
        expect(await redis().exists(`session:${other.session.connectionId}:active`)).toBe(1);
        expect(await disconnectedAt(other.session.connectionId)).toBeNull();

        await drain(capture, `$$:${appPid}:${ROOM1.bucket}`);
        expect(capture.broadcasts().map((m) => [m.body.nspRoomId, m.body.event])).toEqual([
          [rooms[0], `${rooms[0]}:$:presence:leave`],
        ]);

        // Twice: no second effect (no key, no message, disconnectedAt kept).
        await new Promise((r) => setTimeout(r, 20));
        const again = await activities.destroySession({ session, closingSocketId: session.socketId });
        expect(again).toEqual({ skipped: false, rooms: [], keysDeleted: 0 });
        expect(await disconnectedAt(cid)).toEqual(first);
        await drain(capture, `$$:${appPid}:${ROOM1.bucket}`);
        expect(capture.broadcasts()).toHaveLength(1);
        expect(await scanKeys(`connection:${other.session.connectionId}:*`)).toEqual(other.written);
      } finally {
        await capture.close();
      }
    });

    it('a reconnect after a destroy opens a new lifetime: the next destroy records a new disconnectedAt', async () => {
      const appPid = await app();
      const { session } = await closedConnection(appPid, [`${appPid}:${ROOM1.roomId}`], []);
      await activities.destroySession({ session, closingSocketId: session.socketId });
      const first = await disconnectedAt(session.connectionId);
      expect(first).toBeInstanceOf(Date);

      await new Promise((r) => setTimeout(r, 20));
      const back = { ...session, socketId: randomUUID() };
      await activities.recordConnectionEvent({ session: back, type: 'connect', at: Date.now() });
      await activities.recordConnectionEvent({ session: back, type: 'disconnect', at: Date.now() });
      await activities.destroySession({ session: back, closingSocketId: back.socketId });
      const second = await disconnectedAt(session.connectionId);
      expect(second!.getTime()).toBeGreaterThan(first!.getTime());
    });

    it('is skipped when the active marker names a newer socket: keys, heartbeat and row untouched', async () => {
      const appPid = await app();
      const rooms = [`${appPid}:${LOBBY.roomId}`];
      const { session, written } = await closedConnection(appPid, rooms, [nanoid()]);
      const cid = session.connectionId;
      const newer = { ...session, socketId: randomUUID() };
      const at = Date.now();
      await activities.markSessionLive({ session: newer, at });
      const capture = await captureRoutingKeys(config, [`$$:${appPid}:${LOBBY.bucket}`]);
      try {
        const result = await activities.destroySession({ session, closingSocketId: session.socketId });
        expect(result).toEqual({ skipped: true, rooms: [], keysDeleted: 0 });
        expect(await scanKeys(`connection:${cid}:*`)).toEqual(written);
        expect(await redis().hexists(`presence:${rooms[0]}:members`, cid)).toBe(1);
        expect(await redis().zscore('heartbeat:keepalive', cid)).toBe(String(at));
        expect(JSON.parse((await redis().get(`session:${cid}:active`))!)).toMatchObject({ socketId: newer.socketId });
        expect(await disconnectedAt(cid)).toBeNull();
        await drain(capture, `$$:${appPid}:${LOBBY.bucket}`);
        expect(capture.broadcasts()).toHaveLength(0);
      } finally {
        await capture.close();
      }
    });
  });
});
