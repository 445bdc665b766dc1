import { defineQuery, defineSignal } from '@temporalio/workflow';
import { fail, isRecord, run, text, type Check } from './check';

/**
 * The gateway workflow's contract (`gateway:{gatewayId}`, the lease of a gateway process), shared by
 * SessionClient, the gateway workflow and its activities.
 */

/** The gateway process holding a socket: its id and the incarnation (one per process start). */
export interface GatewayHolder {
  gatewayId: string;
  incarnation: string;
}

// `prefix`: where the pair sits in the message ('gateway.' in `active`, '' where it is the message).
export function gatewayOf(v: unknown, prefix: string): GatewayHolder {
  if (!isRecord(v)) fail(prefix.slice(0, -1) || 'message', 'must be an object');
  return {
    gatewayId: text(v.gatewayId, `${prefix}gatewayId`),
    incarnation: text(v.incarnation, `${prefix}incarnation`),
  };
}

export function checkGateway(v: unknown): Check<GatewayHolder> {
  return run(() => gatewayOf(v, ''));
}

export interface LeaseMessage {
  incarnation: string;
}
export const acquireLeaseSignal = defineSignal<[LeaseMessage]>('acquireLease');
export const renewLeaseSignal = defineSignal<[LeaseMessage]>('renewLease');
export const releaseLeaseSignal = defineSignal<[LeaseMessage]>('releaseLease');
export const gatewayStateQuery = defineQuery<GatewayState>('gatewayState');

export interface GatewayState {
  gatewayId: string;
  /** The live incarnation and its last renewal (workflow-clock epoch ms), or null. */
  current: { incarnation: string; acquiredAt: number; renewedAt: number } | null;
  /** Incarnations lost or released, newest last (a renewal from one of them is dropped). */
  superseded: string[];
  /** Lost incarnations whose sessions are still to be told, with the time they count as closed. */
  owed: { incarnation: string; at: number }[];
  refreshOwed: boolean;
  counts: {
    acquired: number;
    renewals: number;
    droppedRenewals: number;
    droppedSignals: number;
    lost: number;
    released: number;
    refreshed: number;
    continuedAsNew: number;
  };
}

export interface GatewayWorkflowInput {
  /** 3 for runs started since 0.3; absent in 0.2's, which replay their local-activity markers. */
  version?: 3;
  gatewayId: string;
  idleTimeoutMs: number;
  maxHistoryEvents?: number;
  state?: GatewayState;
}

/** The workflow type `gatewayWorkflow`, for the client's typed start. */
export type GatewayWorkflow = (input: GatewayWorkflowInput) => Promise<GatewayState>;

export function gatewayWorkflowId(gatewayId: string): string {
  return `gateway:${gatewayId}`;
}

/** The effects the gateway workflow runs (src/activities/gateway-effects.ts). */
export interface GatewayActivities {
  /** Renewal: every marker and heartbeat score the incarnation holds, in batch. */
  refreshGatewayMarkers(input: { holder: GatewayHolder; at: number }): Promise<{ refreshed: number }>;
  /** Lost incarnation: `gatewayLost` to each session in its index, then the index dropped. */
  closeGatewaySessions(input: { holder: GatewayHolder; at: number }): Promise<{ signalled: number }>;
}
