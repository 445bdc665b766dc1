/**
 * The child side of a worker child process (harness/worker-child.ts is the parent's): connects to
 * Temporal as the real worker does (waiting out a server that is down or restarting), builds the
 * worker, says `ready` over IPC once it polls, answers `memory` requests, and drains on SIGTERM or
 * when the harness goes away. stdout carries the logger's JSON lines (chaos reads
 * `session destroyed` from them). Nothing here masks a crash: an uncaught error ends the process as
 * it would end the real worker, and the harness reports it.
 */
import { DefaultLogger, Runtime, type LogEntry, type NativeConnection, type Worker } from '@temporalio/worker';
import { loadConfig, type Config } from '../src/config';
import { createLogger, type Logger } from '../src/logger';
import { connectTemporal } from '../src/service/connect-temporal';
import { ThreadHeaps } from './worker-memory';
import { MEMORY_ENV, type FromChild, type ToChild } from './worker-protocol';

export type WorkerBuilder = (
  connection: NativeConnection,
  config: Config,
  logger: Logger,
) => Promise<{ worker: Worker; close?: () => Promise<void> }>;

const send = (msg: FromChild) => process.send?.(msg);

/** Runs the worker `build` makes until it is told to stop; `name` labels its fatal error on stderr. */
export function serveWorker(name: string, build: WorkerBuilder): void {
  run(build).then(
    () => process.exit(0),
    (err: unknown) => {
      send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
      process.stderr.write(`${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}

async function run(build: WorkerBuilder): Promise<void> {
  const config = loadConfig(process.env);
  const logger = createLogger({ level: config.logLevel });
  // The SDK's own info lines are chatter next to tether's; its warnings stay unless only errors are wanted.
  Runtime.install({
    logger: new DefaultLogger(config.logLevel === 'error' ? 'ERROR' : 'WARN', (entry: LogEntry) =>
      process.stderr.write(`[worker ${entry.level}] ${entry.message} ${JSON.stringify(entry.meta ?? {})}\n`),
    ),
  });
  const connection = await connectTemporal(config, logger, new AbortController().signal, { timeoutMs: 120_000 });
  const { worker, close } = await build(connection, config, logger);
  const heaps = process.env[MEMORY_ENV] ? new ThreadHeaps() : undefined;
  await heaps?.start();
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    worker.shutdown();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The harness went away: drain and exit rather than linger.
  process.on('disconnect', stop);
  process.on('message', (raw) => {
    const msg = raw as ToChild;
    if (msg.type === 'memory' && heaps)
      void heaps.measure().then((memory) => send({ type: 'memory', id: msg.id, memory }));
  });
  const running = worker.run();
  send({ type: 'ready' });
  try {
    await running;
  } finally {
    await close?.();
    await connection.close().catch(() => undefined);
  }
  if (!stopping) throw new Error('worker stopped on its own');
}
