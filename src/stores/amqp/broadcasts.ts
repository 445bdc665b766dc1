import type { Session, SessionUser } from '../../contracts/session';
import { roomRoutingKey, userRoutingKey } from './routing';

/** AMQP messages of the contract (§6): what the gateway fans out to subscribed sockets. */
export interface Broadcast {
  routingKey: string;
  body: {
    nspRoomId: string;
    event: string;
    data: unknown;
    service: 'session';
    session: Session;
  };
}

/**
 * The AMQP message id of a leave of a room: the same on every attempt of one removal, so a consumer
 * can drop the repeat at-least-once delivery allows (a worker dying between the broker's confirm
 * and the write that records it); another removal (presence added again after the first, by a
 * reconnect racing the destroy) has another id.
 */
export function presenceLeaveId(nspRoomId: string, session: Session, removal: string): string {
  return `${session.connectionId}:${session.socketId}:leave:${nspRoomId}:${removal}`;
}

export function presenceLeave(nspRoomId: string, session: Session, queueCount: number, now: Date): Broadcast {
  return {
    routingKey: roomRoutingKey(nspRoomId, queueCount),
    body: {
      nspRoomId,
      event: `${nspRoomId}:$:presence:leave`,
      data: {
        connectionId: session.connectionId,
        clientId: session.clientId,
        event: 'leave',
        timestamp: now.toISOString(),
        user: session.user,
      },
      service: 'session',
      session,
    },
  };
}

/** The pair the gateway expects on a user edge: connection:status, then connect or disconnect. */
export function userStatus(
  user: SessionUser,
  session: Session,
  isOnline: boolean,
  queueCount: number,
  now: Date,
): Broadcast[] {
  const nspRoomId = `users:${user.clientId}`;
  const data = { ...user, isOnline, lastOnline: now.toISOString() };
  const routingKey = userRoutingKey(user.clientId, queueCount);
  return [`${nspRoomId}:$:user:connection:status`, `${nspRoomId}:$:user:${isOnline ? 'connect' : 'disconnect'}`].map(
    (event) => ({
      routingKey,
      body: { nspRoomId, event, data, service: 'session', session },
    }),
  );
}
