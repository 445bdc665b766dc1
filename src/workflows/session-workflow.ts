import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  makeContinueAsNewFunc,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import {
  legacySessionWorkflow,
  type SessionState as LegacyState,
  type SessionWorkflowInput as LegacyInput,
} from './legacy/session-v1';
import { Deadline } from './deadline';
import { SessionStatus, type SessionState, type SessionView, type SessionWorkflowInput } from '../contracts/session';
import { SessionStatusKey, sessionMemo, sessionSearchAttributes } from '../contracts/search-attributes';
import { runEffect } from './session/effects';
import { setSessionHandlers } from './session/handlers';
import { EffectKind, SessionMachine } from './session/machine';
import { sessionMetrics } from './session/metrics';
import { sessionView } from './session/view';

// About 40 hours of a connected session at the default heartbeat interval; short histories keep the
// replay of an evicted or restarted workflow cheap.
const DEFAULT_MAX_HISTORY_EVENTS = 1_000;

/** One run per websocket connection (workflow id `session:{connectionId}`): a shell over SessionMachine. */
export async function sessionWorkflow(input: SessionWorkflowInput | LegacyInput): Promise<SessionView | LegacyState> {
  if (!('version' in input)) return legacySessionWorkflow(input);
  const options = {
    idleTimeoutMs: input.idleTimeoutMs,
    livenessTimeoutMs: input.livenessTimeoutMs,
    deferClose: input.version >= 4,
    quietReconnect: input.version >= 5,
  };
  // Since 0.7 a close shows as disconnected only once its grace is over: a socket that reconnects
  // within it (a storm) writes nothing to visibility, twice over.
  const shownStatus = (s: SessionState): SessionStatus =>
    input.version >= 5 && s.status === SessionStatus.disconnected && !s.presenceRemoved
      ? SessionStatus.connected
      : s.status;
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
  const view = () => sessionView(m.state, options.livenessTimeoutMs);
  setSessionHandlers(m, metrics, view, () => (changed = true));

  const deadline = new Deadline();
  // SessionStatus while the run lives; a destroyed session is a closed run (one upsert fewer).
  let shown = shownStatus(m.state);
  const maxEvents = input.maxHistoryEvents ?? DEFAULT_MAX_HISTORY_EVENTS;
  for (;;) {
    const step = m.next(Date.now());
    if (step.kind === 'effect') {
      const outcome = await runEffect(step.effect, input.version);
      if (step.effect.kind === EffectKind.softDestroy && step.effect.lifetime === m.state.lifetime)
        metrics.presenceRemoved.add(1);
      m.done(step.effect, outcome);
      continue;
    }
    if (step.kind === 'done') {
      metrics.destroyed.add(1, { reason: m.state.destroyReason! });
      await condition(allHandlersFinished);
      if (m.next(Date.now()).kind === 'done') return view();
      continue; // a reconnect landed in the same activation
    }
    if (shownStatus(m.state) !== shown) {
      shown = shownStatus(m.state);
      upsertSearchAttributes({ [SessionStatusKey.name]: [shown] });
    }
    const info = workflowInfo();
    if (step.quiet && (info.historyLength >= maxEvents || info.continueAsNewSuggested)) {
      // A signal handled meanwhile is in the state it carries, owed effects included.
      await condition(allHandlersFinished);
      m.state.counts.continuedAsNew++;
      // Memo and search attributes from state, not workflowInfo(): not every server carries them over.
      await makeContinueAsNewFunc<typeof sessionWorkflow>({
        memo: sessionMemo(m.state.session),
        typedSearchAttributes: sessionSearchAttributes(m.state.session, m.state.status),
      })({ ...input, state: m.state });
    }
    changed = false;
    await deadline.wait(step.until, () => changed);
  }
}
