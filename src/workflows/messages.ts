import { defineQuery, defineSignal } from '@temporalio/workflow';
import type {
  ActiveMessage,
  DisconnectedMessage,
  GatewayHolder,
  GatewayLostMessage,
  HeartbeatMessage,
  InvalidateMessage,
  Session,
} from '../session';

/** Message contracts shared by the client and the session workflow. */
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
  /** 2 for this code; absent in 0.1's inputs, which run the 0.1 code (src/workflows/legacy). */
  version: 2;
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
