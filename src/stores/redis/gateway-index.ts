import type Redis from 'ioredis';
import type { GatewayHolder } from '../../contracts/gateway';
import type { Session } from '../../contracts/session';
import { HEARTBEAT_KEY, keys } from './keys';
import { markerJson, markerTemplate, markerTtlSeconds } from './marker';

/**
 * The sessions each gateway incarnation holds (docs/design.md, "Gateway lease"): entered at the
 * connect, left at the close and the hard destroy, refreshed in batch at every renewal.
 */

// KEYS: index, heartbeat zset, then the marker of each connectionId. ARGV: timestamp ISO, score
// ms, ttl s, connectionIds (in the markers' order). Rewrites the marker of each connection still in
// the index (a template `{offset}|{json}`: the timestamp goes in at byte `offset`); one removed by
// its close meanwhile is skipped, so a refresh never resurrects the marker of a closed session.
// Returns how many were refreshed.
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
    redis.call('SET', KEYS[i - 1], marker, 'EX', ARGV[3])
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
// KEYS: index. ARGV: cid, the entry's socketId as it stands in the template. Drops the entry only
// if it is that socket's.
const LEAVE = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.find(v, ARGV[2], 1, true) then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
`;
// Longer than any connect can be delayed behind a worker outage; a later one is the liveness net's.
const LOST_TTL_S = 24 * 3600;
const REFRESH_BATCH = 500;

const indexKey = (holder: GatewayHolder) => keys.gatewayIndex(holder.gatewayId, holder.incarnation);

export class GatewayIndex {
  constructor(
    private readonly redis: Redis,
    private readonly idleTimeoutMs: number,
  ) {}

  /**
   * Connect: mark live and enter the holder's index in one script (so the marker is refreshed
   * from then on), leaving the index of the gateway the session moved away from.
   */
  async enter(
    session: Session,
    at: number,
    holder: GatewayHolder,
    previous: GatewayHolder | null,
  ): Promise<{ holderLost: boolean }> {
    const cid = session.connectionId;
    const result = (await this.redis.eval(
      CONNECT,
      5,
      keys.gatewayLost(holder.gatewayId, holder.incarnation),
      keys.active(cid),
      HEARTBEAT_KEY,
      indexKey(holder),
      previous ? indexKey(previous) : '',
      cid,
      markerJson(session, new Date(at).toISOString()),
      markerTtlSeconds(this.idleTimeoutMs),
      at,
      markerTemplate(session),
    )) as number;
    return { holderLost: result === 0 };
  }

  /** Fan-out, first step: from now on a connect under this incarnation is refused (see CONNECT). */
  async markLost(holder: GatewayHolder): Promise<void> {
    await this.redis.set(keys.gatewayLost(holder.gatewayId, holder.incarnation), '1', 'EX', LOST_TTL_S);
  }

  /**
   * Close and hard destroy: the socket leaves its gateway's index, so no refresh marks it live
   * again. Only that socket's entry: a late attempt of an older socket's close must not drop the
   * entry a reconnect through the same gateway wrote since (docs/design.md, "Activities").
   */
  async leave(connectionId: string, holder: GatewayHolder, socketId: string): Promise<void> {
    await this.redis.eval(LEAVE, 1, indexKey(holder), connectionId, `"socketId":${JSON.stringify(socketId)}`);
  }

  /** Renewal: refresh the marker and heartbeat score of every session the incarnation holds. */
  async refresh(holder: GatewayHolder, at: number): Promise<number> {
    const timestamp = new Date(at).toISOString();
    const ttl = markerTtlSeconds(this.idleTimeoutMs);
    let refreshed = 0;
    for await (const page of this.scan(holder)) {
      for (let i = 0; i < page.length; i += REFRESH_BATCH) {
        const batch = page.slice(i, i + REFRESH_BATCH);
        refreshed += (await this.redis.eval(
          REFRESH,
          2 + batch.length,
          indexKey(holder),
          HEARTBEAT_KEY,
          ...batch.map(keys.active),
          timestamp,
          at,
          ttl,
          ...batch,
        )) as number;
      }
    }
    return refreshed;
  }

  /** The connectionIds in an incarnation's index, page by page from `cursor` (each page ends at `next`). */
  async *scan(holder: GatewayHolder, cursor = '0'): AsyncGenerator<string[] & { next?: string }> {
    do {
      const [next, flat] = await this.redis.hscan(indexKey(holder), cursor, 'COUNT', 1000);
      const page: string[] & { next?: string } = flat.filter((_, i) => i % 2 === 0);
      page.next = next;
      cursor = next;
      yield page;
    } while (cursor !== '0');
  }

  /** The marker templates of these connections, null for one that left the index meanwhile. */
  async templates(holder: GatewayHolder, connectionIds: string[]): Promise<(string | null)[]> {
    return connectionIds.length ? this.redis.hmget(indexKey(holder), ...connectionIds) : [];
  }

  async delete(holder: GatewayHolder): Promise<void> {
    await this.redis.del(indexKey(holder));
  }
}
