import { defineQuery, defineSignal } from '@temporalio/workflow';
import { ID_MAX_LENGTH, UUID, epochMs, fail, isRecord, jsonSize, optionalText, run, text, type Check } from './check';
import { gatewayOf, type GatewayHolder } from './gateway';

/**
 * The session workflow's contract (`session:{connectionId}`, one per websocket connection): the
 * session object the gateway holds, the messages about it with the checks each passes (see
 * ./check.ts), the workflow's state, input and query answer, and the effects it runs.
 */
export interface SessionUser {
  id: string;
  clientId: string;
  username?: string;
  createdAt?: string;
  updatedAt?: string;
  isOnline?: boolean;
  lastOnline?: string | null;
  [field: string]: unknown;
}

export interface Session {
  uid: string;
  appPid: string;
  appId?: string;
  keyId: string;
  clientId?: string;
  connectionId: string;
  socketId: string;
  exp?: number;
  timestamp?: string;
  user?: SessionUser;
}

export const LIMITS = {
  idLength: ID_MAX_LENGTH,
  userJsonBytes: 16 * 1024,
  reasonLength: 1024,
} as const;

const APP_PID = /^[A-Za-z0-9_-]{12}$/;
const CONNECTION_ID = /^[A-Za-z0-9_-]{12}:[A-Za-z0-9_:.-]+$/;

function connectionIdOf(v: unknown, field = 'connectionId'): string {
  const id = text(v, field);
  if (!CONNECTION_ID.test(id)) fail(field, 'must look like {appPid}:{id}');
  return id;
}

function userOf(v: unknown): SessionUser | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isRecord(v)) fail('session.user', 'must be an object');
  if (typeof v.id !== 'string' || !UUID.test(v.id)) fail('session.user.id', 'must be a uuid');
  text(v.clientId, 'session.user.clientId');
  if (jsonSize(v, 'session.user') > LIMITS.userJsonBytes)
    fail('session.user', `must serialise to at most ${LIMITS.userJsonBytes} bytes`);
  return JSON.parse(JSON.stringify(v)) as SessionUser;
}

export function checkSession(v: unknown): Check<Session> {
  return run(() => {
    if (!isRecord(v)) fail('session', 'must be an object');
    const appPid = text(v.appPid, 'session.appPid');
    if (!APP_PID.test(appPid)) fail('session.appPid', 'must be a 12-character app pid');
    const connectionId = connectionIdOf(v.connectionId, 'session.connectionId');
    if (!connectionId.startsWith(`${appPid}:`)) fail('session.connectionId', `must start with "${appPid}:"`);
    const socketId = text(v.socketId, 'session.socketId');
    if (!UUID.test(socketId)) fail('session.socketId', 'must be a uuid');
    const user = userOf(v.user);
    const session: Session = {
      uid: text(v.uid, 'session.uid'),
      appPid,
      keyId: text(v.keyId, 'session.keyId'),
      connectionId,
      socketId,
    };
    const appId = optionalText(v.appId, 'session.appId');
    if (appId !== undefined) session.appId = appId;
    const clientId = optionalText(v.clientId, 'session.clientId');
    if (clientId !== undefined) session.clientId = clientId;
    const exp = epochMs(v.exp, 'session.exp');
    if (exp !== undefined) session.exp = exp;
    if (v.timestamp !== undefined && v.timestamp !== null) session.timestamp = text(v.timestamp, 'session.timestamp');
    if (user) session.user = user;
    // `permissions` is never stored or forwarded: dropped here by construction.
    return session;
  });
}

export function checkConnectionId(v: unknown): Check<string> {
  return run(() => connectionIdOf(v));
}

export interface ActiveMessage {
  session: Session;
  /** Gateway event time, epoch ms. */
  at: number;
  /** Required by the session workflow since 0.2; absent in 0.1's messages (kept for their replay). */
  gateway?: GatewayHolder;
}
export interface GatewayLostMessage extends GatewayHolder {
  /** The lost incarnation's last renewal (workflow time of the gateway workflow), epoch ms. */
  at: number;
  /**
   * The socket whose close the fan-out already recorded in bulk (its disconnect row, as of `at`):
   * the session owes no close effect for it. Absent: the session records its close itself.
   */
  closedSocketId?: string;
}
export interface HeartbeatMessage {
  at: number;
}
export interface DisconnectedMessage {
  connectionId: string;
  socketId: string;
  at: number;
}
export interface InvalidateMessage {
  reason: string;
}

export function checkActive(v: unknown): Check<ActiveMessage> {
  return run(() => {
    if (!isRecord(v)) fail('message', 'must be an object');
    const s = checkSession(v.session);
    if (!s.ok) fail(s.field, s.reason);
    const msg: ActiveMessage = {
      session: s.value,
      at: epochMs(v.at, 'at') ?? fail('at', 'is required'),
    };
    if (v.gateway !== undefined) msg.gateway = gatewayOf(v.gateway, 'gateway.');
    return msg;
  });
}

