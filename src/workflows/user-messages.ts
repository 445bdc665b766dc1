import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { Session, SessionUser } from '../session';

/**
 * Messages of the per-user workflow (`user:{appPid}:{clientId}`), which serialises a user's
 * online/offline edges. Session workflows feed it through activities (signal-with-start).
 */

/** A connection of the user is live: sent after its connect is recorded, again on every reconnect. */
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

/** A connection of the user is gone. Ignored unless `socketId` is the one the last up reported. */
export interface ConnectionDownMessage {
  connectionId: string;
  socketId: string;
  source: DownSource;
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
