/**
 * `npm start`: everything on this machine. Local Redis/Postgres/RabbitMQ and the Temporal tools
 * (scripts/), a Temporal dev server with its Web UI unless TEMPORAL_ADDRESS already answers or is
 * another host, then the worker. Ctrl-C stops the worker gracefully, then what this process started.
 */
import path from 'node:path';
import { configFromEnvOrExit } from './config';

// Before anything slow: a bad variable fails in well under a second.
const config = configFromEnvOrExit();
const ROOT = path.resolve(__dirname, '..');

async function main(): Promise<void> {
  const [{ createLogger }, { installRuntime }, service, dev, { ensureEnvironment }, { SEARCH_ATTRIBUTES }] =
    await Promise.all([
      import('./logger'),
      import('./runtime'),
      import('./service'),
      import('./dev/dev-server'),
      import('./dev/environment'),
      import('./workflows/search-attributes'),
    ]);
  const logger = createLogger({ level: config.logLevel, pretty: config.localhost || Boolean(process.stdout.isTTY) });

  service.runProcess(logger, async (life) => {
    logger.info('preparing local services and tools (first run installs them)');
    const tools = await ensureEnvironment(config);
    life.signal.throwIfAborted();
    const { prometheusUrl } = installRuntime(config, logger);

    const { address, namespace, uiPort } = config.temporal;
    const { host, port } = dev.splitAddress(address);
    const announce: Record<string, unknown> = {};
    let connection: Awaited<ReturnType<typeof service.connectTemporal>> | undefined;
    let started = false;
    const dbFile = path.join(ROOT, '.data', 'temporal.sqlite');
    const pidFile = path.join(ROOT, '.data', 'temporal.pid');

    if (!dev.isLocalHost(host)) {
      logger.info(`using the Temporal cluster at ${address}`);
    } else if (await dev.answers(host, port)) {
      const orphan = dev.adoptDevServer(pidFile, dbFile);
      if (orphan) {
        logger.warn('a dev server left by an earlier npm start answers: using it, and stopping it on exit', {
          pid: orphan.pid,
        });
        life.defer('temporal dev server', () => orphan.stop());
        life.onForcedExit(() => orphan.kill());
      } else {
        logger.info(`Temporal already answers at ${address}: using it`);
      }
      if (await dev.answers(host, uiPort)) announce.webUi = `http://${host}:${uiPort}`;
    } else {
      if (config.temporal.tls) {
        throw new Error(`TEMPORAL_TLS is on but nothing answers at ${address}; npm start runs only a plain dev server`);
      }
      const ip = '127.0.0.1';
      if (await dev.answers(ip, uiPort)) throw new Error(`TEMPORAL_UI_PORT ${uiPort} is already in use`);
      if (tools.temporalCli) {
        const server = dev.startDevServer({
          cli: tools.temporalCli,
          ip,
          port,
          uiPort,
          namespace,
          dbFile,
          logFile: path.join(ROOT, '.data', 'temporal-server.log'),
          pidFile,
          searchAttributes: SEARCH_ATTRIBUTES,
        });
        life.defer('temporal dev server', () => server.stop());
        life.onForcedExit(() => server.kill());
        logger.info('starting the Temporal dev server', { pid: server.pid, db: dbFile, log: server.logFile });
        const serverExited = server.exited.then(
          (code) => `the Temporal dev server exited (${code}); ${server.logFile}:\n${server.logTail()}`,
        );
        void serverExited.then((why) => life.fail(new Error(why)));
        connection = await service.connectTemporal(config, logger, life.signal, { serverExited });
        announce.webUi = server.uiUrl;
      } else {
        // No CLI from scripts/tools.sh (no Go here): the SDK downloads the dev server (needs internet).
        logger.warn('no Temporal CLI from scripts/tools.sh: downloading the dev server through the SDK');
        const { TestWorkflowEnvironment } = await import('@temporalio/testing');
        const env = await TestWorkflowEnvironment.createLocal({
          server: { ip, port, uiPort, namespace, dbFilename: dbFile, searchAttributes: [...SEARCH_ATTRIBUTES] },
        });
        life.defer('temporal dev server', () => env.teardown());
        announce.webUi = `http://${ip}:${uiPort}`;
      }
      started = true;
      logger.info(`Temporal Web UI: ${String(announce.webUi)}`);
    }

    await service.runWorkerService(config, logger, life, prometheusUrl, {
      connection,
      announce,
      searchAttributesKnown: started,
    });
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`tether: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
