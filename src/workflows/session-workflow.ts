import {
  ActivityFailure,
  ApplicationFailure,
  allHandlersFinished,
  condition,
  log,
  makeContinueAsNewFunc,
  proxyLocalActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
  legacySessionWorkflow,
  type SessionState as LegacyState,
  type SessionWorkflowInput as LegacyInput,
} from './legacy/session-v1';
import { Deadline } from './deadline';
import {
  SessionStatus,
  activeSignal,
  disconnectedSignal,
  gatewayLostSignal,
  heartbeatSignal,
  invalidateSignal,
  stateQuery,
  type SessionView,
  type SessionWorkflowInput,
} from './messages';
import { SessionStatusKey, sessionMemo, sessionSearchAttributes } from './search-attributes';
import { EffectKind, SessionMachine, type Effect } from './session/machine';
import { sessionMetrics } from './session/metrics';
import { sessionView } from './session/view';

// About 40 hours of a connected session at the default heartbeat interval; short histories keep the
// replay of an evicted or restarted workflow cheap.
const DEFAULT_MAX_HISTORY_EVENTS = 1_000;

// Short, idempotent effects: one marker each, inside the workflow task (docs/design.md, "Local activities").
const fx = proxyLocalActivities<Activities>({
  startToCloseTimeout: '10s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '30s' },
});
const run: Record<EffectKind, (e: Effect) => Promise<unknown>> = {
  connect: (e) =>
    fx.connectSession({ session: e.session, at: e.at!, holder: e.holder!, previousHolder: e.previousHolder ?? null }),
  close: (e) => fx.closeSession({ session: e.session, at: e.at!, holder: e.holder }),
  softDestroy: (e) => fx.softDestroySession({ session: e.session, closingSocketId: e.session.socketId }),
  hardDestroy: (e) =>
    fx.hardDestroySession({ session: e.session, closingSocketId: e.session.socketId, holder: e.holder }),
};

/** One run per websocket connection (workflow id `session:{connectionId}`): a shell over SessionMachine. */
export async function sessionWorkflow(input: SessionWorkflowInput | LegacyInput): Promise<SessionView | LegacyState> {
  if (!('version' in input)) return legacySessionWorkflow(input);
  const options = { idleTimeoutMs: input.idleTimeoutMs, livenessTimeoutMs: input.livenessTimeoutMs };
  const metrics = sessionMetrics();
  let m: SessionMachine;
  try {
    m = input.state
      ? new SessionMachine(input.state, options)
      : SessionMachine.start(input.active, Date.now(), options);
  } catch (err) {
    throw ApplicationFailure.nonRetryable((err as Error).message, 'InvalidInput');
  }
  if (!input.state) metrics.started.add(1);
  let changed = false;
  const on =
    <A>(apply: (raw: A, now: number) => void) =>
    (raw: A) => {
      const before = m.state.counts.droppedSignals;
      apply(raw, Date.now());
      if (m.state.counts.droppedSignals > before && m.dropped) log.warn('malformed signal dropped', { ...m.dropped });
      changed = true;
    };
  const view = () => sessionView(m.state, options.livenessTimeoutMs);
  setHandler(stateQuery, view);
  setHandler(
    activeSignal,
    on((raw, now) => {
      const reconnects = m.state.counts.reconnects;
      const destroyed = m.state.status === SessionStatus.destroyed;
      m.active(raw, now);
      if (m.state.counts.reconnects > reconnects) metrics.reconnected.add(1);
      else if (destroyed && m.state.status === SessionStatus.connected) metrics.started.add(1);
    }),
  );
  setHandler(
    heartbeatSignal,
    on((raw, now) => m.heartbeat(raw, now)),
  );
  setHandler(
    disconnectedSignal,
    on((raw, now) => m.disconnected(raw, now)),
  );
  setHandler(
    gatewayLostSignal,
    on((raw, now) => m.gatewayLost(raw, now)),
  );
  setHandler(
    invalidateSignal,
    on((raw) => m.invalidate(raw)),
  );

  const deadline = new Deadline();
  // SessionStatus while the run lives; a destroyed session is a closed run (one upsert fewer).
  let shown: SessionStatus = input.state?.status ?? SessionStatus.connected;
  const maxEvents = input.maxHistoryEvents ?? DEFAULT_MAX_HISTORY_EVENTS;
  for (;;) {
    const step = m.next(Date.now());
    if (step.kind === 'effect') {
      await effect(step.effect);
      continue;
    }
    if (step.kind === 'done') {
      metrics.destroyed.add(1, { reason: m.state.destroyReason! });
      await condition(allHandlersFinished);
      if (m.next(Date.now()).kind === 'done') return view();
      continue; // a reconnect landed in the same activation
    }
    if (m.state.status !== shown) {
      shown = m.state.status;
      upsertSearchAttributes({ [SessionStatusKey.name]: [shown] });
    }
    const info = workflowInfo();
    if (step.quiet && (info.historyLength >= maxEvents || info.continueAsNewSuggested)) {
      await condition(allHandlersFinished);
      if (!changed) {
        m.state.counts.continuedAsNew++;
        // Memo and search attributes from state, not workflowInfo(): not every server carries them over.
        await makeContinueAsNewFunc<typeof sessionWorkflow>({
          memo: sessionMemo(m.state.session),
          typedSearchAttributes: sessionSearchAttributes(m.state.session, m.state.status),
        })({ ...input, state: m.state });
      }
    }
    changed = false;
    await deadline.wait(step.until, () => changed);
  }

  async function effect(e: Effect): Promise<void> {
    let rejected: string | undefined;
    let holderLost = false;
    try {
      holderLost = ((await run[e.kind](e)) as { holderLost?: boolean } | undefined)?.holderLost === true;
    } catch (err) {
      // Bad input (an unknown app), not an outage: end the session cleanly instead of failing the run.
      // (A local activity's failure may reach the workflow unwrapped.)
      const cause = err instanceof ActivityFailure ? err.cause : err;
      if (!(cause instanceof ApplicationFailure && cause.nonRetryable)) throw err;
      log.error('session effect rejected', {
        connectionId: m.state.connectionId,
        effect: e.kind,
        reason: cause.message,
      });
      rejected = cause.message;
    }
    if (e.kind === EffectKind.softDestroy && e.lifetime === m.state.lifetime) metrics.presenceRemoved.add(1);
    m.done(e, rejected === undefined ? { holderLost } : { rejected });
  }
}
