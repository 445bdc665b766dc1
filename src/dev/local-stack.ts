/**
 * What `npm start` brings up before the worker, shared with `npm run demo`: local Redis/Postgres/
 * RabbitMQ and the Temporal tools (scripts/), the Prometheus runtime, and a Temporal dev server with
 * its Web UI unless TEMPORAL_ADDRESS already answers or is another host. Whatever it starts is
 * stopped by the lifecycle's cleanups.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import type { NativeConnection } from '@temporalio/worker';
import type { Config } from '../config';
import type { Logger } from '../logger';
import { installRuntime } from '../service/runtime';
import { connectTemporal } from '../service/connect-temporal';
import { type Lifecycle } from '../service/process';
import { SEARCH_ATTRIBUTES } from '../contracts/search-attributes';
import { adoptDevServer, answers, isLocalHost, splitAddress, startDevServer } from './dev-server';
import { ensureEnvironment, type ToolPaths } from './environment';

const ROOT = path.resolve(__dirname, '../..');

export interface LocalStackOptions {
  /** Where the dev server keeps temporal.sqlite, its pid file and its log (default `.data`). */
  dataDir?: string;
  /** Start a dev server we start on an empty database (the demo: one run's sessions only). */
  freshDatabase?: boolean;
}

export interface LocalStack {
  tools: ToolPaths;
  prometheusUrl: string;
  /** The worker's connection when we waited for a dev server we started. */
  connection?: NativeConnection;
  /** The Web UI URL, when there is one here. */
  announce: Record<string, unknown>;
  webUi?: string;
  /** We started the dev server (so the search attributes are registered). */
  started: boolean;
}

export async function startLocalStack(
  config: Config,
  logger: Logger,
  life: Lifecycle,
  opts: LocalStackOptions = {},
): Promise<LocalStack> {
  logger.info('preparing local services and tools (first run installs them)');
  const tools = await ensureEnvironment(config);
  life.signal.throwIfAborted();
  const { prometheusUrl } = installRuntime(config, logger);

  const { address, namespace, uiPort } = config.temporal;
  const { host, port } = splitAddress(address);
  const announce: Record<string, unknown> = {};
  let connection: NativeConnection | undefined;
  let started = false;
  const dataDir = opts.dataDir ?? path.join(ROOT, '.data');
  const dbFile = path.join(dataDir, 'temporal.sqlite');
  const pidFile = path.join(dataDir, 'temporal.pid');

  if (!isLocalHost(host)) {
    logger.info(`using the Temporal cluster at ${address}`);
  } else if (await answers(host, port)) {
    const orphan = adoptDevServer(pidFile, dbFile);
    if (orphan) {
      logger.warn('a dev server left by an earlier run answers: using it, and stopping it on exit', {
        pid: orphan.pid,
      });
      life.defer('temporal dev server', () => orphan.stop());
      life.onForcedExit(() => orphan.kill());
    } else {
      logger.info(`Temporal already answers at ${address}: using it`);
    }
    if (await answers(host, uiPort)) announce.webUi = `http://${host}:${uiPort}`;
  } else {
    if (config.temporal.tls) {
      throw new Error(`TEMPORAL_TLS is on but nothing answers at ${address}; npm start runs only a plain dev server`);
    }
    const ip = '127.0.0.1';
    if (await answers(ip, uiPort)) throw new Error(`TEMPORAL_UI_PORT ${uiPort} is already in use`);
    if (opts.freshDatabase) for (const suffix of ['', '-wal', '-shm']) rmSync(dbFile + suffix, { force: true });
    if (tools.temporalCli) {
      const server = startDevServer({
        cli: tools.temporalCli,
        ip,
        port,
        uiPort,
        namespace,
        dbFile,
        logFile: path.join(dataDir, 'temporal-server.log'),
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
      connection = await connectTemporal(config, logger, life.signal, { serverExited });
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
  const webUi = typeof announce.webUi === 'string' ? announce.webUi : undefined;
  return { tools, prometheusUrl, connection, announce, webUi, started };
}
