/**
 * The Temporal engines a bench run can use, one at a time: the dev server as every scenario runs
 * on it (`dev`, in memory), on a database file with the default pragmas (`dev-file`, `npm start`
 * before 0.4), on a file with WAL as `npm start` runs it (`dev-wal`), with no fsync and the
 * throughput dynamic config (`dev-tuned`), and a production-shaped server on Postgres (`server`). `--engines` runs the ceiling scenario once on each (issue #16's
 * engine table), so that the cost of a history event is known for more than the dev server.
 * Every dev engine runs with npm start's dynamic config (DEV_DYNAMIC_CONFIG: eager activities,
 * since 0.5); the tuned ones add the throughput set below.
 */
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import type { Pool } from 'pg';
import { TemporalPostgresServer } from '../../harness/temporal-postgres-server';
import { NAMESPACE, TemporalDevServer, type DevServerTuning } from '../../harness/temporal-server';
import type { Config } from '../../src/config';
import { DEV_DYNAMIC_CONFIG, DEV_SQLITE_PRAGMAS } from '../../src/dev/dev-server';
import { ensureTemporalServer } from '../../src/dev/environment';

export const ENGINE_NAMES = ['dev', 'dev-file', 'dev-wal', 'dev-tuned', 'server'] as const;
export type EngineName = (typeof ENGINE_NAMES)[number];

/**
 * Dynamic config both tuned engines get (keys as in server 1.29.1's
 * common/dynamicconfig/constants.go). Only what a closed loop of small workflows on one host can
 * run into; the history cache (`history.hostLevelCacheMaxSize`, 128,000 entries) is far above
 * the ceiling's few hundred workflows in flight, so it stays as it is.
 */
export const THROUGHPUT_DYNAMIC_CONFIG: Record<string, unknown> = {
  // One partition per task queue instead of 4: with one worker's pollers spread over four
  // partitions, a task often lands where no poll waits and is forwarded or backlogged instead of
  // matched at once.
  'matching.numTaskqueueReadPartitions': 1,
  'matching.numTaskqueueWritePartitions': 1,
  // The per-host request limits and eager activities every dev server of tether runs with.
  ...DEV_DYNAMIC_CONFIG,
  // The dev server's own raised persistence limits (its CLI's defaults), for the server too.
  'frontend.persistenceMaxQPS': 10_000,
  'history.persistenceMaxQPS': 45_000,
};

// Only meaningful with a database file (an in-memory database has no journal to write ahead and
// nothing to sync), hence the file of dev-wal and dev-tuned. dev-wal is what npm start now runs.
const pragmaRecord = (list: string[]) => Object.fromEntries(list.map((p) => p.split('=') as [string, string]));

/** What the dev server's flags can change: SQLite pragmas, dynamic config. */
const DEV_WAL: DevServerTuning = { sqlitePragmas: pragmaRecord(DEV_SQLITE_PRAGMAS), dynamicConfig: {} };
const DEV_TUNING: DevServerTuning = {
  sqlitePragmas: { journal_mode: 'wal', synchronous: 'off' },
  dynamicConfig: THROUGHPUT_DYNAMIC_CONFIG,
};

const pragmas = (t: DevServerTuning) =>
  Object.entries(t.sqlitePragmas)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');

export interface EngineInfo {
  name: EngineName;
  /** Binary and how it is run. */
  server: string;
  persistence: string;
  /** Beyond the defaults (`--sqlite-pragma` apart, which `persistence` names). */
  dynamicConfig: Record<string, unknown>;
}

export const ENGINES: Record<EngineName, EngineInfo> = {
  dev: {
    name: 'dev',
    server: 'start-dev --headless (CLI v1.5.1)',
    persistence: 'SQLite in memory',
    dynamicConfig: { ...DEV_DYNAMIC_CONFIG },
  },
  'dev-file': {
    name: 'dev-file',
    server: 'start-dev --headless (CLI v1.5.1)',
    persistence: 'SQLite database file, default pragmas (npm start until 0.4)',
    dynamicConfig: { ...DEV_DYNAMIC_CONFIG },
  },
  'dev-wal': {
    name: 'dev-wal',
    server: 'start-dev --headless (CLI v1.5.1)',
    persistence: `SQLite database file, ${pragmas(DEV_WAL)} (npm start since 0.4)`,
    dynamicConfig: { ...DEV_DYNAMIC_CONFIG },
  },
  'dev-tuned': {
    name: 'dev-tuned',
    server: 'start-dev --headless (CLI v1.5.1)',
    persistence: `SQLite database file, ${pragmas(DEV_TUNING)}`,
    dynamicConfig: THROUGHPUT_DYNAMIC_CONFIG,
  },
  server: {
    name: 'server',
    server: 'server 1.29.1: 4 services in one process, 4 shards',
    persistence: 'Postgres on this machine (postgres12), SQL visibility',
    dynamicConfig: THROUGHPUT_DYNAMIC_CONFIG,
  },
};

/** A started engine and a client of it; `stop()` closes both. */
export interface Engine extends EngineInfo {
  address: string;
  /** The server process, for its CPU (/proc/<pid>/stat); every engine is one process. */
  pid: number | undefined;
  /** Processes doing its persistence apart from it (Postgres backends); none: SQLite in process. */
  persistencePids?: () => Promise<number[]>;
  connection: Connection;
  client: Client;
  stop(): Promise<void>;
}

/** Starts `name` with its files in `dir` and connects to it. */
export async function startEngine(name: EngineName, opts: { dir: string; config: Config; pg: Pool }): Promise<Engine> {
  const server = await createServer(name, opts);
  try {
    await server.start();
    const connection = await Connection.connect({ address: server.address });
    return {
      ...ENGINES[name],
      address: server.address,
      pid: server.pid,
      ...(server instanceof TemporalPostgresServer && { persistencePids: () => server.backendPids(opts.pg) }),
      connection,
      client: new Client({ connection, namespace: NAMESPACE }),
      async stop() {
        await connection.close().catch(() => undefined);
        await server.stop();
      },
    };
  } catch (err) {
    await server.stop().catch(() => undefined);
    throw err;
  }
}

async function createServer(
  name: EngineName,
  { dir, config }: { dir: string; config: Config },
): Promise<TemporalDevServer | TemporalPostgresServer> {
  switch (name) {
    case 'dev':
      return TemporalDevServer.create({ logFile: path.join(dir, 'temporal.log') });
    case 'dev-file':
      return TemporalDevServer.create({
        logFile: path.join(dir, 'temporal-dev-file.log'),
        dbFile: path.join(dir, 'temporal-dev-file.db'),
      });
    case 'dev-wal':
      return TemporalDevServer.create({
        logFile: path.join(dir, 'temporal-dev-wal.log'),
        dbFile: path.join(dir, 'temporal-dev-wal.db'),
        tuning: DEV_WAL,
      });
    case 'dev-tuned':
      return TemporalDevServer.create({
        logFile: path.join(dir, 'temporal-dev-tuned.log'),
        dbFile: path.join(dir, 'temporal-dev-tuned.db'),
        tuning: DEV_TUNING,
      });
    case 'server':
      return TemporalPostgresServer.create({
        buildDir: await ensureTemporalServer(),
        workDir: dir,
        postgres: { host: config.db.host, port: config.db.port, user: config.db.user, password: config.db.password },
        dynamicConfig: THROUGHPUT_DYNAMIC_CONFIG,
      });
  }
}
