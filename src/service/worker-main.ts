/**
 * `npm run worker`: the worker alone, against an existing Temporal cluster and existing
 * Redis/Postgres/RabbitMQ (production, docker-compose). Applies pending migrations first (they
 * only create what is absent, under a lock). Same shutdown as `npm start`.
 */
import { configFromEnvOrExit } from '../config';

const config = configFromEnvOrExit();

async function main(): Promise<void> {
  const [{ createLogger }, { installRuntime }, { runProcess }, { runWorkerService }, { createPgPool }, { migrate }] =
    await Promise.all([
      import('../logger'),
      import('./runtime'),
      import('./process'),
      import('./worker-service'),
      import('./resources'),
      import('../db/migrate'),
    ]);
  const logger = createLogger({ level: config.logLevel, pretty: config.localhost });

  runProcess(logger, async (life) => {
    const pool = createPgPool(config);
    try {
      const applied = await migrate(pool);
      if (applied.length > 0) logger.info('migrations applied', { applied });
    } finally {
      await pool.end();
    }
    life.signal.throwIfAborted();
    const { prometheusUrl } = installRuntime(config, logger);
    await runWorkerService(config, logger, life, prometheusUrl);
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`tether: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
