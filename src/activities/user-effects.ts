import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import type { LegacySessionActivities, Session, SessionUser } from '../contracts/session';
import {
  DownSource,
  connectionDownSignal,
  connectionUpSignal,
  userWorkflowId,
  type ConnectionDownMessage,
  type ConnectionUpMessage,
  type UserActivities,
  type UserWorkflow,
} from '../contracts/user';
import { AppPidKey, ClientIdKey } from '../contracts/search-attributes';
import { userStatus } from './broadcasts';
import type { ActivityDeps } from './deps';
import { PgEffects } from './pg-effects';
import { keys } from './redis-keys';

/** Ours: how far the broadcasts of the user's latest edge got (`{edge}|{count}`), so a retry resumes. */
export const edgeProgressKey = (appPid: string, clientId: string) => `client:${appPid}:${clientId}:edge-published`;
// Longer than any retry of the edge's activity; the key then expires by itself.
const EDGE_PROGRESS_TTL_S = 3600;

/** Ours: the user's offline broadcast is owed (set and cleared by the sweep's legacy path). */
export const offlineOwedKey = (appPid: string, clientId: string) => `client:${appPid}:${clientId}:offline-owed`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// KEYS: user's connections hash, users online hash, owed key. ARGV: clientId, connectionIds...
// Removes the connections; when none is left, takes the user offline in Redis and remembers the
// owed broadcast (so that a retry after a crash still sends it). Returns the owed user JSON or nil.
const ORPHANS_GONE = `
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

function temporalOf(deps: ActivityDeps): Client {
  if (!deps.temporal) throw new Error('no Temporal client in the activity dependencies: cannot signal user workflows');
  return deps.temporal;
}

function taskQueueOf(deps: ActivityDeps): string {
  if (deps.taskQueue) return deps.taskQueue;
  try {
    return Context.current().info.taskQueue;
  } catch {
    return deps.config.temporal.taskQueue;
  }
}

/** Signal-with-start: the user workflow may have just completed; a signal then starts the next run. */
async function signalUser(
  deps: ActivityDeps,
  appPid: string,
  clientId: string,
  send: { up: ConnectionUpMessage } | { down: ConnectionDownMessage },
): Promise<void> {
  const options = {
    workflowId: userWorkflowId(appPid, clientId),
    taskQueue: taskQueueOf(deps),
    args: [{ appPid, clientId }] as Parameters<UserWorkflow>,
    typedSearchAttributes: [
      { key: AppPidKey, value: appPid },
      { key: ClientIdKey, value: clientId },
    ],
    staticSummary: `user ${clientId}`,
    staticDetails: `appPid: ${appPid}\nclientId: ${clientId}`,
  };
  const workflow = temporalOf(deps).workflow;
  if ('up' in send) {
    await workflow.signalWithStart<UserWorkflow, [ConnectionUpMessage]>('userWorkflow', {
      ...options,
      signal: connectionUpSignal,
      signalArgs: [send.up],
    });
  } else {
    await workflow.signalWithStart<UserWorkflow, [ConnectionDownMessage]>('userWorkflow', {
      ...options,
      signal: connectionDownSignal,
      signalArgs: [send.down],
    });
  }
}

/** The sweep's way to report a connection gone to its user (see sweep-effects). */
export function signalUserDown(
  deps: ActivityDeps,
  appPid: string,
  clientId: string,
  down: ConnectionDownMessage,
): Promise<void> {
  return signalUser(deps, appPid, clientId, { down });
}

/**
 * User-level effects (contract §4.1 "User online", "Connection gone", "User offline"; §6.2). Only
 * the user workflow calls the effect activities, one at a time per user, so they need no locking;
 * each is idempotent and may publish its broadcasts again when retried after a crash.
 */
export function createUserActivities(
  deps: ActivityDeps,
): UserActivities & Pick<LegacySessionActivities, 'signalUserConnectionUp' | 'signalUserConnectionDown'> {
  const { redis, pg, amqp, config, logger } = deps;
  const pgFx = new PgEffects(pg);
  const queueCount = config.rabbitmq.queueCount;

  /**
   * connection:status then connect/disconnect. With an `edge` id (stable across retries of one edge),
   * a retry after an outage or a crash resumes after the last confirmed message instead of sending
   * connection:status again; only a crash between a confirm and its progress write repeats one, with
   * the same AMQP messageId (`{edge}:{index}`) so that a consumer can tell.
   */
  async function publishStatus(
    appPid: string,
    user: SessionUser,
    session: Session,
    isOnline: boolean,
    now: Date,
    edge?: string,
  ): Promise<void> {
    const progressKey = edgeProgressKey(appPid, user.clientId);
    const [doneEdge, doneCount] = edge ? ((await redis.get(progressKey)) ?? '').split('|') : [];
    const done = edge && doneEdge === edge ? Number(doneCount) || 0 : 0;
    const messages = userStatus(user, session, isOnline, queueCount, now);
    for (const [i, message] of messages.entries()) {
      if (i < done) continue;
      await amqp.publish(message.routingKey, message.body, edge ? { messageId: `${edge}:${i}` } : {});
      if (edge) await redis.set(progressKey, `${edge}|${i + 1}`, 'EX', EDGE_PROGRESS_TTL_S);
    }
  }

  return {
    /** Session workflow, after recording a connect: the connection is live for its user. */
    async signalUserConnectionUp({ session }) {
      if (!session.user) return;
      await signalUser(deps, session.appPid, session.user.clientId, {
        up: { connectionId: session.connectionId, session },
      });
    },

    /** Session workflow, at the soft destroy (or a destroy that came first): the connection is gone. */
    async signalUserConnectionDown({ session }) {
      if (!session.user) return;
      await signalUser(deps, session.appPid, session.user.clientId, {
        down: { connectionId: session.connectionId, socketId: session.socketId, source: DownSource.session },
      });
    },

    /** Offline→online: DB, users online, the user's live connections, then connection:status + connect. */
    async userOnline({ appPid, clientId, user, session, connections, edge }) {
      const now = new Date();
      await pgFx.setUserOnline(user.id, true, now);
      const online = JSON.stringify({ ...user, isOnline: true, lastOnline: now.toISOString() });
      const tx = redis.multi().hset(keys.usersOnline(appPid), clientId, online);
      const fields = Object.entries(connections).flatMap(([cid, ms]) => [cid, String(ms)]);
      if (fields.length > 0) tx.hset(keys.clientConnections(appPid, clientId), ...fields);
      throwOnFailure(await tx.exec());
      await publishStatus(appPid, user, session, true, now, edge);
      logger.info('user online', { appPid, clientId, connections: fields.length / 2 });
    },

    /** Online→offline: users online, the user's connections, DB, then connection:status + disconnect. */
    async userOffline({ appPid, clientId, user, session, edge }) {
      const now = new Date();
      throwOnFailure(
        await redis
          .multi()
          .hdel(keys.usersOnline(appPid), clientId)
          .del(keys.clientConnections(appPid, clientId))
          .exec(),
      );
      await pgFx.setUserOnline(user.id, false, now);
      await publishStatus(appPid, user, session, false, now, edge);
      logger.info('user offline', { appPid, clientId });
    },

    /** While online: connections that came up are added, those gone are removed ("Connection gone"). */
    async syncUserConnections({ appPid, clientId, add, remove }) {
      const key = keys.clientConnections(appPid, clientId);
      const fields = Object.entries(add).flatMap(([cid, ms]) => [cid, String(ms)]);
      const tx = redis.multi();
      if (remove.length > 0) tx.hdel(key, ...remove);
      if (fields.length > 0) tx.hset(key, ...fields);
      throwOnFailure(await tx.exec());
    },

    /**
     * While offline: connections the sweep found gone that the user workflow never saw live (the
     * old deployment's). Each leaves the user's connections hash; when the hash is empty and Redis
     * still has the user online, the user goes offline (DB and broadcast included).
     */
    async userOrphansGone({ appPid, clientId, connectionIds }) {
      const owedKey = offlineOwedKey(appPid, clientId);
      const owed = (await redis.eval(
        ORPHANS_GONE,
        3,
        keys.clientConnections(appPid, clientId),
        keys.usersOnline(appPid),
        owedKey,
        clientId,
        ...connectionIds,
      )) as string | null;
      if (owed === null) return { wentOffline: false };
      let user: SessionUser;
      try {
        user = { ...(JSON.parse(owed) as SessionUser), clientId };
      } catch {
        user = { id: '', clientId };
      }
      const now = new Date();
      if (typeof user.id === 'string' && UUID.test(user.id)) await pgFx.setUserOnline(user.id, false, now);
      await publishStatus(appPid, user, await legacySession(appPid, clientId, connectionIds, user), false, now);
      await redis.del(owedKey);
      logger.info('legacy user offline', { appPid, clientId });
      return { wentOffline: true };
    },
  };

  /** The broadcast carries a session: the latest stored one of these connections, else a minimal one. */
  async function legacySession(
    appPid: string,
    clientId: string,
    connectionIds: string[],
    user: SessionUser,
  ): Promise<Session> {
    const { rows } = await pg.query<{
      uid: string;
      appId: string | null;
      keyId: string | null;
      clientId: string | null;
      connectionId: string;
      socketId: string | null;
    }>(
      `SELECT uid, "appId", "keyId", "clientId", "connectionId", "socketId" FROM sessions
       WHERE "connectionId" = ANY($1) ORDER BY "updatedAt" DESC LIMIT 1`,
      [connectionIds],
    );
    const row = rows[0];
    const session: Session = {
      uid: row?.uid ?? clientId,
      appPid,
      keyId: row?.keyId ?? '',
      clientId: row?.clientId ?? clientId,
      connectionId: row?.connectionId ?? connectionIds[0] ?? '',
      socketId: row?.socketId ?? '',
      user,
    };
    if (row?.appId) session.appId = row.appId;
    return session;
  }
}

function throwOnFailure(results: [Error | null, unknown][] | null): void {
  if (!results) throw new Error('redis transaction aborted');
  for (const [err] of results) if (err) throw err;
}
