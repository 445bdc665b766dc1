import { DefaultLogger, Runtime, type LogEntry } from '@temporalio/worker';
import type { Config } from '../config';
import type { Logger } from '../logger';

/**
 * Installs the Temporal runtime once per process, before any worker or connection: its own logs
 * (and workflow/activity logs) go through our logger, its metrics (Temporal's and ours, recorded
 * with the SDK's metric meter) to a Prometheus exporter on loopback that the health server serves.
 */
export function installRuntime(config: Config, logger: Logger): { prometheusUrl: string } {
  const bind = `127.0.0.1:${config.metricsPort + 1}`;
  const level = config.logLevel.toUpperCase() as 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  Runtime.install({
    logger: new DefaultLogger(level, (entry: LogEntry) => {
      const fields = { ...(entry.meta ?? {}) };
      const method =
        entry.level === 'TRACE' ? 'debug' : (entry.level.toLowerCase() as 'debug' | 'info' | 'warn' | 'error');
      logger[method](entry.message, fields);
    }),
    telemetryOptions: {
      metrics: { prometheus: { bindAddress: bind, countersTotalSuffix: true } },
      logging: { forward: {}, filter: { core: level === 'DEBUG' ? 'DEBUG' : 'WARN', other: 'ERROR' } },
    },
  });
  return { prometheusUrl: `http://${bind}/metrics` };
}
