import type { Server } from 'node:http';
import { Client } from '@temporalio/client';
import type { NativeConnection } from '@temporalio/worker';
import type { Config } from '../config';
import { startHealthServer } from './health-server';
import type { Logger } from '../logger';
import { openResources } from './resources';
import { ensureSweepSchedule } from './sweep-schedule';
import { createWorker } from '../worker';
import { connectTemporal } from './connect-temporal';
import type { Lifecycle } from './process';
import { workerWorkflowBundle } from '../workflow-bundle';
import { SEARCH_ATTRIBUTES, cliSearchAttributes } from '../contracts/search-attributes';

/** Warns with the commands to run when the server lacks our search attributes. */
async function checkSearchAttributes(connection: NativeConnection, config: Config, logger: Logger): Promise<void> {
  const { namespace, address } = config.temporal;
  try {
    const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
    const missing = SEARCH_ATTRIBUTES.filter((key) => !(customAttributes && key.name in customAttributes));
    if (missing.length === 0) return;
    logger.warn('search attributes missing on the server: sessions will fail to start until they are created', {
      missing: missing.map((k) => k.name),
      fix: cliSearchAttributes(missing)
        .map(
          ({ name, type }) =>
            `temporal operator search-attribute create --address ${address} --namespace ${namespace} --name ${name} --type ${type}`,
        )
        .join(' && '),
    });
  } catch (err) {
    logger.debug('could not list search attributes', { err });
  }
}

/** webpack's statistics are a screenful at info level: debug here; warnings and errors stay. */
function bundlerLogger(logger: Logger) {
  const debug = (message: string, meta?: Record<string, unknown>) => logger.debug(message, meta);
  return {
    log: (level: string, message: string, meta?: Record<string, unknown>) =>
      level === 'WARN'
        ? logger.warn(message, meta)
        : level === 'ERROR'
          ? logger.error(message, meta)
          : debug(message, meta),
    trace: debug,
    debug,
    info: debug,
    warn: (message: string, meta?: Record<string, unknown>) => logger.warn(message, meta),
    error: (message: string, meta?: Record<string, unknown>) => logger.error(message, meta),
  };
}

export interface WorkerServiceOptions {
  /** A connection already made (e.g. while waiting for a dev server); otherwise one is made. */
  connection?: NativeConnection;
  /** Extra fields for the "worker running" line (e.g. the Web UI URL). */
  announce?: Record<string, unknown>;
  /** Skip the search-attribute check (we registered them ourselves). */
  searchAttributesKnown?: boolean;
}

/**
 * The worker with its resources and health server, until the lifecycle aborts. Call after
 * `installRuntime` (./runtime.ts). Returns once the worker has drained; cleanups are deferred to `life`.
 */
export async function runWorkerService(
  config: Config,
  logger: Logger,
  life: Lifecycle,
  prometheusUrl: string,
  opts: WorkerServiceOptions = {},
): Promise<void> {
  const connection = opts.connection ?? (await connectTemporal(config, logger, life.signal));
  life.defer('temporal connection', () => connection.close());
  if (!opts.searchAttributesKnown) await checkSearchAttributes(connection, config, logger);
  life.signal.throwIfAborted();

  const resources = openResources(config, logger);
  life.defer('resources', () => resources.close());
  // Compiled (npm run worker, the image): the bundle npm run build made; from the sources: bundled now.
  const { bundle: workflowBundle, prebuilt } = await workerWorkflowBundle(bundlerLogger(logger));
  logger.debug(prebuilt ? 'workflow bundle: prebuilt' : 'workflow bundle: built from the sources', {
    ...('codePath' in workflowBundle ? { codePath: workflowBundle.codePath } : {}),
  });
  life.signal.throwIfAborted();
  const temporal = new Client({ connection, namespace: config.temporal.namespace });
  const worker = await createWorker({ connection, config, resources, logger, workflowBundle, temporal });
  life.signal.throwIfAborted();
  const sweep = await ensureSweepSchedule(temporal, config);
  logger.info(sweep.created ? 'sweep schedule created' : 'sweep schedule up to date', {
    scheduleId: sweep.scheduleId,
    everyMinutes: config.cronScheduleMins,
  });
  life.signal.throwIfAborted();

  const health: Server = await startHealthServer({ port: config.metricsPort, worker, resources, prometheusUrl });
  life.defer(
    'health server',
    () =>
      new Promise<void>((resolve) => {
        health.close(() => resolve());
        health.closeAllConnections();
      }),
  );

  const running = worker.run();
  const stop = () => {
    const state = worker.getState();
    if (state === 'RUNNING') worker.shutdown();
    else if (state === 'INITIALIZED') setTimeout(stop, 50);
  };
  if (life.signal.aborted) stop();
  else life.signal.addEventListener('abort', stop, { once: true });

  logger.info('worker running', {
    temporal: config.temporal.address,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    health: `http://127.0.0.1:${config.metricsPort}/readyz`,
    ...opts.announce,
  });
  await running;
  logger.info('worker stopped');
}
