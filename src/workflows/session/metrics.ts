import { metricMeter } from '@temporalio/workflow';

/** Emitted by the SDK only when not replaying, so each counts once per real transition. */
export const sessionMetrics = () => ({
  started: metricMeter.createCounter(
    'tether_sessions_started',
    'sessions',
    'Session workflows started (first connect)',
  ),
  reconnected: metricMeter.createCounter('tether_sessions_reconnected', 'sessions', 'Reconnects of a session'),
  presenceRemoved: metricMeter.createCounter(
    'tether_presence_removed',
    'sessions',
    'Soft destroys that removed presence',
  ),
  destroyed: metricMeter.createCounter('tether_sessions_destroyed', 'sessions', 'Sessions destroyed, by reason'),
});
