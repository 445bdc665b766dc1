import type Redis from 'ioredis';
import type { Session } from '../session';
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

export const NEWER_SOCKET_LIVE = -1;

export class RedisEffects {
  constructor(
    private readonly redis: Redis,
    private readonly idleTimeoutMs: number,
  ) {}

  /** Mark live (open, pong): the marker with a 3 × idle lifetime and the heartbeat score. */
  async markLive(session: Session, at: number): Promise<void> {
    const marker = JSON.stringify({
      ...session,
      timestamp: new Date(at).toISOString(),
      socketId: session.socketId,
    });
    const ttlSeconds = Math.max(1, Math.ceil((this.idleTimeoutMs / 1000) * 3));
    await this.redis
      .multi()
      .set(keys.active(session.connectionId), marker, 'EX', ttlSeconds)
      .zadd(HEARTBEAT_KEY, at, session.connectionId)
      .exec()
      .then(throwOnFailure);
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
