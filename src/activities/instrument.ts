import { Context } from '@temporalio/activity';

type AnyActivity = (...args: never[]) => Promise<unknown>;

/**
 * Counts failed activity attempts by activity and error kind (`tether_effect_failures_total`), so
 * an operator sees which backing service is failing before retries run out of patience.
 */
export function instrument<T extends Record<string, AnyActivity>>(activities: T): T {
  const wrapped: Record<string, AnyActivity> = {};
  for (const [name, fn] of Object.entries(activities)) {
    wrapped[name] = async (...args: never[]) => {
      try {
        return await fn(...args);
      } catch (err) {
        Context.current()
          .metricMeter.createCounter('tether_effect_failures', 'attempts', 'Failed activity attempts')
          .add(1, { activity: name, kind: err instanceof Error ? err.name : 'unknown' });
        throw err;
      }
    };
  }
  return wrapped as T;
}
