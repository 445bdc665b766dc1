import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { sessionWorkflowId } from '../contracts/session';
import type { SweepActivities, SweepAnchor, SweepPageResult } from '../contracts/sweep';
import { DownSource, connectionDownSignal, userWorkflowId, type ConnectionDownMessage } from '../contracts/user';
import type { ActivityDeps } from './deps';
import { PgEffects } from './pg-effects';
import { HEARTBEAT_KEY, SUBSCRIPTION_NAMESPACES, keys } from './redis-keys';
import { signalUserDown } from './user-effects';

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

// KEYS: marker, presence-sets, presence-leaving, rooms, users, heartbeat zset. ARGV: cid, now, namespaces...
// Live (a marker exists): refresh the score, touch nothing else, return -1. Otherwise remove the
// presence members (no leave broadcasts in the sweep) and purge the subscriptions; the heartbeat
// score stays until the rest of the cleanup is done (see FORGET), so a crash leaves the id to retry.
const CLEAN = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[6], 'XX', 'GT', ARGV[2], ARGV[1])
  return -1
end
local cid = ARGV[1]
local n = 0
for _, room in ipairs(redis.call('HKEYS', KEYS[2])) do
  redis.call('HDEL', 'presence:' .. room .. ':members', cid)
  redis.call('LREM', 'presence:' .. room .. ':index', 0, cid)
end
for _, room in ipairs(redis.call('HKEYS', KEYS[4])) do
  for i = 3, #ARGV do
    n = n + redis.call('DEL', 'connection:' .. cid .. ':' .. ARGV[i] .. ':' .. room)
  end
end
for _, client in ipairs(redis.call('HKEYS', KEYS[5])) do
  n = n + redis.call('DEL', 'connection:' .. cid .. ':users:' .. client)
end
return n + redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
`;

// KEYS: marker, heartbeat zset. ARGV: cid, now. The last step: forget the id, unless it is live again.
const FORGET = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[2], 'XX', 'GT', ARGV[2], ARGV[1])
  return 0
end
return redis.call('ZREM', KEYS[2], ARGV[1])
`;

type Outcome = 'cleaned' | 'skipped' | 'ignored' | 'failed';

