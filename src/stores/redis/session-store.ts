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

// KEYS: marker, presence-sets, presence-leaving, leave claim. ARGV: cid, closingSocketId, shapes,
// attempt token, claim ttl ms. Moves the rooms to the leaving set, each under the id of this removal
// (a room already owed keeps its own), and removes the member everywhere; returns the owed leaves as
// room, removal id pairs, claimed for this attempt, or -2 while another attempt holds the claim.
const REMOVE_PRESENCE = `${MARKER_GUARD}${LEAVE_PRESENCE}
local holder = redis.call('GET', KEYS[4])
if holder and holder ~= ARGV[4] then return -2 end
local rooms = redis.call('HKEYS', KEYS[2])
leavePresence(ARGV[1], rooms, cjson.decode(ARGV[3]))
local removal = string.sub(redis.sha1hex(ARGV[4]), 1, 12)
for _, room in ipairs(rooms) do redis.call('HSETNX', KEYS[3], room, removal) end
redis.call('DEL', KEYS[2])
local owed = redis.call('HGETALL', KEYS[3])
if #owed > 0 then redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[5]) end
return owed
`;

// KEYS: presence-leaving, leave claim. ARGV: attempt token, rooms published...
const LEAVES_DONE = `
for i = 2, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
`;

const LEAVE_CLAIMED = -2;

/**
 * A presence leave not yet confirmed by the broker. `removal` names the removal that made it owed:
 * the presence a gateway adds again after a removal is another lifetime, whose leave must not share
 * the first one's message id; a retry of the same removal sends the same id. (0.2 stored '1'.)
 */
export interface OwedLeave {
  room: string;
  removal: string;
}

/**
 * How long a claim on a session's owed leaves outlives an attempt that died holding it. An attempt
 * that timed out may still be publishing (stuck on an outage, say); the next
 * attempt waits for it rather than publish the same leaves beside it.
 */
export const LEAVE_CLAIM_TTL_MS = 30_000;

/** Another attempt (one that timed out and still runs) is publishing this session's leaves. */
export class LeaveClaimedError extends Error {
  constructor(connectionId: string) {
    super(`presence leaves of ${connectionId} are being published by another attempt`);
    this.name = 'LeaveClaimedError';
  }
}

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

  /**
   * Removes the presence member; returns the leaves owed, claimed for `attempt`, or null if a newer
   * socket is live. Throws LeaveClaimedError while another attempt holds the claim.
   */
  async removePresence(connectionId: string, closingSocketId: string, attempt: string): Promise<OwedLeave[] | null> {
    const result = (await this.redis.eval(
      REMOVE_PRESENCE,
      4,
      keys.active(connectionId),
      keys.presenceSets(connectionId),
      keys.presenceLeaving(connectionId),
      keys.presenceLeaveClaim(connectionId),
      connectionId,
      closingSocketId,
      connectionShapes(connectionId),
      attempt,
      LEAVE_CLAIM_TTL_MS,
    )) as number | string[];
    if (result === LEAVE_CLAIMED) throw new LeaveClaimedError(connectionId);
    if (result === NEWER_SOCKET_LIVE) return null;
    const flat = result as string[];
    const owed: OwedLeave[] = [];
    for (let i = 0; i < flat.length; i += 2) owed.push({ room: flat[i]!, removal: flat[i + 1]! });
    return owed;
  }

  /** The leaves of `rooms` went out: no longer owed; the claim of `attempt` released. */
  async leaveBroadcastsDone(connectionId: string, attempt: string, rooms: string[]): Promise<void> {
    await this.redis.eval(
      LEAVES_DONE,
      2,
      keys.presenceLeaving(connectionId),
      keys.presenceLeaveClaim(connectionId),
      attempt,
      ...rooms,
    );
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
