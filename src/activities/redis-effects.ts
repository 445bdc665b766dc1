import type Redis from 'ioredis';
import type { GatewayHolder } from '../contracts/gateway';
import type { Session } from '../contracts/session';
import { HEARTBEAT_KEY, SUBSCRIPTION_NAMESPACES, keys } from './redis-keys';

/**
 * The Redis side of the contract. Multi-key changes run as Lua scripts: one round trip, atomic, so
 * a retry after a crash finds either all or nothing done. Every script first checks the active
 * marker: if a newer socket of the connection has marked itself live, nothing is removed.
 */

// Returns -1 when the marker belongs to another (newer) socket.
const MARKER_GUARD = `
local m = redis.call('GET', KEYS[1])
if m and ARGV[2] ~= '' then
  local ok, s = pcall(cjson.decode, m)
  if ok and type(s) == 'table' and s.socketId and s.socketId ~= ARGV[2] then return -1 end
end
`;

// KEYS: marker, presence-sets, presence-leaving. ARGV: cid, closingSocketId.
// Moves the rooms to the leaving set and removes the member everywhere; returns the rooms owed.
const REMOVE_PRESENCE = `${MARKER_GUARD}
local rooms = redis.call('HKEYS', KEYS[2])
for _, room in ipairs(rooms) do
  redis.call('HDEL', 'presence:' .. room .. ':members', ARGV[1])
  redis.call('LREM', 'presence:' .. room .. ':index', 0, ARGV[1])
  redis.call('HSET', KEYS[3], room, '1')
end
redis.call('DEL', KEYS[2])
return redis.call('HKEYS', KEYS[3])
`;

// KEYS: marker, rooms, users, heartbeat zset. ARGV: cid, closingSocketId, namespaces...
const PURGE = `${MARKER_GUARD}
local cid = ARGV[1]
local n = 0
for _, room in ipairs(redis.call('HKEYS', KEYS[2])) do
  for i = 3, #ARGV do
    n = n + redis.call('DEL', 'connection:' .. cid .. ':' .. ARGV[i] .. ':' .. room)
  end
end
for _, client in ipairs(redis.call('HKEYS', KEYS[3])) do
  n = n + redis.call('DEL', 'connection:' .. cid .. ':users:' .. client)
end
n = n + redis.call('DEL', KEYS[2], KEYS[3], KEYS[1])
redis.call('ZREM', KEYS[4], cid)
return n
`;

// KEYS: gateway index, heartbeat zset. ARGV: timestamp ISO, score ms, ttl s, connectionIds...
// Rewrites the marker of each connection still in the index (a template `{offset}|{json}`: the
// timestamp goes in at byte `offset`); one removed by its close meanwhile is skipped, so a refresh
// never resurrects the marker of a closed session. Returns how many were refreshed.
const REFRESH = `
local n = 0
for i = 4, #ARGV do
  local cid = ARGV[i]
  local v = redis.call('HGET', KEYS[1], cid)
  if v then
    local bar = string.find(v, '|', 1, true)
    local off = tonumber(string.sub(v, 1, bar - 1))
    local json = string.sub(v, bar + 1)
    local marker = string.sub(json, 1, off) .. ARGV[1] .. string.sub(json, off + 1)
    redis.call('SET', 'session:' .. cid .. ':active', marker, 'EX', ARGV[3])
    redis.call('ZADD', KEYS[2], ARGV[2], cid)
    n = n + 1
  end
end
return n
`;

