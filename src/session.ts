/**
 * The session object the gateway holds, and the checks every message about it passes. Pure: the
 * client runs them to reject bad calls before Temporal sees them, and the workflow runs them again
 * so that a poisoned signal sent around the client is dropped instead of failing a workflow task.
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

export type Check<T> = { ok: true; value: T } | { ok: false; field: string; reason: string };

export const LIMITS = {
  idLength: 255,
  userJsonBytes: 16 * 1024,
  reasonLength: 1024,
} as const;

const APP_PID = /^[A-Za-z0-9_-]{12}$/;
const CONNECTION_ID = /^[A-Za-z0-9_-]{12}:[A-Za-z0-9_:.-]+$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

class Invalid extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field} ${reason}`);
  }
}

function fail(field: string, reason: string): never {
  throw new Invalid(field, reason);
}

function run<T>(fn: () => T): Check<T> {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    if (err instanceof Invalid) return { ok: false, field: err.field, reason: err.reason };
    throw err;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function text(v: unknown, field: string, max: number = LIMITS.idLength): string {
  if (typeof v !== 'string' || v.length === 0) fail(field, 'must be a non-empty string');
  if (v.length > max) fail(field, `must be at most ${max} characters`);
  // Postgres text cannot hold NUL: such a session could never be recorded.
  if (v.includes('\u0000')) fail(field, 'must not contain a NUL character');
  return v;
}

function optionalText(v: unknown, field: string): string | undefined {
  return v === undefined || v === null ? undefined : text(v, field);
}

function connectionIdOf(v: unknown, field = 'connectionId'): string {
  const id = text(v, field);
  if (!CONNECTION_ID.test(id)) fail(field, 'must look like {appPid}:{id}');
  return id;
}

function epochMs(v: unknown, field: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) fail(field, 'must be epoch milliseconds');
  return v;
}

function jsonSize(v: unknown, field: string): number {
  let json: string | undefined;
  try {
    json = JSON.stringify(v);
  } catch {
    fail(field, 'must be JSON-serialisable');
  }
  if (json === undefined) fail(field, 'must be JSON-serialisable');
  // UTF-8 length without Buffer (not available in workflow code).
  return new TextEncoder().encode(json).length;
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

/** The gateway process holding a socket: its id and the incarnation (one per process start). */
export interface GatewayHolder {
  gatewayId: string;
  incarnation: string;
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

// `prefix`: where the pair sits in the message ('gateway.' in `active`, '' where it is the message).
function gatewayOf(v: unknown, prefix: string): GatewayHolder {
  if (!isRecord(v)) fail(prefix.slice(0, -1) || 'message', 'must be an object');
  return {
    gatewayId: text(v.gatewayId, `${prefix}gatewayId`),
    incarnation: text(v.incarnation, `${prefix}incarnation`),
  };
}

export function checkGateway(v: unknown): Check<GatewayHolder> {
  return run(() => gatewayOf(v, ''));
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
    return { ...gatewayOf(v, ''), at: epochMs(v.at, 'at') ?? fail('at', 'is required') };
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
