import {
  ActivityFailure,
  ApplicationFailure,
  log,
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
 * Runs effects as local activities that always resolve inside the workflow task that scheduled
 * them, and as regular activities otherwise.
 *
 * Why the bound: the SDK heartbeats a task whose local activities outlive 80 % of its 10 s
 * timeout; signals that came meanwhile are then handed to the workflow before the marker lands
 * in a later task, but on replay the marker is handed over first. Code that chooses its next
 * effect from both then takes another path on replay: a nondeterminism error that strands the run
 * (docs/design.md, "Local activities"; test/slow-effects.test.ts). So a local activity makes one
 * attempt of at most LOCAL_ATTEMPT_MS (the effect answers NotLanded past it or on an error; the SDK's
 * LOCAL_BUDGET_MS backs it up), a task runs at most LOCAL_PER_TASK of them, and an effect that did not
 * land (an outage, a stalled store) runs again as a regular activity, retried until it lands.
 * A local attempt that times out keeps running beside its replacement: effects are idempotent, and
 * the one that is not (publishing the owed presence leaves) is claimed by one attempt at a time.
 */
export class EffectRunner {
  private task = -1;
  private localInTask = 0;

  async run<K extends Name>(name: K, input: Input<K>, options: { durable?: boolean } = {}): Promise<Output<K>> {
    if (!options.durable && this.localSlot()) {
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