export function checkGatewayLost(v: unknown): Check<GatewayLostMessage> {
  return run(() => {
    if (!isRecord(v)) fail('message', 'must be an object');
    const msg: GatewayLostMessage = { ...gatewayOf(v, ''), at: epochMs(v.at, 'at') ?? fail('at', 'is required') };
    if (v.closedSocketId !== undefined) msg.closedSocketId = text(v.closedSocketId, 'closedSocketId');
    return msg;
  });
}

export function checkHeartbeat(v: unknown): Check<HeartbeatMessage> {
  return run(() => {
    if (!isRecord(v)) fail('message', 'must be an object');
    return { at: epochMs(v.at, 'at') ?? fail('at', 'is required') };
  });
}

export function checkDisconnected(v: unknown): Check<DisconnectedMessage> {
  return run(() => {
    if (!isRecord(v)) fail('message', 'must be an object');
    const connectionId = connectionIdOf(v.connectionId);
    const socketId = text(v.socketId, 'socketId');
    if (!UUID.test(socketId)) fail('socketId', 'must be a uuid');
    return {
      connectionId,
      socketId,
      at: epochMs(v.at, 'at') ?? fail('at', 'is required'),
    };
  });
}

export function checkInvalidate(v: unknown): Check<InvalidateMessage> {
  return run(() => {
    if (!isRecord(v)) fail('message', 'must be an object');
    return { reason: text(v.reason, 'reason', LIMITS.reasonLength) };
  });
}

export const activeSignal = defineSignal<[ActiveMessage]>('active');
export const heartbeatSignal = defineSignal<[HeartbeatMessage]>('heartbeat');
export const disconnectedSignal = defineSignal<[DisconnectedMessage]>('disconnected');
export const invalidateSignal = defineSignal<[InvalidateMessage]>('invalidate');
/** From the gateway workflow when the incarnation holding the session is lost. */
export const gatewayLostSignal = defineSignal<[GatewayLostMessage]>('gatewayLost');
export const stateQuery = defineQuery<SessionView>('state');

export const SessionStatus = {
  connected: 'connected',
  disconnected: 'disconnected',
  destroyed: 'destroyed',
} as const;
export type SessionStatus = (typeof SessionStatus)[keyof typeof SessionStatus];

export const DestroyReason = {
  closed: 'closed',
  liveness: 'liveness-expired',
  gatewayLost: 'gateway-lost',
  invalidated: 'invalidated',
} as const;
export type DestroyReason = (typeof DestroyReason)[keyof typeof DestroyReason];

/** Plain JSON: what the session machine holds and continue-as-new carries. Times: workflow-clock epoch ms. */
export interface SessionState {
  connectionId: string;
  status: SessionStatus;
  session: Session;
  socketId: string;
  /** The gateway incarnation holding the socket. */
  holder: GatewayHolder;
  /** The holder before a move to another gateway, until the connect effect has left its index. */
  previousHolder: GatewayHolder | null;
  /** Bumped by every new socket: an effect's result applies only to its own lifetime. */
  lifetime: number;
  /** Effects a signal made owed (the timed ones follow from the deadlines); connect goes first. */
  connectOwed: boolean;
  closeOwed: boolean;
  /**
   * The previous socket's close, owed to this lifetime's connect (runs that defer their closes);
   * absent in states carried over from 0.5.
   */
  closedSocket?: OwedClose | null;
  /**
   * The socket the user workflow was last told is up (`connectionUp`), until a soft destroy told
   * it the connection is down; a reconnect meanwhile sends no up. Absent in states from 0.6.1.
   */
  userSocketId?: string | null;
  connectedAt: number;
  /** The gateway's time of the connect, for the connection row. */
  connectEventAt: number;
  lastSeenAt: number;
  disconnectedAt: number | null;
  closeEventAt: number | null;
  softDestroyAt: number | null;
  hardDestroyAt: number | null;
  presenceRemoved: boolean;
  closeReason: DestroyReason | null;
  destroyReason: DestroyReason | null;
  invalidateReason: string | null;
  counts: {
    reconnects: number;
    heartbeats: number;
    staleDisconnects: number;
    droppedSignals: number;
    /** gatewayLost for another holder (the session moved) or after the close. */
    ignoredGatewayLost: number;
    presenceRemovals: number;
    continuedAsNew: number;
  };
}

/** A close not yet recorded (runs since 0.6 record it with their next step): docs/design.md. */
export interface OwedClose {
  socketId: string;
  /** The gateway's time of the close, for the disconnect row. */
  at: number;
  /** Whose index still names the socket. */
  holder: GatewayHolder | null;
}

/** What the `state` query answers: for people (ISO-8601 UTC times) and for the client. */
export interface SessionView {
  connectionId: string;
  status: SessionStatus;
  session: Session;
  socketId: string;
  holder: GatewayHolder;
  connectedAt: string;
  lastSeenAt: string;
  disconnectedAt: string | null;
  /** Deadlines: presence removal, destroy, and (while connected) the liveness safety net. */
  softDestroyAt: string | null;
  hardDestroyAt: string | null;
  livenessExpiresAt: string | null;
  presenceRemoved: boolean;
  destroyReason: DestroyReason | null;
  invalidateReason: string | null;
  counts: SessionState['counts'];
}

