import {
  ActivityFailure,
  ApplicationFailure,
  allHandlersFinished,
  condition,
  makeContinueAsNewFunc,
  log,
  proxyActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
  defineQuery,
} from '@temporalio/workflow';
import type { Check } from '../../contracts/check';
import {
  SessionStatus,
  activeSignal,
  checkActive,
  checkDisconnected,
  checkHeartbeat,
  checkInvalidate,
  disconnectedSignal,
  heartbeatSignal,
  invalidateSignal,
  type LegacySessionActivities,
  type Session,
} from '../../contracts/session';
import { SessionStatusKey, sessionMemo, sessionSearchAttributes } from '../../contracts/search-attributes';
import { sessionMetrics } from '../session/metrics';

/**
 * The 0.1 session workflow, kept unchanged so that runs started by 0.1 (inputs without `version`)
 * replay and drain: sessionWorkflow hands them here. New sessions never run it. Remove it once no
 * 0.1 run is left (`WorkflowType = "sessionWorkflow" AND ExecutionStatus = "Running"` and no
 * `version` in their input), together with the 0.1 activities it calls and its fixtures.
 */
const stateQuery = defineQuery<SessionState>('state');
const DestroyReason = { closed: 'closed', liveness: 'liveness-expired', invalidated: 'invalidated' } as const;
type DestroyReason = (typeof DestroyReason)[keyof typeof DestroyReason];

export interface SessionState {
  connectionId: string;
  status: SessionStatus;
  session: Session;
  socketId: string;
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
  active: { session: Session; at: number };
  idleTimeoutMs: number;
  maxHistoryEvents?: number;
  state?: SessionState;
}

const SOFT_DESTROY_DELAY_MS = 5_000;
// About an hour of a connected session. A worker that restarts replays every cached session in full:
// at 2,000 events, a few dozen such replays at once outlasted the 10 s workflow task timeout on two
// cores and kept timing out (failure suite); short histories keep that replay cheap.
const DEFAULT_MAX_HISTORY_EVENTS = 1_000;

// Effects retry with backoff until they land (upstream had one attempt).
const retry = {
  initialInterval: '500ms',
  backoffCoefficient: 2,
  maximumInterval: '30s',
} as const;
const effects = proxyActivities<LegacySessionActivities>({
  // An effect is a few round trips; an attempt lost with a killed worker is retried only once this
  // runs out, so it bounds how late a destroy can be after a crash.
  startToCloseTimeout: '10s',
  retry,
});

type Outbox = {
  kind: 'live' | 'connect' | 'disconnect';
  session: Session;
  at: number;
};

