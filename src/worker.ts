import { Client } from '@temporalio/client';
import { NativeConnection, Worker, type WorkflowBundleOption } from '@temporalio/worker';
import { createActivities } from './activities';
import { instrument } from './activities/instrument';
import type { Config } from './config';
import type { Logger } from './logger';
import type { Resources } from './service/resources';
import { temporalConnectionOptions } from './temporal-connection';

export interface CreateWorkerOptions {
  connection: NativeConnection;
  config: Config;
  resources: Pick<Resources, 'redis' | 'pg' | 'amqp'>;
  logger: Logger;
  namespace?: string;
  taskQueue?: string;
  /** Pre-bundled workflow code, or the path of a bundle file (tests bundle once and reuse); default: bundle from source. */
  workflowBundle?: WorkflowBundleOption;
  /** Client the activities signal user workflows and describe sessions with; default: one on `connection`. */
  temporal?: Client;
}

/**
 * Workflows kept in the worker's cache. It bounds the worker's memory: a cached session costs about
 * 0.17 MiB of V8 heap (0.26 MiB RSS) (bench `steady`), so 1000 ≈ 250 MiB over the idle worker,
 * flat whatever the open-session count. A connected session needs a workflow task only every
 * heartbeat forward interval (15 min at 30 s idle): its markers come from the gateway lease, so
 * keeping idle sessions cached buys nothing; an evicted one replays its short history (≤ ~30
 * events) at its next task. 1000 still holds the churn working set (sessions between connect and
 * hard destroy at the bench's rates) several times over.
 */
export const MAX_CACHED_WORKFLOWS = 1000;

/**
 * Effects wait on Redis, Postgres or RabbitMQ, so activity slots are I/O-bound: at the SDK's
 * defaults, a few slow effects held every slot, and the gateway workflows' renewals (which keep
 * every marker alive) queued behind them (bench `capacity`, `gateway-lost`). Room for more waiting
 * effects; the CPU work of each is small. (Local-activity slots serve runs started by 0.2.)
 */
export const WORKER_CONCURRENCY = {
  maxCachedWorkflows: MAX_CACHED_WORKFLOWS,
  maxConcurrentWorkflowTaskExecutions: 200,
  maxConcurrentActivityTaskExecutions: 200,
  maxConcurrentLocalActivityExecutions: 200,
} as const;

/** A ready worker for the session task queue; the caller runs and shuts it down. */
export async function createWorker(options: CreateWorkerOptions): Promise<Worker> {
  const { connection, config, resources, logger } = options;
  const namespace = options.namespace ?? config.temporal.namespace;
  const taskQueue = options.taskQueue ?? config.temporal.taskQueue;
  const temporal = options.temporal ?? new Client({ connection, namespace });
  return Worker.create({
    connection,
    namespace,
    taskQueue,
    ...(options.workflowBundle
      ? { workflowBundle: options.workflowBundle }
      : { workflowsPath: require.resolve('./workflows') }),
    activities: instrument(createActivities({ ...resources, config, logger, temporal, taskQueue })),
    ...WORKER_CONCURRENCY,
    shutdownGraceTime: '10s',
  });
}

/** The worker's connection, with the options the CLI uses too (src/temporal-connection.ts). */
export async function connectWorker(config: Config): Promise<NativeConnection> {
  const { connection } = await temporalConnectionOptions(config);
  return NativeConnection.connect(connection);
}