/** The sweep (contract §4.1, §7 defect 5): every stale id, in pages, users included. */
export function createSweepActivities(deps: ActivityDeps): SweepActivities {
  const { redis, pg, logger } = deps;
  const pgFx = new PgEffects(pg);

  const temporal = (): Client => {
    if (!deps.temporal) throw new Error('no Temporal client in the activity dependencies: cannot describe sessions');
    return deps.temporal;
  };

  async function sessionRunning(connectionId: string): Promise<boolean> {
    try {
      const d = await temporal().workflow.getHandle(sessionWorkflowId(connectionId)).describe();
      return d.status.name === 'RUNNING';
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return false;
      throw err;
    }
  }

  /** Who the connection belonged to, read before any liveness check (a racing reconnect rewrites it). */
  async function ownerOf(connectionId: string): Promise<{ appPid: string; clientId: string | null; socketId: string }> {
    const { rows } = await pg.query<{ appPid: string; clientId: string | null; socketId: string | null }>(
      `SELECT s."appPid", s."clientId", c."socketId" FROM sessions s
       LEFT JOIN connections c ON c."connectionId" = s."connectionId" AND c."connectionEventType" = 'connect'
       WHERE s."connectionId" = $1 ORDER BY s."updatedAt" DESC LIMIT 1`,
      [connectionId],
    );
    const row = rows[0];
    return {
      appPid: row?.appPid ?? connectionId.slice(0, connectionId.indexOf(':')),
      clientId: row?.clientId ?? null,
      socketId: row?.socketId ?? '',
    };
  }

  /**
   * Reports the connection gone to its user: through the user workflow, which alone changes a
   * user's online state (it takes the user offline when this was the last connection). A user
   * workflow is started only when Redis says the connection is the user's, or the user is online
   * with no connection left (the old deployment's leftovers); otherwise a running one is told.
   */
  async function notifyUser(appPid: string, clientId: string, down: ConnectionDownMessage): Promise<boolean> {
    const hash = keys.clientConnections(appPid, clientId);
    const res = await redis
      .multi()
      .hexists(hash, down.connectionId)
      .hlen(hash)
      .hexists(keys.usersOnline(appPid), clientId)
      .exec();
    if (!res) throw new Error('redis transaction aborted');
    for (const [err] of res) if (err) throw err;
    const [inHash, size, online] = res.map(([, v]) => Number(v)) as [number, number, number];
    if (inHash === 1 || (size === 0 && online === 1)) {
      await signalUserDown(deps, appPid, clientId, down);
      return true;
    }
    try {
      await temporal().workflow.getHandle(userWorkflowId(appPid, clientId)).signal(connectionDownSignal, down);
      return true;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return false;
      throw err;
    }
  }

  async function sweepOne(connectionId: string): Promise<{ outcome: Outcome; notified: boolean }> {
    const owner = await ownerOf(connectionId);
    const now = Date.now();
    if (await sessionRunning(connectionId)) {
      await redis.zadd(HEARTBEAT_KEY, 'XX', 'GT', now, connectionId);
      return { outcome: 'skipped', notified: false };
    }
    const cleaned = (await redis.eval(
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
      ...SUBSCRIPTION_NAMESPACES,
    )) as number;
    if (cleaned === -1) return { outcome: 'skipped', notified: false };
    const notified = owner.clientId
      ? await notifyUser(owner.appPid, owner.clientId, {
          connectionId,
          socketId: owner.socketId,
          source: DownSource.sweep,
        })
      : false;
    await pgFx.markDisconnected(connectionId);
    await redis.eval(FORGET, 2, keys.active(connectionId), HEARTBEAT_KEY, connectionId, Date.now());
    return { outcome: 'cleaned', notified };
  }

  return {
    /**
     * One page of the sweep: the stale ids after the anchor, each handled with bounded
     * concurrency. Live ones get their score refreshed (so they stop being rescanned), the rest
     * are cleaned. Safe to retry: every step is idempotent and handled ids leave the stale range.
     */
    async sweepPage({ cutoff, limit, concurrency, anchor, appPids }) {
      const flat = (await redis.eval(
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
      const outcomes: Outcome[] = new Array<Outcome>(page.length);
      let usersNotified = 0;
      const inScope = (cid: string) => !appPids || appPids.some((p) => cid.startsWith(`${p}:`));
      let next = 0;
      const work = async () => {
        while (next < page.length) {
          const i = next++;
          const cid = page[i]!.member;
          if (!inScope(cid)) {
            outcomes[i] = 'ignored';
            continue;
          }
          try {
            const r = await sweepOne(cid);
            outcomes[i] = r.outcome;
            if (r.notified) usersNotified++;
          } catch (err) {
            outcomes[i] = 'failed';
            logger.warn('sweep: id left for the next run', {
              connectionId: cid,
              error: err instanceof Error ? err.message : String(err),
            });
          }
          heartbeat(i + 1);
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, page.length)) }, work));
      let last = anchor;
      page.forEach((item, i) => {
        if (outcomes[i] === 'ignored' || outcomes[i] === 'failed') last = item;
      });
      const count = (o: Outcome) => outcomes.filter((x) => x === o).length;
      const result: SweepPageResult = {
        read: page.length,
        cleaned: count('cleaned'),
        skipped: count('skipped'),
        ignored: count('ignored'),
        failed: count('failed'),
        usersNotified,
        anchor: last,
      };
      if (result.cleaned + result.skipped + result.failed > 0) logger.info('sweep page', { ...result });
      return result;
    },
  };
}

function heartbeat(done: number): void {
  try {
    Context.current().heartbeat(done);
  } catch {
    // not in an activity (direct call)
  }
}
