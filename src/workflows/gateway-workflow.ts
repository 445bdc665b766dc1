import {
  allHandlersFinished,
  condition,
  log,
  makeContinueAsNewFunc,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import { checkGateway } from '../contracts/gateway';
import { Deadline } from './deadline';
import { runActivity } from './effect-runner';
import {
  acquireLeaseSignal,
  gatewayStateQuery,
  releaseLeaseSignal,
  renewLeaseSignal,
  type GatewayActivities,
  type GatewayState,
  type GatewayWorkflowInput,
} from '../contracts/gateway';

// The fan-out may take minutes; the heartbeat carries its cursor to the next attempt.
const fanOut = proxyActivities<GatewayActivities>({
  startToCloseTimeout: '1h',
  heartbeatTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
});

const DEFAULT_MAX_HISTORY_EVENTS = 2_000;
const SUPERSEDED_KEPT = 32;

/**
 * One run per gateway (`gateway:{gatewayId}`): the lease of its current incarnation. Renewals
 * refresh the markers of the sessions it holds; a lapse (4 × idle without one), a new incarnation
 * or a release makes the old incarnation lost, and its sessions are told (docs/design.md).
 */
export async function gatewayWorkflow(input: GatewayWorkflowInput): Promise<GatewayState> {
  const lapse = 4 * input.idleTimeoutMs;
  const state: GatewayState = input.state ?? fresh(input.gatewayId);
  const holder = (incarnation: string) => ({ gatewayId: state.gatewayId, incarnation });
  let changed = false;

  const valid = (raw: unknown, signal: string): string | null => {
    const incarnation = typeof raw === 'object' && raw !== null ? (raw as { incarnation?: unknown }).incarnation : raw;
    const check = checkGateway({ gatewayId: state.gatewayId, incarnation });
    changed = true;
    if (check.ok) return check.value.incarnation;
    state.counts.droppedSignals++;
    log.warn('malformed signal dropped', { signal, field: check.field, reason: check.reason });
    return null;
  };
  const lose = (at: number) => {
    const { incarnation } = state.current!;
    state.owed.push({ incarnation, at });
    state.superseded = [...state.superseded, incarnation].slice(-SUPERSEDED_KEPT);
    state.current = null;
  };

  setHandler(gatewayStateQuery, () => state);
  setHandler(acquireLeaseSignal, (raw) => {
    const incarnation = valid(raw, 'acquireLease');
    if (incarnation === null) return;
    const now = Date.now();
    if (state.current?.incarnation === incarnation) return void (state.current.renewedAt = now);
    if (state.superseded.includes(incarnation)) return void state.counts.droppedRenewals++;
    if (state.current) {
      state.counts.lost++;
      lose(state.current.renewedAt); // restarted: the old process's sockets died at its last renewal
    }
    state.current = { incarnation, acquiredAt: now, renewedAt: now };
    state.counts.acquired++;
  });
  setHandler(renewLeaseSignal, (raw) => {
    const incarnation = valid(raw, 'renewLease');
    if (incarnation === null) return;
    if (state.current?.incarnation !== incarnation) return void state.counts.droppedRenewals++;
    state.current.renewedAt = Date.now();
    state.counts.renewals++;
    state.refreshOwed = true;
  });
  setHandler(releaseLeaseSignal, (raw) => {
    const incarnation = valid(raw, 'releaseLease');
    if (incarnation === null || state.current?.incarnation !== incarnation) return;
    state.counts.released++;
    lose(Date.now());
  });

  const deadline = new Deadline();
  const maxEvents = input.maxHistoryEvents ?? DEFAULT_MAX_HISTORY_EVENTS;
  for (;;) {
    const owed = state.owed[0];
    if (owed) {
      await fanOut.closeGatewaySessions({ holder: holder(owed.incarnation), at: owed.at });
      state.owed.shift();
      continue;
    }
    if (state.refreshOwed && state.current) {
      state.refreshOwed = false;
      const { refreshed } = await runActivity(
        'refreshGatewayMarkers',
        { holder: holder(state.current.incarnation), at: Date.now() },
        { startedBy: input.version ?? 2 },
      );
      state.counts.refreshed = refreshed;
      continue;
    }
    state.refreshOwed = false;
    if (state.current && Date.now() >= state.current.renewedAt + lapse) {
      log.warn('gateway lease lapsed', { gatewayId: state.gatewayId, incarnation: state.current.incarnation });
      state.counts.lost++;
      lose(state.current.renewedAt);
      continue;
    }
    if (!state.current) {
      // Nothing held and nothing owed: done; the next acquire starts a new run.
      await condition(allHandlersFinished);
      if (!state.current && state.owed.length === 0) return state;
      continue;
    }
    const info = workflowInfo();
    if (info.historyLength >= maxEvents || info.continueAsNewSuggested) {
      // A signal handled meanwhile is in the state it carries (an owed fan-out or refresh included).
      await condition(allHandlersFinished);
      state.counts.continuedAsNew++;
      await makeContinueAsNewFunc<typeof gatewayWorkflow>()({ ...input, state });
    }
    changed = false;
    await deadline.wait(state.current.renewedAt + lapse, () => changed);
  }
}

function fresh(gatewayId: string): GatewayState {
  return {
    gatewayId,
    current: null,
    superseded: [],
    owed: [],
    refreshOwed: false,
    counts: {
      acquired: 0,
      renewals: 0,
      droppedRenewals: 0,
      droppedSignals: 0,
      lost: 0,
      released: 0,
      refreshed: 0,
      continuedAsNew: 0,
    },
  };
}
