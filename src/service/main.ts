/**
 * `npm start`: everything on this machine. Local Redis/Postgres/RabbitMQ and the Temporal tools
 * (scripts/), a Temporal dev server with its Web UI unless TEMPORAL_ADDRESS already answers or is
 * another host (src/dev/local-stack.ts), then the worker. Ctrl-C stops the worker gracefully, then
 * what this process started.
 */
import { configFromEnvOrExit } from '../config';

// Before anything slow: a bad variable fails in well under a second.
const config = configFromEnvOrExit();

async function main(): Promise<void> {
  const [{ createLogger }, { runProcess }, { runWorkerService }, { startLocalStack }] = await Promise.all([
    import('../logger'),
    import('./process'),
    import('./worker-service'),
    import('../dev/local-stack'),
  ]);
  const logger = createLogger({ level: config.logLevel, pretty: config.localhost || Boolean(process.stdout.isTTY) });

  runProcess(logger, async (life) => {
    const local = await startLocalStack(config, logger, life);
    await runWorkerService(config, logger, life, local.prometheusUrl, {
      connection: local.connection,
      announce: local.announce,
      searchAttributesKnown: local.started,
    });
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`tether: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
