import { randomUUID } from 'node:crypto';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { GatewayActivities } from '../contracts/gateway';
import type {
  LegacySessionActivities,
  OwedClose,
  PresenceResult,
  Session,
  SessionActivities,
} from '../contracts/session';
import type { SweepActivities } from '../contracts/sweep';
import type { UserActivities } from '../contracts/user';
import { presenceLeave, presenceLeaveId } from '../stores/amqp/broadcasts';
import { PgStore, UnknownApplicationError, isDataException } from '../stores/postgres';
import { GatewayIndex } from '../stores/redis/gateway-index';
import { SessionStore } from '../stores/redis/session-store';
import type { ActivityDeps } from './deps';
import { createGatewayActivities } from './gateway-effects';
import { createSweepActivities } from './sweep-effects';
import { createUserActivities } from './user-effects';

/**
 * Every activity is idempotent (a second run has no second effect, bar an at-least-once broadcast
 * after a crash between publish and bookkeeping) and is retried by Temporal until it lands.
 */
export function createActivities(deps: ActivityDeps): Activities {
  const { redis, pg, amqp, config, logger } = deps;
  const store = new SessionStore(redis, config.idleTimeoutMs);
  const index = new GatewayIndex(redis, config.idleTimeoutMs);
  const pgFx = new PgStore(pg);
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
    const attempt = attemptToken();
    const owed = await store.removePresence(session.connectionId, closingSocketId, attempt);
    if (owed === null) return { skipped: true, rooms: [] };
    const rooms = owed.map((o) => o.room);
    const published: string[] = [];
    try {
      const now = new Date();
      for (const { room, removal } of broadcast ? owed : []) {
        const message = presenceLeave(room, session, config.rabbitmq.queueCount, now);
        await amqp.publish(message.routingKey, message.body, { messageId: presenceLeaveId(room, session, removal) });
        published.push(room);
      }
      await store.leaveBroadcastsDone(session.connectionId, attempt, rooms);
    } catch (err) {
      // What went out is no longer owed, the rest is; the claim goes, so the retry need not wait.
      await store.leaveBroadcastsDone(session.connectionId, attempt, published).catch(() => undefined);
      throw err;
    }
    return { skipped: false, rooms };
  }

  const users = createUserActivities(deps);
  const v1: Omit<LegacySessionActivities, 'signalUserConnectionUp' | 'signalUserConnectionDown'> = {
    async markSessionLive({ session, at }) {
      await store.markLive(session, at);
    },

    async recordConnectionEvent({ session, type, at }) {
      try {
        return await pgFx.recordConnectionEvent(session, type, at);
      } catch (err) {
        if (err instanceof UnknownApplicationError) {
          log(session).error('connection event refused: unknown appPid', {
            type,
          });
          throw ApplicationFailure.nonRetryable(err.message, 'UnknownApplication');
        }
        if (isDataException(err)) {
          const { code } = err as { code: string };
          log(session).error('connection event refused: Postgres cannot store the session', { type, code });
          throw ApplicationFailure.nonRetryable(
            `session data rejected by Postgres (${code}): ${(err as Error).message}`,
            'InvalidSessionData',
          );
        }
        throw err;
      }
    },

    async removeSessionPresence({ session, closingSocketId }) {
      const result = await removePresence(session, closingSocketId, true);
      log(session).info(result.skipped ? 'presence kept: newer socket live' : 'presence removed', {
        rooms: result.rooms.length,
      });
      return result;
    },

    async destroySession({ session, closingSocketId }) {
      const presence = await removePresence(session, closingSocketId, true);
      if (presence.skipped) return { skipped: true, rooms: [], keysDeleted: 0 };
      const keysDeleted = await store.purge(session.connectionId, closingSocketId);
      if (keysDeleted === null) return { skipped: true, rooms: presence.rooms, keysDeleted: 0 };
      await pgFx.markDisconnected(session.connectionId);
      log(session).info('session destroyed', {
        keysDeleted,
        rooms: presence.rooms.length,
      });
      return { skipped: false, rooms: presence.rooms, keysDeleted };
    },
  };

  /** A socket's close: out of its holder's index first (no refresh marks it live again), then its disconnect row. */
  const recordClose = async (session: Session, close: OwedClose) => {
    if (close.holder) await index.leave(session.connectionId, close.holder, close.socketId);
    await v1.recordConnectionEvent({
      session: { ...session, socketId: close.socketId },
      type: 'disconnect',
      at: close.at,
    });
  };

  const session: SessionActivities = {
    async connectSession(input) {
      // The marker first: a reconnect is live as soon as it can be (bench storm). Its index entry
      // replaces the previous socket's, whose removal (guarded by socket) then changes nothing.
      const { holderLost } = await index.enter(input.session, input.at, input.holder, input.previousHolder);
      // The previous socket's disconnect row before this socket's connect row: the rows end as upstream's.
      if (input.closed) await recordClose(input.session, input.closed);
      if (holderLost) return { holderLost };
      await v1.recordConnectionEvent({ session: input.session, type: 'connect', at: input.at });
      if (input.userUp !== false) await users.signalUserConnectionUp({ session: input.session });
      return { holderLost };
    },

    async closeSession(input) {
      await recordClose(input.session, { socketId: input.session.socketId, at: input.at, holder: input.holder });
    },

    async softDestroySession(input) {
      if (input.close) await recordClose(input.session, input.close);
      const result = await v1.removeSessionPresence(input);
      await users.signalUserConnectionDown({ session: input.session, socketId: input.userSocketId });
      return result;
    },

    async hardDestroySession(input) {
      if (input.holder) await index.leave(input.session.connectionId, input.holder, input.closingSocketId);
      return v1.destroySession(input);
    },
  };

  return {
    ...session,
    ...createGatewayActivities({ ...deps, index, pgStore: pgFx }),
    // 0.1's session activities: runs of the 0.1 workflow still call them until they drain.
    ...v1,
    ...users,
    ...createSweepActivities(deps),
  };
}

type Registered = SessionActivities & LegacySessionActivities & GatewayActivities & UserActivities & SweepActivities;

/**
 * Every activity the worker registers: what the workflows proxy (src/contracts), as one object
 * type, since interfaces have no index signature and the worker takes a record of functions.
 */
export type Activities = { [K in keyof Registered]: Registered[K] };

/**
 * One attempt of one activity: a local activity's retry after a worker crash re-runs the same attempt
 * (and may take over its claim), while a later attempt, or the regular activity that replaces a local
 * one past its budget, is another (and waits for the first).
 */
function attemptToken(): string {
  const info = activityInfo();
  if (!info) return `direct:${randomUUID()}`;
  const run = info.workflowExecution;
  return `${run?.workflowId}/${run?.runId}/${info.isLocal ? 'local' : 'activity'}:${info.activityId}@${info.attempt}`;
}

function activityInfo() {
  try {
    return Context.current().info;
  } catch {
    return undefined;
  }
}
