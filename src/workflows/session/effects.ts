import { log } from '@temporalio/workflow';
import { isRejection, rejectionMessage, runActivity } from '../effect-runner';
import type { SessionWorkflowInput } from '../../contracts/session';
import type { Effect, EffectKind } from './machine';

type StartedBy = SessionWorkflowInput['version'];
type Run = (e: Effect, startedBy: StartedBy) => Promise<unknown>;

// Every effect is a regular activity (docs/design.md, "Activities"); in runs started by 0.2 the
// hard destroy, which ends the run, is the only one that always was (effect-runner.ts).
const run: Record<EffectKind, Run> = {
  connect: (e, startedBy) =>
    runActivity(
      'connectSession',
      {
        session: e.session,
        at: e.at!,
        holder: e.holder!,
        previousHolder: e.previousHolder ?? null,
        ...(e.close ? { closed: e.close } : {}),
        ...(e.userUp === false ? { userUp: false } : {}),
      },
      { startedBy },
    ),
  close: (e, startedBy) =>
    runActivity('closeSession', { session: e.session, at: e.at!, holder: e.holder }, { startedBy }),
  softDestroy: (e, startedBy) =>
    runActivity(
      'softDestroySession',
      {
        session: e.session,
        closingSocketId: e.session.socketId,
        ...(e.close ? { close: e.close } : {}),
        ...(e.userSocketId && e.userSocketId !== e.session.socketId ? { userSocketId: e.userSocketId } : {}),
      },
      { startedBy },
    ),
  hardDestroy: (e, startedBy) =>
    runActivity(
      'hardDestroySession',
      { session: e.session, closingSocketId: e.session.socketId, holder: e.holder },
      { startedBy, durable: true },
    ),
};

/** Runs one effect until it lands; what the machine needs to know of its outcome. */
export async function runEffect(e: Effect, startedBy: StartedBy): Promise<{ rejected?: string; holderLost?: boolean }> {
  try {
    const result = (await run[e.kind](e, startedBy)) as { holderLost?: boolean } | undefined;
    return { holderLost: result?.holderLost === true };
  } catch (err) {
    // Bad input (an unknown app), not an outage: end the session cleanly instead of failing the run.
    if (!isRejection(err)) throw err;
    const reason = rejectionMessage(err);
    log.error('session effect rejected', { connectionId: e.session.connectionId, effect: e.kind, reason });
    return { rejected: reason };
  }
}
