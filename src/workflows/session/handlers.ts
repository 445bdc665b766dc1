import { log, setHandler } from '@temporalio/workflow';
import {
  SessionStatus,
  activeSignal,
  disconnectedSignal,
  gatewayLostSignal,
  heartbeatSignal,
  invalidateSignal,
  stateQuery,
  type SessionView,
} from '../messages';
import type { SessionMachine } from './machine';
import type { sessionMetrics } from './metrics';

/**
 * The session's message handlers. Each hands the loop what to feed the machine, with the workflow
 * clock of its arrival; the loop applies it after the effects that were due (see the workflow).
 * What the machine drops as malformed is logged: a poisoned signal never fails the task.
 */
export function setSessionHandlers(
  m: SessionMachine,
  metrics: ReturnType<typeof sessionMetrics>,
  view: () => SessionView,
  enqueue: (apply: () => void) => void,
): void {
  const on =
    <A>(apply: (raw: A, now: number) => void) =>
    (raw: A) => {
      const now = Date.now();
      enqueue(() => {
        const dropped = m.state.counts.droppedSignals;
        apply(raw, now);
        if (m.state.counts.droppedSignals > dropped && m.dropped)
          log.warn('malformed signal dropped', { ...m.dropped });
      });
    };
  setHandler(stateQuery, view);
  setHandler(
    activeSignal,
    on((raw, now) => {
      const reconnects = m.state.counts.reconnects;
      const destroyed = m.state.status === SessionStatus.destroyed;
      m.active(raw, now);
      if (m.state.counts.reconnects > reconnects) metrics.reconnected.add(1);
      else if (destroyed && m.state.status === SessionStatus.connected) metrics.started.add(1);
    }),
  );
  setHandler(heartbeatSignal, on(m.heartbeat.bind(m)));
  setHandler(disconnectedSignal, on(m.disconnected.bind(m)));
  setHandler(gatewayLostSignal, on(m.gatewayLost.bind(m)));
  setHandler(invalidateSignal, on(m.invalidate.bind(m)));
}
