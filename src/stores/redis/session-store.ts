import type Redis from 'ioredis';
import type { Session } from '../../contracts/session';
import { HEARTBEAT_KEY, connectionShapes, keys } from './keys';
import { MARKER_GUARD, NEWER_SOCKET_LIVE, markerJson, markerTtlSeconds } from './marker';
import { LEAVE_PRESENCE, PURGE_SUBSCRIPTIONS } from './purge';
import { throwOnFailure } from './transaction';

/**
 * A session's keys of the contract. Multi-key changes run as Lua scripts: one round trip, atomic,
 * so a retry after a crash finds either all or nothing done. Every script first checks the active
 * marker: if a newer socket of the connection has marked itself live, nothing is removed.
 */

// KEYS: marker, presence-sets, presence-leaving. ARGV: cid, closingSocketId, shapes.
// Moves the rooms to the leaving set and removes the member everywhere; returns the rooms owed.
const REMOVE_PRESENCE = `${MARKER_GUARD}${LEAVE_PRESENCE}
local rooms = redis.call('HKEYS', KEYS[2])
leavePresence(ARGV[1], rooms, cjson.decode(ARGV[3]))
for _, room in ipairs(rooms) do redis.call('HSET', KEYS[3], room, '1') end
redis.call('DEL', KEYS[2])
return redis.call('HKEYS', KEYS[3])
`;

// KEYS: marker, rooms, users, heartbeat zset. ARGV: cid, closingSocketId, shapes.
const PURGE = `${MARKER_GUARD}${PURGE_SUBSCRIPTIONS}
local n = purgeSubscriptions(KEYS[2], KEYS[3], cjson.decode(ARGV[3]))
n = n + redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return n
`;

export class SessionStore {
  constructor(
    private readonly redis: Redis,
    private readonly idleTimeoutMs: number,
  ) {}

  /** Mark live (0.1's connect): the marker with a 3 × idle lifetime and the heartbeat score. */
  async markLive(session: Session, at: number): Promise<void> {
    await this.redis
      .multi()
      .set(
        keys.active(session.connectionId),
        markerJson(session, new Date(at).toISOString()),
        'EX',
        markerTtlSeconds(this.idleTimeoutMs),
      )
      .zadd(HEARTBEAT_KEY, at, session.connectionId)
      .exec()
      .then(throwOnFailure);
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
      connectionShapes(connectionId),
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
      connectionShapes(connectionId),
    )) as number;
    return result === NEWER_SOCKET_LIVE ? null : result;
  }
}
