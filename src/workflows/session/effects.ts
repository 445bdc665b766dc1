import { log } from '@temporalio/workflow';
import { type EffectRunner, isRejection, rejectionMessage } from '../effect-runner';
import type { Effect, EffectKind } from './machine';

type Run = (fx: EffectRunner, e: Effect) => Promise<unknown>;

// Every effect is a regular activity (docs/design.md, "Activities"); in runs started by 0.2 the
// hard destroy, which ends the run, is the only one that always was (EffectRunner).
const run: Record<EffectKind, Run> = {
  connect: (fx, e) =>
    fx.run('connectSession', {
      session: e.session,
      at: e.at!,
      holder: e.holder!,
      previousHolder: e.previousHolder ?? null,
    }),
  close: (fx, e) => fx.run('closeSession', { session: e.session, at: e.at!, holder: e.holder }),
  softDestroy: (fx, e) => fx.run('softDestroySession', { session: e.session, closingSocketId: e.session.socketId }),
  hardDestroy: (fx, e) =>
    fx.run(
      'hardDestroySession',
      { session: e.session, closingSocketId: e.session.socketId, holder: e.holder },
      { durable: true },
    ),
};

/** Runs one effect until it lands; what the machine needs to know of its outcome. */
export async function runEffect(fx: EffectRunner, e: Effect): Promise<{ rejected?: string; holderLost?: boolean }> {
  try {
    const result = (await run[e.kind](fx, e)) as { holderLost?: boolean } | undefined;
    return { holderLost: result?.holderLost === true };
  } catch (err) {
    // Bad input (an unknown app), not an outage: end the session cleanly instead of failing the run.
    if (!isRejection(err)) throw err;
    const reason = rejectionMessage(err);
    log.error('session effect rejected', { connectionId: e.session.connectionId, effect: e.kind, reason });
    return { rejected: reason };
  }
}
