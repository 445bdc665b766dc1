/**
 * Every Redis key tether reads or writes, written once: the activities pass them to commands, and
 * to the Lua scripts as KEYS, or as shapes (below) for the keys a script derives from what it reads.
 * The platform's keys are the contract's (docs/contract.md §4); those marked "ours" are tether's.
 */
export const HEARTBEAT_KEY = 'heartbeat:keepalive';
export const SUBSCRIPTION_NAMESPACES = ['subscriptions', 'presence', 'metrics', 'intellect'] as const;

export const keys = {
  active: (cid: string) => `session:${cid}:active`,
  rooms: (cid: string) => `connection:${cid}:rooms`,
  roomSubscriptions: (cid: string, ns: string, nspRoomId: string) => `connection:${cid}:${ns}:${nspRoomId}`,
  users: (cid: string) => `connection:${cid}:users`,
  userSubscriptions: (cid: string, clientId: string) => `connection:${cid}:users:${clientId}`,
  presenceSets: (cid: string) => `connection:${cid}:presence-sets`,
  /** Ours: rooms whose leave broadcast is still owed, so a retried removal publishes them again. */
  presenceLeaving: (cid: string) => `connection:${cid}:presence-leaving`,
  /** Ours: the attempt publishing the owed leaves; another waits, so two never publish the same leave. */
  presenceLeaveClaim: (cid: string) => `tether:connection:${cid}:presence-leave-claim`,
  presenceMembers: (nspRoomId: string) => `presence:${nspRoomId}:members`,
  presenceIndex: (nspRoomId: string) => `presence:${nspRoomId}:index`,
  usersOnline: (appPid: string) => `auth:${appPid}:online`,
  clientConnections: (appPid: string, clientId: string) => `client:${appPid}:${clientId}:connections`,
  /** Ours: how far the broadcasts of the user's latest edge got (`{edge}|{count}`), so a retry resumes. */
  edgeProgress: (appPid: string, clientId: string) => `tether:client:${appPid}:${clientId}:edge-published`,
  /** Ours: the user's offline broadcast is owed (set and cleared by the sweep's legacy path). */
  offlineOwed: (appPid: string, clientId: string) => `tether:client:${appPid}:${clientId}:offline-owed`,
  /** Ours: the sessions a gateway incarnation holds, connectionId → marker template (docs/design.md). */
  gatewayIndex: (gatewayId: string, incarnation: string) => `tether:gateway:${gatewayId}:${incarnation}`,
  /** Ours: set when an incarnation is lost, so a connect racing its fan-out is refused. */
  gatewayLost: (gatewayId: string, incarnation: string) => `tether:gateway:${gatewayId}:${incarnation}:lost`,
} as const;

/**
 * Where tether 0.2 and earlier kept its own keys, in the platform's `client:` space: still read (and
 * moved) so that work a 0.2 worker left half done resumes; written no more. Remove once no 0.2
 * worker has run for an hour (the longest of their lifetimes).
 */
export const legacyKeys = {
  edgeProgress: (appPid: string, clientId: string) => `client:${appPid}:${clientId}:edge-published`,
  offlineOwed: (appPid: string, clientId: string) => `client:${appPid}:${clientId}:offline-owed`,
} as const;

/** A key with one part a script reads from Redis (a room, a clientId): `p .. part .. s` in Lua. */
export interface KeyShape {
  p: string;
  s: string;
}

const PART = '\u0000';

function shapeOf(key: (part: string) => string): KeyShape {
  const [p = '', s = ''] = key(PART).split(PART);
  return { p, s };
}

/**
 * The shapes of a connection's keys that its presence and purge scripts derive from the rooms and
 * users they read (see ./purge.ts), as the one JSON argument those scripts decode.
 */
export function connectionShapes(cid: string): string {
  return JSON.stringify({
    members: shapeOf(keys.presenceMembers),
    index: shapeOf(keys.presenceIndex),
    roomSubscriptions: SUBSCRIPTION_NAMESPACES.map((ns) => shapeOf((room) => keys.roomSubscriptions(cid, ns, room))),
    userSubscriptions: shapeOf((clientId) => keys.userSubscriptions(cid, clientId)),
  });
}
