import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { Check } from './check';
import { checkSession, type Session, type SessionUser } from './session';

/**
 * The per-user workflow's contract (`user:{appPid}:{clientId}`), which serialises a user's
 * online/offline edges. Session workflows feed it through activities (signal-with-start).
 */

/**
 * A connection of the user is live: sent after its connect is recorded, and after a reconnect's
 * only when a down came since (a reconnect within the grace sends none).
 */
export interface ConnectionUpMessage {
  connectionId: string;
  session: Session;
}

export const DownSource = {
  /** The connection's soft destroy (5 s after the close, no reconnect), or its destroy. */
  session: 'session',
  /** The sweep found the connection stale with no live session (lost workflow or a legacy BullMQ id). */
  sweep: 'sweep',
} as const;
export type DownSource = (typeof DownSource)[keyof typeof DownSource];

/**
 * A connection of the user is gone. Ignored unless `socketId` (the socket its session told the
 * user workflow of) or `session.socketId` is the one the last up reported.
 */
export interface ConnectionDownMessage {
  connectionId: string;
  socketId: string;
  source: DownSource;
  /**
   * The connection's session as it closed (its latest socket, which a reconnect within the grace
   * did not report up): the offline broadcast carries it. Absent: the session of the last up.
   */
  session?: Session;
}

const invalid = (field: string, reason: string) => ({ ok: false, field, reason }) as const;

/** An up for the user workflow of `owner`: a valid session of that user, with its user object. */
export function checkConnectionUp(
  v: unknown,
  owner: { appPid: string; clientId: string },
): Check<{ connectionId: string; session: Session & { user: SessionUser } }> {
  const checked = checkSession((v as { session?: unknown } | null)?.session);
  if (!checked.ok) return checked;
  const session = checked.value;
  if ((v as { connectionId?: unknown }).connectionId !== session.connectionId)
    return invalid('connectionId', 'does not match session.connectionId');
  if (session.appPid !== owner.appPid) return invalid('session.appPid', 'belongs to another user workflow');
  if (!session.user) return invalid('session.user', 'is required');
  if (session.user.clientId !== owner.clientId)
    return invalid('session.user.clientId', 'belongs to another user workflow');
  return {
    ok: true,
    value: { connectionId: session.connectionId, session: session as Session & { user: SessionUser } },
  };
}

export function checkConnectionDown(v: unknown): Check<ConnectionDownMessage> {
  const msg = v as Partial<ConnectionDownMessage> | null;
  if (typeof msg?.connectionId !== 'string' || msg.connectionId === '')
    return invalid('connectionId', 'must be a non-empty string');
  if (typeof msg.socketId !== 'string') return invalid('socketId', 'must be a string');
  if (msg.source !== DownSource.session && msg.source !== DownSource.sweep)
    return invalid('source', 'must be session or sweep');
  const value: ConnectionDownMessage = { connectionId: msg.connectionId, socketId: msg.socketId, source: msg.source };
  if (msg.session === undefined) return { ok: true, value };
  const session = checkSession(msg.session);
  if (!session.ok) return session;
  if (session.value.connectionId !== msg.connectionId)
    return invalid('session.connectionId', 'does not match connectionId');
  return { ok: true, value: { ...value, session: session.value } };
}

export const connectionUpSignal = defineSignal<[ConnectionUpMessage]>('connectionUp');
export const connectionDownSignal = defineSignal<[ConnectionDownMessage]>('connectionDown');
export const userStateQuery = defineQuery<UserState>('userState');

export interface UserConnection {
  socketId: string;
  session: Session;
  /** Workflow-clock epoch ms of the last up: the value written to the user's connections hash. */
  upAt: number;
}

/** Plain JSON: what the query returns and what continue-as-new carries. */
export interface UserState {
  appPid: string;
  clientId: string;
  /** The online effects ran and the offline effects have not run since. */
  online: boolean;
  /** The user object of the latest up (what the edges write and broadcast). */
  user: SessionUser | null;
  /** Live connections by connectionId. */
  connections: Record<string, UserConnection>;
  /** ConnectionIds written to `client:{appPid}:{clientId}:connections` while online. */
  recorded: string[];
  /** ConnectionIds the sweep reported gone that this run never saw live (legacy ids): still to remove. */
  orphans: string[];
  /** Session of the connection that went down last (the offline broadcast carries it). */
  lastSession: Session | null;
  counts: {
    ups: number;
    downs: number;
    staleDowns: number;
    droppedSignals: number;
    onlineEdges: number;
    offlineEdges: number;
    continuedAsNew: number;
  };
}

export interface UserWorkflowInput {
  appPid: string;
  clientId: string;
  /** Continue-as-new once history reaches this many events, or when the server suggests it. */
  maxHistoryEvents?: number;
  state?: UserState;
}

export function userWorkflowId(appPid: string, clientId: string): string {
  return `user:${appPid}:${clientId}`;
}

/** The workflow type `userWorkflow`, for the activities' signal-with-start. */
export type UserWorkflow = (input: UserWorkflowInput) => Promise<UserState>;

/**
 * The user workflow's effects (src/activities/user-effects.ts), one at a time per user: each is
 * idempotent and may publish its broadcasts again when retried after a crash. `edge` is unique per
 * edge of the user and the same on every retry of it.
 */
export interface UserActivities {
  /** Offline→online: DB, users online, the user's live connections, then connection:status + connect. */
  userOnline(input: {
    appPid: string;
    clientId: string;
    user: SessionUser;
    session: Session;
    connections: Record<string, number>;
    edge?: string;
  }): Promise<void>;
  /** Online→offline: users online, the user's connections, DB, then connection:status + disconnect. */
  userOffline(input: {
    appPid: string;
    clientId: string;
    user: SessionUser;
    session: Session;
    edge?: string;
  }): Promise<void>;
  /** While online: connections that came up are added, those gone are removed ("Connection gone"). */
  syncUserConnections(input: {
    appPid: string;
    clientId: string;
    add: Record<string, number>;
    remove: string[];
  }): Promise<void>;
  /** While offline: connections the sweep found gone that this user's workflow never saw live. */
  userOrphansGone(input: { appPid: string; clientId: string; connectionIds: string[] }): Promise<{
    wentOffline: boolean;
  }>;
}
