import { defineQuery, defineSignal } from '@temporalio/workflow';

/** Message contracts of the gateway lease, shared by SessionClient and the gateway workflow. */
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
  gatewayId: string;
  idleTimeoutMs: number;
  maxHistoryEvents?: number;
  state?: GatewayState;
}

export function gatewayWorkflowId(gatewayId: string): string {
  return `gateway:${gatewayId}`;
}
