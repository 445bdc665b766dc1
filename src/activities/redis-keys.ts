/** Redis keys of the RelayBox contract (shared/spec/relaybox-compat.md §4). */
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
  presenceMembers: (nspRoomId: string) => `presence:${nspRoomId}:members`,
  presenceIndex: (nspRoomId: string) => `presence:${nspRoomId}:index`,
  usersOnline: (appPid: string) => `auth:${appPid}:online`,
  clientConnections: (appPid: string, clientId: string) => `client:${appPid}:${clientId}:connections`,
  /** Ours: the sessions a gateway incarnation holds, connectionId → marker template (docs/design.md). */
  gatewayIndex: (gatewayId: string, incarnation: string) => `tether:gateway:${gatewayId}:${incarnation}`,
  /** Ours: set when an incarnation is lost, so a connect racing its fan-out is refused. */
  gatewayLost: (gatewayId: string, incarnation: string) => `tether:gateway:${gatewayId}:${incarnation}:lost`,
} as const;
