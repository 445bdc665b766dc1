import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { ActiveMessage, DisconnectedMessage, HeartbeatMessage, InvalidateMessage, Session } from '../session';

/** Message contracts shared by the client and the session workflow. */
export const activeSignal = defineSignal<[ActiveMessage]>('active');
export const heartbeatSignal = defineSignal<[HeartbeatMessage]>('heartbeat');
export const disconnectedSignal = defineSignal<[DisconnectedMessage]>('disconnected');
export const invalidateSignal = defineSignal<[InvalidateMessage]>('invalidate');
export const stateQuery = defineQuery<SessionState>('state');

export const SessionStatus = {
  connected: 'connected',
  disconnected: 'disconnected',
  destroyed: 'destroyed',
} as const;
export type SessionStatus = (typeof SessionStatus)[keyof typeof SessionStatus];

export const DestroyReason = {
  closed: 'closed',
  liveness: 'liveness-expired',
  invalidated: 'invalidated',
} as const;
export type DestroyReason = (typeof DestroyReason)[keyof typeof DestroyReason];

/** Plain JSON: it is what the state query returns and what continue-as-new carries. */
export interface SessionState {
  connectionId: string;
  status: SessionStatus;
  session: Session;
  socketId: string;
  /** Workflow-clock epoch ms. */
  connectedAt: number;
  lastSeenAt: number;
  disconnectedAt: number | null;
  softDestroyAt: number | null;
  hardDestroyAt: number | null;
  presenceRemoved: boolean;
  destroyReason: DestroyReason | null;
  invalidateReason: string | null;
  counts: {
    reconnects: number;
    heartbeats: number;
    staleDisconnects: number;
    droppedSignals: number;
    continuedAsNew: number;
  };
}

export interface SessionWorkflowInput {
  /** First contact; ignored when `state` is carried over by continue-as-new. */
  active: ActiveMessage;
  idleTimeoutMs: number;
  /** Continue-as-new once history reaches this many events, or when the server suggests it. */
  maxHistoryEvents?: number;
  state?: SessionState;
}

export function sessionWorkflowId(connectionId: string): string {
  return `session:${connectionId}`;
}
