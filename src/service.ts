import type { Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@temporalio/client';
import type { NativeConnection } from '@temporalio/worker';
import type { Config } from './config';
import { startHealthServer } from './health-server';
import type { Logger } from './logger';
import { openResources } from './resources';
import { ensureSweepSchedule } from './sweep-schedule';
import { connectWorker, createWorker } from './worker';
import { workerWorkflowBundle } from './workflow-bundle';
import { SEARCH_ATTRIBUTES, cliSearchAttributes } from './contracts/search-attributes';

/** What a service body gets from {@link runProcess}. */
export interface Lifecycle {
  /** Aborted by the first SIGINT/SIGTERM/SIGHUP: the body winds down and returns. */
  signal: AbortSignal;
  /** Cleanup, run in reverse order of registration once the body has returned (or thrown). */
  defer(label: string, fn: () => unknown): void;
  /** Synchronous last resort when the process exits without cleanup (second signal, crash). */
  onForcedExit(fn: () => void): void;
  /** Shut down as on a signal, but exit 1 with this error (a child we depend on died). */
  fail(err: Error): void;
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
/**
 * One Ctrl-C arrives more than once: the terminal signals the whole process group and npm and tsx
 * forward theirs too. Repeats this close to the first are that echo, not a second request.
 */
const DUPLICATE_SIGNAL_MS = 500;

/**
 * Runs `body` as this process's service. First signal: abort, let the body return, run the
 * cleanups, exit 0. Second signal: run the forced-exit hooks and exit 1 at once. A body that fails
 * (other than by being aborted) is logged, cleaned up, and exits 1.
 */
export function runProcess(logger: Logger, body: (life: Lifecycle) => Promise<void>): void {
  const controller = new AbortController();
  let failure: Error | undefined;
  const cleanups: { label: string; fn: () => unknown }[] = [];
  const forced: (() => void)[] = [];
  const runForced = () => {
    for (const fn of forced.splice(0).reverse()) {
      try {
        fn();
      } catch {
        // exiting anyway
      }
    }
  };
  let firstSignalAt = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (firstSignalAt > 0 && Date.now() - firstSignalAt < DUPLICATE_SIGNAL_MS) return;
    if (controller.signal.aborted) {
      logger.warn(`${sig} again: exiting without cleanup`);
      runForced();
      process.exit(1);
    }
    firstSignalAt = Date.now();
    logger.info(`${sig}: shutting down (send it again to force)`);
    controller.abort(new Error(`stopped by ${sig}`));
  };
  for (const sig of SIGNALS) process.on(sig, onSignal);
  // Whatever ends the process (a crash included), children started with onForcedExit go with it.
  process.on('exit', runForced);

  const life: Lifecycle = {
    signal: controller.signal,
    defer: (label, fn) => cleanups.push({ label, fn }),
    onForcedExit: (fn) => forced.push(fn),
    fail: (err) => {
      if (controller.signal.aborted) return;
      failure = err;
      logger.error(err.message);
      logger.info('shutting down');
      controller.abort(err);
    },
  };

  void (async () => {
    let code = 0;
    try {
      await body(life);
    } catch (err) {
      if (controller.signal.aborted) {
        if (!failure) logger.info('stopped during start-up');
      } else {
        logger.error(err instanceof Error ? err.message : String(err));
        if (err instanceof Error) logger.debug('stack', { stack: err.stack });
        code = 1;
      }
    }
    for (const { label, fn } of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        logger.warn(`cleanup failed: ${label}`, { error: err instanceof Error ? err.message : String(err) });
      }
    }
    if (failure) code = 1;
    logger.info('stopped', { exitCode: code });
    process.exit(code);
  })();
}

function errorCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

const GRPC_NOT_FOUND = 5;
const GRPC_UNAVAILABLE = 14;

export interface ConnectOptions {
  /** Give up after this long (default 60 s). */
  timeoutMs?: number;
  /** Rejects when the server we started died: no point waiting for it. */
  serverExited?: Promise<string>;
}

/**
 * Connects the worker's connection once the server answers and the namespace exists (a dev server
 * registers it a moment after it opens its port). Retries until the timeout or an abort.
 */
export async function connectTemporal(
  config: Config,
  logger: Logger,
  signal: AbortSignal,
  opts: ConnectOptions = {},
): Promise<NativeConnection> {
  const { address, namespace } = config.temporal;
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  let died: string | undefined;
  void opts.serverExited?.then((why) => (died = why));
  const started = Date.now();
  let lastError: unknown;
  let warned = false;
  for (;;) {
    signal.throwIfAborted();
    if (died !== undefined) throw new Error(died);
    let connection: NativeConnection | undefined;
    try {
      connection = await connectWorker(config);
      await connection.workflowService.describeNamespace({ namespace });
      return connection;
    } catch (err) {
      const code = errorCode(err);
      if (connection && code !== GRPC_NOT_FOUND && code !== GRPC_UNAVAILABLE) {
        // Connected, but not allowed to describe the namespace (some hosted setups): carry on.
        logger.debug('cannot describe the namespace; continuing', { namespace, err });
        return connection;
      }
      await connection?.close().catch(() => undefined);
      lastError = err;
    }
    if (Date.now() > deadline) {
      const reason = lastError instanceof Error ? lastError.message : String(lastError);
      throw new Error(`Temporal at ${address} (namespace ${namespace}) did not answer: ${reason}`);
    }
    if (!warned && Date.now() - started > 5_000) {
      logger.warn(`waiting for Temporal at ${address} (namespace ${namespace})`);
      warned = true;
    }
    await sleep(500, undefined, { signal }).catch(() => undefined);
  }
}

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
 * `installRuntime` (src/runtime.ts). Returns once the worker has drained; cleanups are deferred to `life`.
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
