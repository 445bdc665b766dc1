import { ApplicationFailure, Context } from '@temporalio/activity';
import { LOCAL_ATTEMPT_MS, type NotLanded } from '../contracts/local-effect';

type Effect<I, O> = (input: I) => Promise<O>;

/**
 * Run as a local activity, the effect answers NotLanded instead of failing or outliving
 * LOCAL_ATTEMPT_MS; bad input (a non-retryable failure) still fails. Run as a regular activity it
 * is unchanged. Why: a local activity that fails, retries or times out leaves markers the SDK does
 * not always replay as they ran (docs/design.md, "Local activities"). An attempt given up on may
 * still finish its writes, which are idempotent; the presence leaves are claimed per attempt.
 */
export function withinLocalBudget<I, O>(effect: Effect<I, O>): Effect<I, O | NotLanded> {
  return async (input: I) => {
    if (!Context.current().info.isLocal) return effect(input);
    let timer: NodeJS.Timeout | undefined;
    const budget = new Promise<NotLanded>((resolve) => {
      timer = setTimeout(() => resolve({ notLanded: true, reason: `over ${LOCAL_ATTEMPT_MS} ms` }), LOCAL_ATTEMPT_MS);
    });
    try {
      return await Promise.race([effect(input), budget]);
    } catch (err) {
      if (err instanceof ApplicationFailure && err.nonRetryable) throw err;
      return { notLanded: true, reason: err instanceof Error ? err.message : String(err) };
    } finally {
      clearTimeout(timer);
    }
  };
}
