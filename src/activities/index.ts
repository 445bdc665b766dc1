import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import type Redis from 'ioredis';
import type { Pool } from 'pg';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { GatewayHolder, Session } from '../session';
import type { AmqpPublisher } from './amqp-publisher';
import { presenceLeave } from './broadcasts';
import { ConnectionEventType, PgEffects, UnknownApplicationError } from './pg-effects';
import { RedisEffects } from './redis-effects';
import { createGatewayActivities } from './gateway-effects';
import { createSweepActivities } from './sweep-effects';
import { createUserActivities } from './user-effects';

export interface ActivityDeps {
  redis: Redis;
  pg: Pool;
  amqp: AmqpPublisher;
  config: Config;
  logger: Logger;
  /** For activities that signal or describe workflows (user workflows, the sweep). */
  temporal?: Client;
  /** Task queue of the workflows those activities start; default: the calling activity's. */
  taskQueue?: string;
}

export interface PresenceResult {
  /** A newer socket of the connection is live: nothing was touched. */
  skipped: boolean;
  rooms: string[];
}

/**
 * Every activity is idempotent (a second run has no second effect, bar an at-least-once broadcast
 * after a crash between publish and bookkeeping) and is retried by Temporal until it lands.
 */
export function createActivities(deps: ActivityDeps) {
  const { redis, pg, amqp, config, logger } = deps;
  const redisFx = new RedisEffects(redis, config.idleTimeoutMs);
  const pgFx = new PgEffects(pg);
  const log = (session: Pick<Session, 'connectionId' | 'appPid'>) =>
    logger.child({
      connectionId: session.connectionId,
      appPid: session.appPid,
      workflowId: activityInfo()?.workflowExecution?.workflowId,
    });

  async function removePresence(
    session: Session,
    closingSocketId: string,
    broadcast: boolean,
  ): Promise<PresenceResult> {
    const rooms = await redisFx.removePresence(session.connectionId, closingSocketId);
    if (rooms === null) return { skipped: true, rooms: [] };
    if (broadcast) {
      const now = new Date();
      for (const room of rooms) {
        const message = presenceLeave(room, session, config.rabbitmq.queueCount, now);
        await amqp.publish(message.routingKey, message.body);
      }
    }
    await redisFx.leaveBroadcastsDone(session.connectionId);
    return { skipped: false, rooms };
  }

  const users = createUserActivities(deps);
  const v1 = {
    /** Mark live: active marker (3 × idle) and heartbeat score. */
    async markSessionLive({ session, at }: { session: Session; at: number }): Promise<void> {
      await redisFx.markLive(session, at);
    },

    /** Connect/disconnect rows in sessions and connections. Unknown appPid: non-retryable. */
    async recordConnectionEvent({
      session,
      type,
      at,
    }: {
      session: Session;
      type: ConnectionEventType;
      at: number;
    }): Promise<{ currentSocket: boolean }> {
      try {
        return await pgFx.recordConnectionEvent(session, type, at);
      } catch (err) {
        if (err instanceof UnknownApplicationError) {
          log(session).error('connection event refused: unknown appPid', {
            type,
          });
          throw ApplicationFailure.nonRetryable(err.message, 'UnknownApplication');
        }
        // SQLSTATE class 22 (data exception, e.g. 22021 for a NUL in keyId/uid/clientId, which the
        // client's checks accept): the same input fails every time, so retrying would never end.
        const code = (err as { code?: unknown } | null)?.code;
        if (typeof code === 'string' && code.startsWith('22')) {
          log(session).error('connection event refused: Postgres cannot store the session', { type, code });
          throw ApplicationFailure.nonRetryable(
            `session data rejected by Postgres (${code}): ${(err as Error).message}`,
            'InvalidSessionData',
          );
        }
        throw err;
      }
    },

    /** Soft destroy: presence members removed and leave broadcast, unless a newer socket is live. */
    async removeSessionPresence({
      session,
      closingSocketId,
    }: {
      session: Session;
      closingSocketId: string;
    }): Promise<PresenceResult> {
      const result = await removePresence(session, closingSocketId, true);
      log(session).info(result.skipped ? 'presence kept: newer socket live' : 'presence removed', {
        rooms: result.rooms.length,
      });
      return result;
    },

    /** Hard destroy: presence, subscriptions, heartbeat score, marker, then `disconnectedAt`. */
    async destroySession({
      session,
      closingSocketId,
    }: {
      session: Session;
      closingSocketId: string;
    }): Promise<{ skipped: boolean; rooms: string[]; keysDeleted: number }> {
      const presence = await removePresence(session, closingSocketId, true);
      if (presence.skipped) return { skipped: true, rooms: [], keysDeleted: 0 };
      const keysDeleted = await redisFx.purge(session.connectionId, closingSocketId);
      if (keysDeleted === null) return { skipped: true, rooms: presence.rooms, keysDeleted: 0 };
      await pgFx.markDisconnected(session.connectionId);
      log(session).info('session destroyed', {
        keysDeleted,
        rooms: presence.rooms.length,
      });
      return { skipped: false, rooms: presence.rooms, keysDeleted };
    },
  };

  // The session workflow's four effects (docs/design.md): connect, close and soft destroy run as
  // local activities, the hard destroy as a regular one.
  const session = {
    /**
     * Connect: marker, heartbeat score and the holder's index; the connect row; the user up. Nothing
     * when the holder is already lost (the session then closes itself as gateway-lost).
     */
    async connectSession(input: {
      session: Session;
      at: number;
      holder: GatewayHolder;
      previousHolder: GatewayHolder | null;
    }): Promise<{ holderLost: boolean }> {
      const { holderLost } = await redisFx.markLiveHeld(input.session, input.at, input.holder, input.previousHolder);
      if (holderLost) return { holderLost };
      await v1.recordConnectionEvent({ session: input.session, type: 'connect', at: input.at });
      await users.signalUserConnectionUp({ session: input.session });
      return { holderLost };
    },

    /** Close: out of the holder's index first (no refresh marks it live again), then the disconnect row. */
    async closeSession(input: { session: Session; at: number; holder: GatewayHolder | null }): Promise<void> {
      if (input.holder) await redisFx.leaveIndex(input.session.connectionId, input.holder);
      await v1.recordConnectionEvent({ session: input.session, type: 'disconnect', at: input.at });
    },

    /** Soft destroy: presence removed and leave broadcasts (unless a newer socket is live), the user down. */
    async softDestroySession(input: { session: Session; closingSocketId: string }): Promise<PresenceResult> {
      const result = await v1.removeSessionPresence(input);
      await users.signalUserConnectionDown({ session: input.session });
      return result;
    },

    /** Hard destroy: out of the index, then presence left, subscriptions, score, marker, `disconnectedAt`. */
    async hardDestroySession(input: {
      session: Session;
      closingSocketId: string;
      holder: GatewayHolder | null;
    }): Promise<{ skipped: boolean; rooms: string[]; keysDeleted: number }> {
      if (input.holder) await redisFx.leaveIndex(input.session.connectionId, input.holder);
      return v1.destroySession(input);
    },
  };

  return {
    ...session,
    ...createGatewayActivities({ ...deps, redisFx }),
    // 0.1's session activities: runs of the 0.1 workflow still call them until they drain.
    ...v1,
    ...users,
    ...createSweepActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;

function activityInfo() {
  try {
    return Context.current().info;
  } catch {
    return undefined;
  }
}
