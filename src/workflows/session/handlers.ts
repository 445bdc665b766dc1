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
} from '../../contracts/session';
import type { SessionMachine } from './machine';
import type { sessionMetrics } from './metrics';

/**
 * The session's message handlers: each feeds the machine with the workflow clock, logs what it
 * dropped as malformed (a poisoned signal never fails the task) and tells the loop something changed.
 */
export function setSessionHandlers(
  m: SessionMachine,
  metrics: ReturnType<typeof sessionMetrics>,
  view: () => SessionView,
  changed: () => void,
): void {
  const on =
    <A>(apply: (raw: A, now: number) => void) =>
    (raw: A) => {
      const dropped = m.state.counts.droppedSignals;
      apply(raw, Date.now());
      if (m.state.counts.droppedSignals > dropped && m.dropped) log.warn('malformed signal dropped', { ...m.dropped });
      changed();
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