export async function legacySessionWorkflow(input: SessionWorkflowInput): Promise<SessionState> {
  const idle = input.idleTimeoutMs;
  const metrics = sessionMetrics();
  const hardDelay = 4 * idle;
  const maxEvents = input.maxHistoryEvents ?? DEFAULT_MAX_HISTORY_EVENTS;
  const start = checkActive(input.active);
  if (!input.state && !start.ok) {
    throw ApplicationFailure.nonRetryable(`invalid start input: ${start.field} ${start.reason}`, 'InvalidInput');
  }
  const state: SessionState = input.state ?? fresh(input.active.session, Date.now());
  if (!input.state) metrics.started.add(1);
  const outbox: Outbox[] = input.state
    ? []
    : [
        { kind: 'live', session: state.session, at: input.active.at },
        { kind: 'connect', session: state.session, at: input.active.at },
      ];
  let refreshLive = false;
  // Bumped by every reconnect: the result of an effect started before it must not be applied.
  let epoch = 0;
  // Why the current close happened, for the destroy that follows it. Declared before the handlers:
  // signals delivered with the first activation run them before the rest of this body.
  let closeReason: DestroyReason = DestroyReason.closed;

  const drop = (signal: string, check: Check<unknown>) => {
    state.counts.droppedSignals++;
    if (!check.ok)
      log.warn('malformed signal dropped', {
        signal,
        field: check.field,
        reason: check.reason,
      });
  };

  setHandler(stateQuery, () => state);

  setHandler(activeSignal, (raw) => {
    const msg = checkActive(raw);
    if (!msg.ok) return drop('active', msg);
    const { session, at } = msg.value;
    if (session.connectionId !== state.connectionId)
      return drop('active', {
        ok: false,
        field: 'session.connectionId',
        reason: 'belongs to another workflow',
      });
    if (session.uid !== state.session.uid || session.appPid !== state.session.appPid) {
      return drop('active', {
        ok: false,
        field: 'session.uid',
        reason: 'connection owned by another uid/appPid',
      });
    }
    const now = Date.now();
    if (state.status === SessionStatus.connected && session.socketId === state.socketId) {
      state.lastSeenAt = now;
      return;
    }
    if (state.status !== SessionStatus.destroyed) {
      state.counts.reconnects++;
      metrics.reconnected.add(1);
    } else {
      metrics.started.add(1);
    }
    // A new lifetime on the same connectionId: everything but the counts starts afresh.
    Object.assign(state, fresh(session, now), { counts: state.counts });
    epoch++;
    outbox.push({ kind: 'live', session, at }, { kind: 'connect', session, at });
  });

  setHandler(heartbeatSignal, (raw) => {
    const msg = checkHeartbeat(raw);
    if (!msg.ok) return drop('heartbeat', msg);
    if (state.status !== SessionStatus.connected) return; // a late pong: the close already won
    state.lastSeenAt = Date.now();
    state.counts.heartbeats++;
    refreshLive = true;
  });

  setHandler(disconnectedSignal, (raw) => {
    const msg = checkDisconnected(raw);
    if (!msg.ok) return drop('disconnected', msg);
    if (msg.value.connectionId !== state.connectionId)
      return drop('disconnected', {
        ok: false,
        field: 'connectionId',
        reason: 'belongs to another workflow',
      });
    if (msg.value.socketId !== state.socketId) {
      state.counts.staleDisconnects++;
      return;
    }
    if (state.status !== SessionStatus.connected) return; // a second close of the same socket
    close(Date.now(), msg.value.at);
  });

  setHandler(invalidateSignal, (raw) => {
    const msg = checkInvalidate(raw);
    if (!msg.ok) return drop('invalidate', msg);
    if (state.status !== SessionStatus.destroyed) state.invalidateReason = msg.value.reason;
  });

  function close(closedAt: number, eventAt: number, reason: DestroyReason = DestroyReason.closed): void {
    closeReason = reason;
    Object.assign(state, {
      status: SessionStatus.disconnected,
      disconnectedAt: closedAt,
      softDestroyAt: closedAt + SOFT_DESTROY_DELAY_MS,
      hardDestroyAt: closedAt + hardDelay,
    } satisfies Partial<SessionState>);
    outbox.push({ kind: 'disconnect', session: state.session, at: eventAt });
  }

  async function runEffect(item: Outbox): Promise<void> {
    if (item.kind === 'live') {
      await effects.markSessionLive({ session: item.session, at: item.at });
    } else {
      try {
        await effects.recordConnectionEvent({ session: item.session, type: item.kind, at: item.at });
        if (item.kind === 'connect' && item.session.user)
          await effects.signalUserConnectionUp({ session: item.session });
      } catch (err) {
        // Bad input (unknown app), not an outage: end the session cleanly instead of failing the run.
        if (!(err instanceof ActivityFailure && err.cause instanceof ApplicationFailure && err.cause.nonRetryable)) {
          throw err;
        }
        log.error('session rejected', { connectionId: state.connectionId, reason: err.cause.message });
        state.invalidateReason ??= `rejected: ${err.cause.message}`;
        outbox.length = 0;
      }
    }
  }

  // Timers are never cancelled: a cancellation's command is issued a microtask after the code that
  // asked for it, so its place among other commands can differ between a run and its replay (a
  // nondeterminism error). A pending timer due no later than the deadline wakes the loop in time;
  // when it fires early the loop re-arms for the rest. So heartbeats arm nothing: the liveness timer
  // fires once per 4 × idle and is re-armed (5 events). Timers pending when the run ends are dropped.
  const pendingTimers: number[] = [];
  let timerFired = false;
  function arm(deadline: number): void {
    if (pendingTimers.some((due) => due <= deadline)) return;
    pendingTimers.push(deadline);
    void sleep(Math.max(1, deadline - Date.now())).then(() => {
      pendingTimers.splice(pendingTimers.indexOf(deadline), 1);
      timerFired = true;
    });
  }

  function setStatus(status: SessionStatus): void {
    upsertSearchAttributes({ [SessionStatusKey.name]: [status] });
  }

  // A reconnect may land in the same activation that finished the destroy: then go round again.
  do {
    await lifecycle();
    await condition(allHandlersFinished);
  } while (state.status !== SessionStatus.destroyed);
  return state;

  async function lifecycle(): Promise<void> {
    while (true) {
      timerFired = false; // every pass re-reads the clock, so an earlier firing is accounted for
      if (state.invalidateReason !== null && state.status !== SessionStatus.destroyed) {
        const startEpoch = epoch;
        if (state.status === SessionStatus.connected) close(Date.now(), Date.now());
        while (outbox.length) await runEffect(outbox.shift()!);
        await destroy(DestroyReason.invalidated);
        if (epoch !== startEpoch) continue;
        break;
      }
      const item = outbox.shift();
      if (item) {
        const wasStatus =
          item.kind === 'connect'
            ? SessionStatus.connected
            : item.kind === 'disconnect'
              ? SessionStatus.disconnected
              : null;
        await runEffect(item);
        if (wasStatus) setStatus(wasStatus);
        continue;
      }
      if (refreshLive && state.status === SessionStatus.connected) {
        refreshLive = false;
        await effects.markSessionLive({
          session: state.session,
          at: state.lastSeenAt,
        });
        continue;
      }
      refreshLive = false;
      const now = Date.now();
      if (state.status === SessionStatus.connected) {
        const expiry = state.lastSeenAt + hardDelay;
        if (now >= expiry) {
          log.info('liveness expired: treating as closed at last sign of life', { connectionId: state.connectionId });
          close(state.lastSeenAt, state.lastSeenAt, DestroyReason.liveness);
          continue;
        }
        const info = workflowInfo();
        if (info.historyLength >= maxEvents || info.continueAsNewSuggested) {
          await condition(allHandlersFinished);
          if (outbox.length === 0 && !refreshLive && state.invalidateReason === null) {
            state.counts.continuedAsNew++;
            // Memo and search attributes from state, not workflowInfo(): not every server carries them over.
            await makeContinueAsNewFunc<typeof legacySessionWorkflow>({
              memo: sessionMemo(state.session),
              typedSearchAttributes: sessionSearchAttributes(state.session, state.status),
            })({ ...input, state });
          }
          continue;
        }
        arm(expiry);
      } else if (state.status === SessionStatus.disconnected) {
        if (!state.presenceRemoved && now >= state.softDestroyAt!) {
          const startEpoch = epoch;
          await effects.removeSessionPresence({
            session: state.session,
            closingSocketId: state.socketId,
          });
          if (epoch === startEpoch) {
            state.presenceRemoved = true;
            metrics.presenceRemoved.add(1);
            if (state.session.user) await effects.signalUserConnectionDown({ session: state.session });
          }
          continue;
        }
        if (now >= state.hardDestroyAt!) {
          const startEpoch = epoch;
          await destroy(closeReason);
          if (epoch !== startEpoch) continue;
          break;
        }
        arm(state.presenceRemoved ? state.hardDestroyAt! : state.softDestroyAt!);
      } else {
        break;
      }
      const waitingIn = state.status;
      await condition(
        () =>
          timerFired ||
          outbox.length > 0 ||
          refreshLive ||
          state.invalidateReason !== null ||
          state.status !== waitingIn,
      );
    }
  }

  async function destroy(reason: DestroyReason): Promise<void> {
    const startEpoch = epoch;
    await effects.destroySession({
      session: state.session,
      closingSocketId: state.socketId,
    });
    if (epoch !== startEpoch) return; // reconnected meanwhile: the loop records the new socket
    state.status = SessionStatus.destroyed;
    state.destroyReason = reason;
    metrics.destroyed.add(1, { reason });
    setStatus(SessionStatus.destroyed);
    if (!state.presenceRemoved && state.session.user)
      await effects.signalUserConnectionDown({ session: state.session });
  }
}

function fresh(session: Session, now: number): SessionState {
  return {
    connectionId: session.connectionId,
    status: SessionStatus.connected,
    session,
    socketId: session.socketId,
    connectedAt: now,
    lastSeenAt: now,
    disconnectedAt: null,
    softDestroyAt: null,
    hardDestroyAt: null,
    presenceRemoved: false,
    destroyReason: null,
    invalidateReason: null,
    counts: {
      reconnects: 0,
      heartbeats: 0,
      staleDisconnects: 0,
      droppedSignals: 0,
      continuedAsNew: 0,
    },
  };
}
