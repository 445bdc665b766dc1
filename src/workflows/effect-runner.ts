import {
  ActivityFailure,
  ApplicationFailure,
  patched,
  proxyActivities,
  proxyLocalActivities,
} from '@temporalio/workflow';
import type { GatewayActivities } from '../contracts/gateway';
import type { SessionActivities, SessionWorkflowInput } from '../contracts/session';

type Effects = SessionActivities & GatewayActivities;
type Name = keyof Effects;
type Input<K extends Name> = Parameters<Effects[K]>[0];
type Output<K extends Name> = Awaited<ReturnType<Effects[K]>>;

/** Marks runs that run every effect as a regular activity (0.3); 0.2's runs have no such marker. */
export const EFFECTS_AS_ACTIVITIES = 'effects-as-activities';

const retry = { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '30s' } as const;
// 0.2's options: only replayed (below), never run anew.
const local = proxyLocalActivities<Effects>({ startToCloseTimeout: '10s', retry });
const durable = proxyActivities<Effects>({ startToCloseTimeout: '10s', retry });

/**
 * Since 0.3 every effect is a regular activity. A run started by 0.2 (input version 2) replays its
 * local-activity markers through 0.2's path, and `patched` turns it to regular activities from its
 * first task that is not a replay, so no local activity is ever run anew. A run started since 0.3
 * (version 3) never asks: no marker, no `TemporalChangeVersion` upsert (2 events and a visibility
 * write fewer a run).
 *
 * Why: in the SDK here (1.24), a workflow task whose local activities did not all resolve inside it
 * (a heartbeat past 80 % of the task timeout, a task completed early to answer a query, a worker
 * killed in the middle) or a local activity that failed, retried and timed out, left histories
 * that did not replay ("Missing associated machine for LocalActivity(n)": the failure suite's
 * worker kill and Postgres outage, a reconnect in CI, test/slow-effects.test.ts): the session was
 * stuck. A regular activity's result is an event of its own, delivered in history order, at 5
 * events more per effect (docs/design.md, "Activities").
 */
export function runActivity<K extends Name>(
  name: K,
  input: Input<K>,
  /** The input version of the run (SessionWorkflowInput, GatewayWorkflowInput): 2 for 0.2's runs. */
  options: { startedBy: SessionWorkflowInput['version']; durable?: boolean },
): Promise<Output<K>> {
  const replayLocal = !options.durable && options.startedBy < 3 && !patched(EFFECTS_AS_ACTIVITIES);
  const proxy = replayLocal ? local[name] : durable[name];
  return (proxy as unknown as (i: Input<K>) => Promise<Output<K>>)(input);
}

/** Bad input (non-retryable), not an outage: the caller handles it. A local failure may come unwrapped. */
export function isRejection(err: unknown): err is ActivityFailure | ApplicationFailure {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  return cause instanceof ApplicationFailure && cause.nonRetryable === true;
}

export function rejectionMessage(err: ActivityFailure | ApplicationFailure): string {
  return (err instanceof ActivityFailure ? err.cause! : err).message;
}
