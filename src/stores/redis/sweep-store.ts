import type Redis from 'ioredis';
import type { SweepAnchor } from '../../contracts/sweep';
import { HEARTBEAT_KEY, connectionShapes, keys } from './keys';
import { LEAVE_PRESENCE, PURGE_SUBSCRIPTIONS } from './purge';

/** The sweep's reads and cleanup of `heartbeat:keepalive` ids (src/activities/sweep-effects.ts). */

// KEYS: heartbeat zset. ARGV: cutoff, limit, anchor member ('' = from the start), anchor score.
// The next page of stale ids (flat member, score list) strictly after the anchor in the zset's
// order (score, then member). Ids handled by earlier pages have left the range (removed, or
// refreshed to now); the anchor is the last one that stayed (out of scope, or failed).
const READ_PAGE = `
local cutoff = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local out = {}
local function take(items)
  for i = 1, #items, 2 do
    if #out >= 2 * limit or tonumber(items[i + 1]) > cutoff then return end
    out[#out + 1] = items[i]
    out[#out + 1] = items[i + 1]
  end
end
if ARGV[3] == '' then
  return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, limit)
end
local r = redis.call('ZRANK', KEYS[1], ARGV[3])
if r then
  take(redis.call('ZRANGE', KEYS[1], r + 1, r + limit, 'WITHSCORES'))
  return out
end
-- The anchor left the set meanwhile: the ids with its score and a greater member, then the rest.
local off = 0
while #out < 2 * limit do
  local band = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[4], ARGV[4], 'WITHSCORES', 'LIMIT', off, 1000)
  if #band == 0 then break end
  for i = 1, #band, 2 do
    if band[i] > ARGV[3] and #out < 2 * limit then
      out[#out + 1] = band[i]
      out[#out + 1] = band[i + 1]
    end
  end
  off = off + 1000
end
if #out < 2 * limit then
  take(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[4], ARGV[1], 'WITHSCORES', 'LIMIT', 0, limit - #out / 2))
end
return out
`;

// KEYS: marker, presence-sets, presence-leaving, rooms, users, heartbeat zset. ARGV: cid, now, shapes.
// Live (a marker exists): refresh the score, touch nothing else, return -1. Otherwise remove the
// presence members (no leave broadcasts in the sweep) and purge the subscriptions as the hard
// destroy does; the heartbeat score stays until the rest of the cleanup is done (see FORGET), so a
// crash leaves the id to retry.
const CLEAN = `${LEAVE_PRESENCE}${PURGE_SUBSCRIPTIONS}
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[6], 'XX', 'GT', ARGV[2], ARGV[1])
  return -1
end
local shapes = cjson.decode(ARGV[3])
leavePresence(ARGV[1], redis.call('HKEYS', KEYS[2]), shapes)
return purgeSubscriptions(KEYS[4], KEYS[5], shapes) + redis.call('DEL', KEYS[2], KEYS[3])
`;

// KEYS: marker, heartbeat zset. ARGV: cid, now. The last step: forget the id, unless it is live again.
const FORGET = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[2], 'XX', 'GT', ARGV[2], ARGV[1])
  return 0
end
return redis.call('ZREM', KEYS[2], ARGV[1])
`;

export const LIVE = -1;

export class SweepStore {
  constructor(private readonly redis: Redis) {}

  /** The next page of stale ids (score at most `cutoff`) after the anchor, at most `limit`. */
  async readPage(cutoff: number, limit: number, anchor: SweepAnchor | null): Promise<SweepAnchor[]> {
    const flat = (await this.redis.eval(
      READ_PAGE,
      1,
      HEARTBEAT_KEY,
      cutoff,
      limit,
      anchor?.member ?? '',
      anchor?.score ?? '',
    )) as string[];
    const page: SweepAnchor[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) page.push({ member: flat[i]!, score: flat[i + 1]! });
    return page;
  }

  /** A live id stays: its score moves to now, so it leaves the stale range. */
  async refreshScore(connectionId: string, now: number): Promise<void> {
    await this.redis.zadd(HEARTBEAT_KEY, 'XX', 'GT', now, connectionId);
  }

  /** Presence and subscriptions of a stale id; LIVE (and only the score refreshed) if it has a marker. */
  async clean(connectionId: string, now: number): Promise<number> {
    return (await this.redis.eval(
      CLEAN,
      6,
      keys.active(connectionId),
      keys.presenceSets(connectionId),
      keys.presenceLeaving(connectionId),
      keys.rooms(connectionId),
      keys.users(connectionId),
      HEARTBEAT_KEY,
      connectionId,
      now,
      connectionShapes(connectionId),
    )) as number;
  }

  /** The last step of a cleanup: the id leaves `heartbeat:keepalive`, unless it is live again. */
  async forget(connectionId: string, now: number): Promise<void> {
    await this.redis.eval(FORGET, 2, keys.active(connectionId), HEARTBEAT_KEY, connectionId, now);
  }
}
