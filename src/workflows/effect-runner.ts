import {
  ActivityFailure,
  ApplicationFailure,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  workflowInfo,
} from '@temporalio/workflow';
import type { GatewayActivities } from '../contracts/gateway';
import { LOCAL_ATTEMPT_MS, isNotLanded, type NotLanded } from '../contracts/local-effect';
import type { SessionActivities } from '../contracts/session';

/** The effects that may run as local activities: the session's and the gateway renewal's. */
type Effects = SessionActivities & GatewayActivities;
type Name = keyof Effects;
type Input<K extends Name> = Parameters<Effects[K]>[0];
type Output<K extends Name> = Exclude<Awaited<ReturnType<Effects[K]>>, NotLanded>;

/** Marks runs that run every effect as a regular activity (0.3); 0.2's runs have no such marker. */
export const EFFECTS_AS_ACTIVITIES = 'effects-as-activities';

/** The SDK's schedule-to-close of a local activity: a backstop behind the effect's own LOCAL_ATTEMPT_MS. */
export const LOCAL_BUDGET_MS = LOCAL_ATTEMPT_MS + 500;
/** Local activities one workflow task may run: together they end before the task's heartbeat (8 s). */
export const LOCAL_PER_TASK = 2;

const retry = { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '30s' } as const;
// One attempt: a local activity that failed and was retried left markers the SDK did not replay
// (the failure suite's postgres outage); the effect answers NotLanded instead, and the regular
// activity that follows does the retrying.
const local = proxyLocalActivities<Effects>({ scheduleToCloseTimeout: LOCAL_BUDGET_MS, retry: { maximumAttempts: 1 } });
const durable = proxyActivities<Effects>({ startToCloseTimeout: '10s', retry });

/**
 * Since 0.3 every effect is a regular activity; runs started by 0.2 keep running theirs as local
 * activities until they end (`patched`: their histories hold local-activity markers).
 *
 * Why: in the SDK here (1.24), a workflow task whose local activities did not all resolve inside it
 * (a heartbeat past 80 % of the task timeout, a task completed early to answer a query, a worker
 * killed in the middle) or a local activity that failed, retried and timed out, left histories
 * that did not replay ("Missing associated machine for LocalActivity(n)": the failure suite's
 * worker kill and Postgres outage, a reconnect in CI, test/slow-effects.test.ts): the session is
 * stuck. A regular activity's result is an event of its own, delivered in history order, at 5
 * events more per effect (docs/design.md, "Activities"). The 0.2 path below bounds what it can:
 * one attempt of at most LOCAL_ATTEMPT_MS (NotLanded past it), at most LOCAL_PER_TASK a task, then
 * the regular activity.
 */
export class EffectRunner {
  private task = -1;
  private localInTask = 0;

  async run<K extends Name>(name: K, input: Input<K>, options: { durable?: boolean } = {}): Promise<Output<K>> {
    if (!options.durable && !patched(EFFECTS_AS_ACTIVITIES) && this.localSlot()) {
      let reason: string;
      try {
        const result = await (local[name] as (i: Input<K>) => Promise<Output<K> | NotLanded>)(input);
        if (!isNotLanded(result)) return result;
        reason = result.reason;
      } catch (err) {
        if (isRejection(err)) throw err;
        reason = err instanceof Error ? err.message : String(err);
      }
      log.warn('local effect did not land within its budget; running it as an activity', { effect: name, reason });
    }
    return (durable[name] as (i: Input<K>) => Promise<Output<K>>)(input);
  }

  /** The history length changes with every new workflow task and only then (also on replay). */
  private localSlot(): boolean {
    const task = workflowInfo().historyLength;
    if (task !== this.task) {
      this.task = task;
      this.localInTask = 0;
    }
    return this.localInTask++ < LOCAL_PER_TASK;
  }
}

/** Bad input (non-retryable), not an outage: the caller handles it. A local failure may come unwrapped. */
export function isRejection(err: unknown): err is ActivityFailure | ApplicationFailure {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  return cause instanceof ApplicationFailure && cause.nonRetryable === true;
}

export function rejectionMessage(err: ActivityFailure | ApplicationFailure): string {
  return (err instanceof ActivityFailure ? err.cause! : err).message;
}
