import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  makeContinueAsNewFunc,
  patched,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import {
  legacySessionWorkflow,
  type SessionState as LegacyState,
  type SessionWorkflowInput as LegacyInput,
} from './legacy/session-v1';
import { Deadline } from './deadline';
import { SessionStatus, type SessionView, type SessionWorkflowInput } from '../contracts/session';
import { SessionStatusKey, sessionMemo, sessionSearchAttributes } from '../contracts/search-attributes';
import { runEffect } from './session/effects';
import { setSessionHandlers } from './session/handlers';
import { EffectKind, SessionMachine } from './session/machine';
import { sessionMetrics } from './session/metrics';
import { sessionView } from './session/view';

/** Marks runs in which a reconnect went on while the previous socket's close still ran (0.5). */
export const CLOSE_BESIDE_RECONNECT = 'close-beside-reconnect';

// About 40 hours of a connected session at the default heartbeat interval; short histories keep the
// replay of an evicted or restarted workflow cheap.
const DEFAULT_MAX_HISTORY_EVENTS = 1_000;

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
  const view = () => sessionView(m.state, options.livenessTimeoutMs);
  setSessionHandlers(m, metrics, view, () => (changed = true));

  /**
   * A close and the next lifetime's connect commute (docs/design.md, "Session lifecycle"): when a
   * reconnect comes while the close runs, the loop goes on to connect at once and the close lands
   * in the background. Runs recorded before 0.5 waited for it, and replay so.
   */
  const supersededWhileRunning = async (running: Promise<unknown>, lifetime: number): Promise<boolean> => {
    const superseded = condition(() => m.state.lifetime !== lifetime).then(() => true);
    return (await Promise.race([running.then(() => false), superseded])) && patched(CLOSE_BESIDE_RECONNECT);
  };
  const deadline = new Deadline();
  // Closes of earlier lifetimes still running (see below); the run ends or continues only after them.
  const background: Promise<unknown>[] = [];
  // SessionStatus while the run lives; a destroyed session is a closed run (one upsert fewer).
  let shown: SessionStatus = input.state?.status ?? SessionStatus.connected;
  const maxEvents = input.maxHistoryEvents ?? DEFAULT_MAX_HISTORY_EVENTS;
  for (;;) {
    const step = m.next(Date.now());
    if (step.kind === 'effect') {
      const effect = step.effect;
      const running = runEffect(effect, input.version);
      if (effect.kind === EffectKind.close && (await supersededWhileRunning(running, effect.lifetime))) {
        background.push(running);
        continue;
      }
      const outcome = await running;
      if (effect.kind === EffectKind.softDestroy && effect.lifetime === m.state.lifetime)
        metrics.presenceRemoved.add(1);
      m.done(effect, outcome);
      continue;
    }
    if (step.kind === 'done') {
      metrics.destroyed.add(1, { reason: m.state.destroyReason! });
      await Promise.all(background);
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
      // A signal handled meanwhile is in the state it carries, owed effects included.
      await Promise.all(background);
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