export interface SessionWorkflowInput {
  /**
   * Who started the run: 5 since 0.7 (a reconnect within the grace tells the user workflow
   * nothing, and `SessionStatus` turns disconnected when the grace ends), 4 since 0.6 (closes
   * recorded with the next step, docs/design.md), 3
   * since 0.3, 2 for 0.2 (whose runs replay their local-activity markers,
   * src/workflows/effect-runner.ts); absent in 0.1's inputs, which run the 0.1 code
   * (src/workflows/legacy). Continue-as-new keeps it.
   */
  version: 2 | 3 | 4 | 5;
  /** First contact; ignored when `state` is carried over by continue-as-new. */
  active: ActiveMessage;
  idleTimeoutMs: number;
  /** No heartbeat for this long closes a connected session (3 × the client's forward interval). */
  livenessTimeoutMs: number;
  /** Continue-as-new once history reaches this many events, or when the server suggests it. */
  maxHistoryEvents?: number;
  state?: SessionState;
}

export function sessionWorkflowId(connectionId: string): string {
  return `session:${connectionId}`;
}

/** The workflow type `sessionWorkflow` as the client starts it (0.1's inputs are the worker's concern). */
export type SessionWorkflow = (input: SessionWorkflowInput) => Promise<SessionView>;

export interface PresenceResult {
  /** A newer socket of the connection is live: nothing was touched. */
  skipped: boolean;
  rooms: string[];
}

export interface DestroyResult extends PresenceResult {
  keysDeleted: number;
}

/**
 * The session workflow's four effects (docs/design.md), regular activities (runs started by 0.2
 * replay theirs as local activities).
 */
export interface SessionActivities {
  /**
   * Connect: marker, heartbeat score and the holder's index; the connect row; the user up. Nothing
   * when the holder is already lost (the session then closes itself as gateway-lost). `closed`: the
   * previous socket's close, still owed, recorded first (its index entry, its disconnect row).
   * `userUp: false`: the user workflow already counts this connection, no up (absent: up).
   */
  connectSession(input: {
    session: Session;
    at: number;
    holder: GatewayHolder;
    previousHolder: GatewayHolder | null;
    closed?: OwedClose;
    userUp?: boolean;
  }): Promise<{ holderLost: boolean }>;
  /** Close: out of the holder's index first (no refresh marks it live again), then the disconnect row. */
  closeSession(input: { session: Session; at: number; holder: GatewayHolder | null }): Promise<void>;
  /**
   * Soft destroy: `close` (the socket's close, still owed) recorded first, then presence removed and
   * leave broadcasts (unless a newer socket is live), the user down (naming `userSocketId`, the
   * socket the user workflow was told of, when it is not the session's).
   */
  softDestroySession(input: {
    session: Session;
    closingSocketId: string;
    close?: OwedClose;
    userSocketId?: string;
  }): Promise<PresenceResult>;
  /** Hard destroy: out of the index, then presence left, subscriptions, score, marker, `disconnectedAt`. */
  hardDestroySession(input: {
    session: Session;
    closingSocketId: string;
    holder: GatewayHolder | null;
  }): Promise<DestroyResult>;
}

export const ConnectionEventType = {
  connect: 'connect',
  disconnect: 'disconnect',
} as const;
export type ConnectionEventType = (typeof ConnectionEventType)[keyof typeof ConnectionEventType];

/** 0.1's session activities: runs of the 0.1 workflow (src/workflows/legacy) call them until they drain. */
export interface LegacySessionActivities {
  /** Mark live: active marker (3 × idle) and heartbeat score. */
  markSessionLive(input: { session: Session; at: number }): Promise<void>;
  /** Connect/disconnect rows in sessions and connections. Unknown appPid: non-retryable. */
  recordConnectionEvent(input: {
    session: Session;
    type: ConnectionEventType;
    at: number;
  }): Promise<{ currentSocket: boolean }>;
  /** Soft destroy: presence members removed and leave broadcast, unless a newer socket is live. */
  removeSessionPresence(input: { session: Session; closingSocketId: string }): Promise<PresenceResult>;
  /** Hard destroy: presence, subscriptions, heartbeat score, marker, then `disconnectedAt`. */
  destroySession(input: { session: Session; closingSocketId: string }): Promise<DestroyResult>;
  /** After recording a connect: the connection is live for its user (`connectionUp`). */
  signalUserConnectionUp(input: { session: Session }): Promise<void>;
  /** At the soft destroy (or a destroy that came first): the connection is gone (`connectionDown`). */
  /** `socketId`: the socket the user workflow was told of (default the session's). */
  signalUserConnectionDown(input: { session: Session; socketId?: string }): Promise<void>;
}
