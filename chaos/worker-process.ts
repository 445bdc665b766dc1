/**
 * The worker as a child process of the chaos harness, so that it can be SIGKILLed and started again.
 * Configured like the real one (loadConfig(process.env)); the harness passes TEMPORAL_ADDRESS,
 * TEMPORAL_TASK_QUEUE, WS_IDLE_TIMEOUT_MS and CHAOS_WORKFLOW_BUNDLE (a workflow bundle it built
 * once, so a restart takes a second instead of a webpack run).
 *
 * stdout: the logger's JSON lines (the harness reads `session destroyed` and friends from them)
 * plus one `{"msg":"chaos-worker-ready"}` line once the worker polls. Nothing here masks a crash:
 * an uncaught error ends the process as it would end the real worker, and the harness reports it.
 */
import { readFileSync } from 'node:fs';
import { DefaultLogger, Runtime, type LogEntry } from '@temporalio/worker';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/logger';
import { openResources } from '../src/resources';
import { connectTemporal } from '../src/service';
import { createWorker } from '../src/worker';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = createLogger({ level: config.logLevel });
  Runtime.install({
    logger: new DefaultLogger('WARN', (entry: LogEntry) =>
      process.stderr.write(`[worker ${entry.level}] ${entry.message} ${JSON.stringify(entry.meta ?? {})}\n`),
    ),
  });
  const aborter = new AbortController();
  const connection = await connectTemporal(config, logger, aborter.signal, { timeoutMs: 120_000 });
  const resources = openResources(config, logger);
  const bundlePath = process.env.CHAOS_WORKFLOW_BUNDLE;
  const worker = await createWorker({
    connection,
    config,
    resources,
    logger,
    workflowBundle: bundlePath ? { code: readFileSync(bundlePath, 'utf8') } : undefined,
  });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    worker.shutdown();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const running = worker.run();
  process.stdout.write(`${JSON.stringify({ msg: 'chaos-worker-ready', pid: process.pid })}\n`);
  try {
    await running;
  } finally {
    await resources.close();
    await connection.close().catch(() => undefined);
  }
  if (!stopping) throw new Error('worker stopped on its own');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`chaos worker failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
