/**
 * What a session or gateway effect run as a local activity answers when it did not land within its
 * budget (docs/design.md, "Local activities"): a result, not a failure, so that the marker the
 * workflow task records is the plain kind that replays as it ran; the workflow then runs the effect
 * again as a regular activity.
 */
export interface NotLanded {
  notLanded: true;
  reason: string;
}

/** A local attempt gives up after this long (and the SDK's own timeout, a little later, backs it up). */
export const LOCAL_ATTEMPT_MS = 2_000;

export function isNotLanded(result: unknown): result is NotLanded {
  return typeof result === 'object' && result !== null && (result as Partial<NotLanded>).notLanded === true;
}
