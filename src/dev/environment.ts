import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Config } from '../config';
import { createPgPool } from '../service/resources';
import { migrate } from '../db/migrate';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');

export interface ToolPaths {
  /** Temporal CLI (dev server); undefined: let the SDK download it (needs internet). */
  temporalCli?: string;
  /** Time-skipping test server wrapper; undefined: let the SDK download it. */
  testServer?: string;
  /**
   * Temporal server build (bin/server, bin/temporal-sql-tool, schema/) for the bench's `server`
   * engine: there once `ensureTemporalServer()` has built it, never built by setup.
   */
  temporalServerDir?: string;
}

async function script(args: string[]): Promise<void> {
  const child = run('bash', args, { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
  child.child.stderr?.pipe(process.stderr);
  await child;
}

/** Installs/starts what is missing; reads the written tool paths back. */
export async function ensureEnvironment(config: Config, opts: { browser?: boolean } = {}): Promise<ToolPaths> {
  const { db, redis } = config;
  const amqp = new URL(config.rabbitmq.url);
  await Promise.all([
    script(['scripts/tools.sh']),
    ...(opts.browser ? [script(['scripts/browser.sh'])] : []),
    script(['scripts/services.sh', 'redis', redis.host, String(redis.port)]),
    script(['scripts/services.sh', 'postgres', db.host, String(db.port), db.user, db.password, db.name]),
    script(['scripts/services.sh', 'rabbitmq', amqp.hostname, amqp.port || '5672']),
  ]);
  const pool = createPgPool(config);
  try {
    await migrate(pool);
  } finally {
    await pool.end();
  }
  return readToolPaths();
}

/**
 * Builds the Temporal server and its SQL tool when missing (`scripts/tools.sh --temporal-server`:
 * cached, several minutes the first time only) and returns their directory.
 */
export async function ensureTemporalServer(): Promise<string> {
  await script(['scripts/tools.sh', '--temporal-server']);
  const { temporalServerDir } = readToolPaths();
  if (!temporalServerDir) throw new Error('scripts/tools.sh --temporal-server recorded no server');
  return temporalServerDir;
}

/** Tool paths written by scripts/tools.sh; an explicit environment override wins. */
export function readToolPaths(file = path.join(ROOT, '.tools.env')): ToolPaths {
  const vars: Record<string, string> = {};
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) vars[line.slice(0, i)] = line.slice(i + 1).trim();
    }
  } catch {
    return {};
  }
  return {
    temporalCli: vars.TEMPORAL_CLI_PATH || undefined,
    testServer: vars.TEMPORAL_TEST_SERVER_PATH || undefined,
    temporalServerDir: vars.TEMPORAL_SERVER_DIR || undefined,
  };
}
