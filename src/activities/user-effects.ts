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
import { userStatus } from '../stores/amqp/broadcasts';
import { PgStore } from '../stores/postgres';
import { UserStore } from '../stores/redis/user-store';
import type { ActivityDeps } from './deps';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

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
  const pgFx = new PgStore(pg);
  const users = new UserStore(redis);
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
    const done = edge ? await users.edgeProgress(appPid, user.clientId, edge) : 0;
    const messages = userStatus(user, session, isOnline, queueCount, now);
    for (const [i, message] of messages.entries()) {
      if (i < done) continue;
      await amqp.publish(message.routingKey, message.body, edge ? { messageId: `${edge}:${i}` } : {});
      if (edge) await users.recordEdgeProgress(appPid, user.clientId, edge, i + 1);
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
    async signalUserConnectionDown({ session, socketId }) {
      if (!session.user) return;
      await signalUser(deps, session.appPid, session.user.clientId, {
        down: {
          connectionId: session.connectionId,
          socketId: socketId ?? session.socketId,
          source: DownSource.session,
          session,
        },
      });
    },

    /** Offline→online: DB, users online, the user's live connections, then connection:status + connect. */
    async userOnline({ appPid, clientId, user, session, connections, edge }) {
      const now = new Date();
      await pgFx.setUserOnline(user.id, true, now);
      await users.setOnline(appPid, clientId, { ...user, isOnline: true, lastOnline: now.toISOString() }, connections);
      await publishStatus(appPid, user, session, true, now, edge);
      logger.info('user online', { appPid, clientId, connections: Object.keys(connections).length });
    },

    /** Online→offline: users online, the user's connections, DB, then connection:status + disconnect. */
    async userOffline({ appPid, clientId, user, session, edge }) {
      const now = new Date();
      await users.setOffline(appPid, clientId);
      await pgFx.setUserOnline(user.id, false, now);
      await publishStatus(appPid, user, session, false, now, edge);
      logger.info('user offline', { appPid, clientId });
    },

    /** While online: connections that came up are added, those gone are removed ("Connection gone"). */
    async syncUserConnections({ appPid, clientId, add, remove }) {
      await users.syncConnections(appPid, clientId, add, remove);
    },

    /**
     * While offline: connections the sweep found gone that the user workflow never saw live (the
     * old deployment's). Each leaves the user's connections hash; when the hash is empty and Redis
     * still has the user online, the user goes offline (DB and broadcast included).
     */
    async userOrphansGone({ appPid, clientId, connectionIds }) {
      const owed = await users.orphansGone(appPid, clientId, connectionIds);
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
      await users.offlineSent(appPid, clientId);
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
    const row = await pgFx.latestSession(connectionIds);
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
