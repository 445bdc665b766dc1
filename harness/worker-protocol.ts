/** What a worker child and the harness that started it say to each other (environment and IPC). */
import type { WorkerMemory } from './worker-memory';

/** The workflow bundle file the child loads (built once per run: a restart takes a second). */
export const BUNDLE_ENV = 'HARNESS_WORKFLOW_BUNDLE';
/** Set: the child answers `memory` requests (and runs with `--expose-gc`). */
export const MEMORY_ENV = 'HARNESS_WORKER_MEMORY';

export type ToChild = { type: 'memory'; id: number };
export type FromChild =
  { type: 'ready' } | { type: 'memory'; id: number; memory: WorkerMemory } | { type: 'error'; message: string };

/**
 * The child is configured like the real worker, through tether's variables (loadConfig), for the
 * run's own Temporal server and task queue.
 */
export function workerEnv(opts: {
  address: string;
  namespace: string;
  taskQueue: string;
  bundleFile: string;
  logLevel: string;
  /** WS_IDLE_TIMEOUT_MS; tether's default when left out. */
  idleTimeoutMs?: number;
}): Record<string, string> {
  return {
    TEMPORAL_ADDRESS: opts.address,
    TEMPORAL_NAMESPACE: opts.namespace,
    TEMPORAL_TASK_QUEUE: opts.taskQueue,
    TEMPORAL_TLS: 'false',
    LOG_LEVEL: opts.logLevel,
    [BUNDLE_ENV]: opts.bundleFile,
    ...(opts.idleTimeoutMs !== undefined && { WS_IDLE_TIMEOUT_MS: String(opts.idleTimeoutMs) }),
  };
}
