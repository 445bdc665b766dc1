import { Client } from '@temporalio/client';
import { NativeConnection, Worker, type WorkflowBundleOption } from '@temporalio/worker';
import { createActivities } from './activities';
import { instrument } from './activities/instrument';
import type { Config } from './config';
import type { Logger } from './logger';
import type { Resources } from './resources';
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
    // Session workflows are long-lived and mostly idle: cache enough to avoid replays under load.
    maxCachedWorkflows: 2000,
    shutdownGraceTime: '10s',
  });
}

/** The worker's connection, with the options the CLI uses too (src/temporal-connection.ts). */
export async function connectWorker(config: Config): Promise<NativeConnection> {
  const { connection } = await temporalConnectionOptions(config);
  return NativeConnection.connect(connection);
}
