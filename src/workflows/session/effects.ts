import { ActivityFailure, ApplicationFailure, log, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import type { Effect, EffectKind } from './machine';

// Short, idempotent effects: one marker each, inside the workflow task (docs/design.md, "Local activities").
const retry = { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '30s' } as const;
const fx = proxyLocalActivities<Activities>({ startToCloseTimeout: '10s', retry });
// The hard destroy ends the run. A signal that comes while the task completing the run is open
// makes the server refuse that completion, and the SDK's retry of a task whose local activities it
// holds then diverges (signals are handed over before the fired timer): a nondeterminism error
// (failure suite, hard-race). As a regular activity, its result is in history before the task that
// completes the run, which then runs no local activity. 5 events more per lifecycle.
const last = proxyActivities<Activities>({ startToCloseTimeout: '10s', retry });

const run: Record<EffectKind, (e: Effect) => Promise<unknown>> = {
  connect: (e) =>
    fx.connectSession({ session: e.session, at: e.at!, holder: e.holder!, previousHolder: e.previousHolder ?? null }),
  close: (e) => fx.closeSession({ session: e.session, at: e.at!, holder: e.holder }),
  softDestroy: (e) => fx.softDestroySession({ session: e.session, closingSocketId: e.session.socketId }),
  hardDestroy: (e) =>
    last.hardDestroySession({ session: e.session, closingSocketId: e.session.socketId, holder: e.holder }),
};

/** Runs one effect until it lands; what the machine needs to know of its outcome. */
export async function runEffect(e: Effect): Promise<{ rejected?: string; holderLost?: boolean }> {
  try {
    const result = (await run[e.kind](e)) as { holderLost?: boolean } | undefined;
    return { holderLost: result?.holderLost === true };
  } catch (err) {
    // Bad input (an unknown app), not an outage: end the session cleanly instead of failing the run.
    // (A local activity's failure may reach the workflow unwrapped.)
    const cause = err instanceof ActivityFailure ? err.cause : err;
    if (!(cause instanceof ApplicationFailure && cause.nonRetryable)) throw err;
    log.error('session effect rejected', {
      connectionId: e.session.connectionId,
      effect: e.kind,
      reason: cause.message,
    });
    return { rejected: cause.message };
  }
}