// KEYS: holder's lost flag, marker, heartbeat zset, holder's index, previous holder's index ('' if
// none). ARGV: cid, marker JSON, ttl s, score, marker template. Connect: marker, score and index
// entry at once, unless the holder was already lost (its fan-out may have scanned the index
// before this entry): then nothing, and 0, so the session closes itself instead of being missed.
const CONNECT = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[5])
if KEYS[5] ~= '' then redis.call('HDEL', KEYS[5], ARGV[1]) end
return 1
`;
// Longer than any connect can be delayed behind a worker outage; a later one is the liveness net's.
const LOST_TTL_S = 24 * 3600;

export const NEWER_SOCKET_LIVE = -1;
const REFRESH_BATCH = 500;

/** The active marker's JSON: the session (minus permissions, by construction) + timestamp + socketId. */
export function markerJson(session: Session, timestamp: string): string {
  return JSON.stringify({ ...session, timestamp, socketId: session.socketId });
}

/** The marker with its timestamp cut out, and the byte offset where a refresh puts it back. */
export function markerTemplate(session: Session): string {
  const a = markerJson(session, 'a');
  const b = markerJson(session, 'b');
  let i = 0;
  while (a[i] === b[i]) i++;
  const json = a.slice(0, i) + a.slice(i + 1);
  return `${Buffer.byteLength(a.slice(0, i))}|${json}`;
}

export class RedisEffects {
  constructor(
    private readonly redis: Redis,
    private readonly idleTimeoutMs: number,
  ) {}

  private get markerTtlSeconds(): number {
    return Math.max(1, Math.ceil((this.idleTimeoutMs / 1000) * 3));
  }

  /** Mark live (open, pong): the marker with a 3 × idle lifetime and the heartbeat score. */
  async markLive(session: Session, at: number): Promise<void> {
    await this.redis
      .multi()
      .set(
        keys.active(session.connectionId),
        markerJson(session, new Date(at).toISOString()),
        'EX',
        this.markerTtlSeconds,
      )
      .zadd(HEARTBEAT_KEY, at, session.connectionId)
      .exec()
      .then(throwOnFailure);
  }

  /**
   * Connect: mark live and enter the holder's index in one transaction (so the marker is refreshed
   * from then on), leaving the index of the gateway the session moved away from.
   */
  async markLiveHeld(
    session: Session,
    at: number,
    holder: GatewayHolder,
    previous: GatewayHolder | null,
  ): Promise<{ holderLost: boolean }> {
    const cid = session.connectionId;
    const prev = previous ? keys.gatewayIndex(previous.gatewayId, previous.incarnation) : '';
    const result = (await this.redis.eval(
      CONNECT,
      5,
      keys.gatewayLost(holder.gatewayId, holder.incarnation),
      keys.active(cid),
      HEARTBEAT_KEY,
      keys.gatewayIndex(holder.gatewayId, holder.incarnation),
      prev,
      cid,
      markerJson(session, new Date(at).toISOString()),
      this.markerTtlSeconds,
      at,
      markerTemplate(session),
    )) as number;
    return { holderLost: result === 0 };
  }

  /** Fan-out, first step: from now on a connect under this incarnation is refused (see CONNECT). */
  async markLost(holder: GatewayHolder): Promise<void> {
    await this.redis.set(keys.gatewayLost(holder.gatewayId, holder.incarnation), '1', 'EX', LOST_TTL_S);
  }

  /** Close and hard destroy: the session leaves its gateway's index, so no refresh marks it live again. */
  async leaveIndex(connectionId: string, holder: GatewayHolder): Promise<void> {
    await this.redis.hdel(keys.gatewayIndex(holder.gatewayId, holder.incarnation), connectionId);
  }

  /** Renewal: refresh the marker and heartbeat score of every session the incarnation holds. */
  async refreshHeld(holder: GatewayHolder, at: number): Promise<number> {
    const index = keys.gatewayIndex(holder.gatewayId, holder.incarnation);
    const timestamp = new Date(at).toISOString();
    let refreshed = 0;
    for await (const page of this.scanIndex(holder)) {
      for (let i = 0; i < page.length; i += REFRESH_BATCH) {
        const batch = page.slice(i, i + REFRESH_BATCH);
        refreshed += (await this.redis.eval(
          REFRESH,
          2,
          index,
          HEARTBEAT_KEY,
          timestamp,
          at,
          this.markerTtlSeconds,
          ...batch,
        )) as number;
      }
    }
    return refreshed;
  }

  /** The connectionIds in an incarnation's index, page by page from `cursor` (each page ends at `next`). */
  async *scanIndex(holder: GatewayHolder, cursor = '0'): AsyncGenerator<string[] & { next?: string }> {
    const index = keys.gatewayIndex(holder.gatewayId, holder.incarnation);
    do {
      const [next, flat] = await this.redis.hscan(index, cursor, 'COUNT', 1000);
      const page: string[] & { next?: string } = flat.filter((_, i) => i % 2 === 0);
      page.next = next;
      cursor = next;
      yield page;
    } while (cursor !== '0');
  }

  async deleteIndex(holder: GatewayHolder): Promise<void> {
    await this.redis.del(keys.gatewayIndex(holder.gatewayId, holder.incarnation));
  }

  async heartbeat(connectionId: string, at: number): Promise<void> {
    await this.redis.zadd(HEARTBEAT_KEY, at, connectionId);
  }

  /** Removes the presence member; returns the rooms whose leave is owed, or null if a newer socket is live. */
  async removePresence(connectionId: string, closingSocketId: string): Promise<string[] | null> {
    const result = (await this.redis.eval(
      REMOVE_PRESENCE,
      3,
      keys.active(connectionId),
      keys.presenceSets(connectionId),
      keys.presenceLeaving(connectionId),
      connectionId,
      closingSocketId,
    )) as number | string[];
    return result === NEWER_SOCKET_LIVE ? null : (result as string[]);
  }

  async leaveBroadcastsDone(connectionId: string): Promise<void> {
    await this.redis.del(keys.presenceLeaving(connectionId));
  }

  /** Purge subscriptions, heartbeat score and marker; null if a newer socket is live. */
  async purge(connectionId: string, closingSocketId: string): Promise<number | null> {
    const result = (await this.redis.eval(
      PURGE,
      4,
      keys.active(connectionId),
      keys.rooms(connectionId),
      keys.users(connectionId),
      HEARTBEAT_KEY,
      connectionId,
      closingSocketId,
      ...SUBSCRIPTION_NAMESPACES,
    )) as number;
    return result === NEWER_SOCKET_LIVE ? null : result;
  }
}

function throwOnFailure(results: [Error | null, unknown][] | null): void {
  if (!results) throw new Error('redis transaction aborted');
  for (const [err] of results) if (err) throw err;
}
