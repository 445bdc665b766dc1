import type Redis from 'ioredis';
import type { SessionUser } from '../../contracts/session';
import { keys, legacyKeys } from './keys';
import { throwOnFailure } from './transaction';

// Longer than any retry of an edge's activity; the progress key then expires by itself.
const EDGE_PROGRESS_TTL_S = 3600;

// KEYS: user's connections hash, users online hash, owed key, 0.2's owed key. ARGV: clientId,
// connectionIds... Removes the connections; when none is left, takes the user offline in Redis and
// remembers the owed broadcast (so that a retry after a crash still sends it). Returns the owed user
// JSON or nil.
const ORPHANS_GONE = `
local legacy = redis.call('GET', KEYS[4])
if legacy then
  redis.call('SET', KEYS[3], legacy, 'NX')
  redis.call('DEL', KEYS[4])
end
for i = 2, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
if redis.call('HLEN', KEYS[1]) == 0 then
  local u = redis.call('HGET', KEYS[2], ARGV[1])
  if u then
    redis.call('SET', KEYS[3], u)
    redis.call('HDEL', KEYS[2], ARGV[1])
  end
end
return redis.call('GET', KEYS[3])
`;

/**
 * A user's keys: `auth:{appPid}:online`, the user's connections hash, and tether's progress of
 * the user's edges (src/activities/user-effects.ts).
 */
export class UserStore {
  constructor(private readonly redis: Redis) {}

  /** Online: the user object in the users-online hash, and the user's live connections (cid → ms). */
  async setOnline(appPid: string, clientId: string, online: SessionUser, connections: Record<string, number>) {
    const tx = this.redis.multi().hset(keys.usersOnline(appPid), clientId, JSON.stringify(online));
    const fields = Object.entries(connections).flatMap(([cid, ms]) => [cid, String(ms)]);
    if (fields.length > 0) tx.hset(keys.clientConnections(appPid, clientId), ...fields);
    throwOnFailure(await tx.exec());
  }

  async setOffline(appPid: string, clientId: string): Promise<void> {
    throwOnFailure(
      await this.redis
        .multi()
        .hdel(keys.usersOnline(appPid), clientId)
        .del(keys.clientConnections(appPid, clientId))
        .exec(),
    );
  }

  async syncConnections(appPid: string, clientId: string, add: Record<string, number>, remove: string[]) {
    const key = keys.clientConnections(appPid, clientId);
    const fields = Object.entries(add).flatMap(([cid, ms]) => [cid, String(ms)]);
    const tx = this.redis.multi();
    if (remove.length > 0) tx.hdel(key, ...remove);
    if (fields.length > 0) tx.hset(key, ...fields);
    throwOnFailure(await tx.exec());
  }

  /** Connections gone that no user workflow saw live; the owed user JSON once none is left, else null. */
  async orphansGone(appPid: string, clientId: string, connectionIds: string[]): Promise<string | null> {
    return (await this.redis.eval(
      ORPHANS_GONE,
      4,
      keys.clientConnections(appPid, clientId),
      keys.usersOnline(appPid),
      keys.offlineOwed(appPid, clientId),
      legacyKeys.offlineOwed(appPid, clientId),
      clientId,
      ...connectionIds,
    )) as string | null;
  }

  async offlineSent(appPid: string, clientId: string): Promise<void> {
    await this.redis.del(keys.offlineOwed(appPid, clientId), legacyKeys.offlineOwed(appPid, clientId));
  }

  /** How many broadcasts of `edge` were confirmed (0 for another edge, or none recorded). */
  async edgeProgress(appPid: string, clientId: string, edge: string): Promise<number> {
    const [current, legacy] = await this.redis.mget(
      keys.edgeProgress(appPid, clientId),
      legacyKeys.edgeProgress(appPid, clientId),
    );
    const [doneEdge, doneCount] = (current ?? legacy ?? '').split('|');
    return doneEdge === edge ? Number(doneCount) || 0 : 0;
  }

  async recordEdgeProgress(appPid: string, clientId: string, edge: string, count: number): Promise<void> {
    await this.redis.set(keys.edgeProgress(appPid, clientId), `${edge}|${count}`, 'EX', EDGE_PROGRESS_TTL_S);
  }

  /** For the sweep: is the connection in the user's hash, is the hash empty, is the user online. */
  async membership(
    appPid: string,
    clientId: string,
    connectionId: string,
  ): Promise<{ inHash: boolean; size: number; online: boolean }> {
    const hash = keys.clientConnections(appPid, clientId);
    const res = await this.redis
      .multi()
      .hexists(hash, connectionId)
      .hlen(hash)
      .hexists(keys.usersOnline(appPid), clientId)
      .exec();
    throwOnFailure(res);
    const [inHash, size, online] = res!.map(([, v]) => Number(v)) as [number, number, number];
    return { inHash: inHash === 1, size, online: online === 1 };
  }
}
