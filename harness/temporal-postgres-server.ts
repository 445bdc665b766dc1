import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client, Connection, isGrpcServiceError } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import type { Pool } from 'pg';
import { SEARCH_ATTRIBUTES } from '../src/contracts/search-attributes';
import { freePort, freePortBelow } from './free-port';
import { sleep } from './sleep';
import { NAMESPACE } from './temporal-server';

const run = promisify(execFile);

/** gRPC ALREADY_EXISTS (grpc-js's `status` is no dependency of ours): a namespace or search attribute registered twice. */
const ALREADY_EXISTS: number = 6;

async function unlessPresent(call: Promise<unknown>): Promise<void> {
  try {
    await call;
  } catch (err) {
    const code: number | undefined = isGrpcServiceError(err) ? err.code : undefined;
    if (code !== ALREADY_EXISTS) throw err;
  }
}

/** Where the server's databases live: the machine's Postgres (scripts/setup.ts), as tether reaches it. */
export interface PostgresAccess {
  host: string;
  port: number;
  user: string;
  password: string;
}

/** The server's own databases, dropped and made anew at every start: each run begins empty. */
export const DATABASES = { main: 'temporal_bench', visibility: 'temporal_bench_visibility' } as const;

const SERVICES = ['frontend', 'history', 'matching', 'worker'] as const;
type Ports = Record<(typeof SERVICES)[number], { grpc: number; membership: number }>;

/**
 * A production-shaped Temporal server: the `server` binary (scripts/tools.sh --temporal-server)
 * with its four services in one process, 4 history shards, Postgres persistence and SQL
 * visibility, on private ports. Unlike the dev server it has no namespace or search attribute
 * until it is told over the API, as a real cluster is; `start()` does so. One at a time per
 * machine: its databases have fixed names.
 */
export class TemporalPostgresServer {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    /** The build's directory: bin/server, bin/temporal-sql-tool, schema/postgresql/v12. */
    readonly buildDir: string,
    /** Config, dynamic config and log are written here. */
    readonly workDir: string,
    readonly postgres: PostgresAccess,
    readonly ports: Ports,
    /** Dynamic config values (the file the server polls), on top of the server's defaults. */
    readonly dynamicConfig: Record<string, unknown>,
  ) {}

  static async create(opts: {
    buildDir: string;
    workDir: string;
    postgres: PostgresAccess;
    dynamicConfig: Record<string, unknown>;
  }): Promise<TemporalPostgresServer> {
    const taken = new Set<number>();
    const distinct = async (pick: () => Promise<number>) => {
      let p = await pick();
      while (taken.has(p)) p = await pick();
      taken.add(p);
      return p;
    };
    const ports = {} as Ports;
    for (const service of SERVICES)
      ports[service] = {
        grpc: await distinct(freePort),
        // cluster_membership.rpc_port is a smallint.
        membership: await distinct(() => freePortBelow(32_768)),
      };
    return new TemporalPostgresServer(opts.buildDir, opts.workDir, opts.postgres, ports, opts.dynamicConfig);
  }

  get address(): string {
    return `127.0.0.1:${this.ports.frontend.grpc}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /**
   * The Postgres backends serving its connection pools (its persistence's CPU is theirs, not the
   * server process's). `pg`: a pool with a role that sees every session (tether's is a superuser).
   */
  async backendPids(pg: Pool): Promise<number[]> {
    const { rows } = await pg.query<{ pid: number }>('select pid from pg_stat_activity where datname = any($1)', [
      Object.values(DATABASES),
    ]);
    return rows.map((r) => r.pid);
  }

  get logFile(): string {
    return path.join(this.workDir, 'temporal-server.log');
  }

  /**
   * Fresh databases with the versioned schema, the config files, the process; then the `default`
   * namespace and tether's search attributes; resolves once a workflow can be started.
   */
  async start(timeoutMs = 120_000): Promise<void> {
    await this.resetDatabases();
    const configDir = path.join(this.workDir, 'config');
    mkdirSync(configDir, { recursive: true });
    // JSON is YAML: no YAML writer needed. `development.yaml` is what `--env development` loads.
    writeFileSync(path.join(configDir, 'dynamicconfig.yaml'), JSON.stringify(this.dynamicConfigFile(), null, 2));
    writeFileSync(path.join(configDir, 'development.yaml'), JSON.stringify(this.config(configDir), null, 2));
    const log = openSync(this.logFile, 'a');
    const args = ['--root', this.workDir, '--config', 'config', '--env', 'development', '--allow-no-auth', 'start'];
    const child = spawn(path.join(this.buildDir, 'bin/server'), args, { stdio: ['ignore', log, log] });
    closeSync(log);
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const deadline = Date.now() + timeoutMs;
    const connection = await this.untilServing(deadline, () =>
      Connection.connect({ address: this.address, connectTimeout: 1000 }),
    );
    try {
      await this.untilServing(deadline, () => this.register(connection));
      const client = new Client({ connection, namespace: NAMESPACE });
      // A workflow started (and terminated) proves frontend, namespace, history shards and
      // persistence all answer; the frontend alone answers well before its history service.
      await this.untilServing(deadline, async () => {
        const probe = await client.workflow.start('readinessProbe', {
          taskQueue: 'readiness-probe',
          workflowId: `readiness-probe-${Date.now()}`,
        });
        await probe.terminate('readiness probe');
      });
    } finally {
      await connection.close();
    }
  }

  async stop(): Promise<void> {
    if (!this.child) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), 20_000);
    await this.exited;
    clearTimeout(timer);
    this.child = undefined;
  }

  /** The last lines of its log, each cut short: its JSON lines carry whole stack traces. */
  logTail(lines = 4): string {
    try {
      return readFileSync(this.logFile, 'utf8')
        .trimEnd()
        .split('\n')
        .slice(-lines)
        .map((line) => (line.length > 300 ? `${line.slice(0, 300)}…` : line))
        .join('\n');
    } catch {
      return '';
    }
  }

  /** The schema tool's steps, as a cluster's operator runs them (schema/postgresql/v12/*). */
  private async resetDatabases(): Promise<void> {
    const schema = path.join(this.buildDir, 'schema/postgresql/v12');
    for (const [db, dir] of [
      [DATABASES.main, 'temporal'],
      [DATABASES.visibility, 'visibility'],
    ] as const) {
      // --quiet: a database that is not there yet is not an error.
      await this.sqlTool(db, ['--quiet', 'drop-database', '--force']);
      await this.sqlTool(db, ['create-database']);
      await this.sqlTool(db, ['setup-schema', '--version', '0.0']);
      await this.sqlTool(db, ['update-schema', '--schema-dir', path.join(schema, dir, 'versioned')]);
    }
  }

  /** The password goes through the environment, not the command line other users can read. */
  private async sqlTool(database: string, args: string[]): Promise<void> {
    await run(path.join(this.buildDir, 'bin/temporal-sql-tool'), args, {
      env: {
        ...process.env,
        SQL_PLUGIN: 'postgres12',
        SQL_HOST: this.postgres.host,
        SQL_PORT: String(this.postgres.port),
        SQL_USER: this.postgres.user,
        SQL_PASSWORD: this.postgres.password,
        SQL_DATABASE: database,
      },
    });
  }

  /** `default` (1 day retention) and tether's search attributes; both may be there from an earlier try. */
  private async register(connection: Connection): Promise<void> {
    await unlessPresent(
      connection.workflowService.registerNamespace({
        namespace: NAMESPACE,
        workflowExecutionRetentionPeriod: msToTs('1 day'),
      }),
    );
    await unlessPresent(
      connection.operatorService.addSearchAttributes({
        namespace: NAMESPACE,
        searchAttributes: Object.fromEntries(
          SEARCH_ATTRIBUTES.map((key) => [
            key.name,
            temporal.api.enums.v1.IndexedValueType[`INDEXED_VALUE_TYPE_${key.type}`],
          ]),
        ),
      }),
    );
  }

  /** Retries `attempt` until it succeeds, the deadline passes or the process exits. */
  private async untilServing<T>(deadline: number, attempt: () => Promise<T>): Promise<T> {
    let last: unknown;
    while (Date.now() < deadline) {
      if (this.child?.exitCode !== null && this.child?.exitCode !== undefined)
        throw new Error(`temporal server exited (${this.child.exitCode}): ${this.logTail()}`);
      try {
        return await attempt();
      } catch (err) {
        last = err;
      }
      await sleep(500);
    }
    throw new Error(`temporal server not serving on ${this.address}: ${String(last)}\n${this.logTail()}`);
  }

  private config(configDir: string) {
    const sql = (databaseName: string, maxConns: number) => ({
      sql: {
        pluginName: 'postgres12',
        databaseName,
        connectAddr: `${this.postgres.host}:${this.postgres.port}`,
        connectProtocol: 'tcp',
        user: this.postgres.user,
        password: this.postgres.password,
        // Four services, a pool each, on a Postgres others use too (max_connections 100).
        maxConns,
        maxIdleConns: maxConns,
        maxConnLifetime: '1h',
      },
    });
    const disabled = { history: { state: 'disabled' }, visibility: { state: 'disabled' } };
    return {
      log: { stdout: true, level: 'warn' },
      persistence: {
        defaultStore: 'postgres-default',
        visibilityStore: 'postgres-visibility',
        numHistoryShards: 4,
        datastores: {
          'postgres-default': sql(DATABASES.main, 10),
          'postgres-visibility': sql(DATABASES.visibility, 2),
        },
      },
      global: { membership: { maxJoinDuration: '30s', broadcastAddress: '127.0.0.1' } },
      services: Object.fromEntries(
        SERVICES.map((s) => [
          s,
          { rpc: { grpcPort: this.ports[s].grpc, membershipPort: this.ports[s].membership, bindOnIP: '127.0.0.1' } },
        ]),
      ),
      clusterMetadata: {
        enableGlobalNamespace: false,
        failoverVersionIncrement: 10,
        masterClusterName: 'active',
        currentClusterName: 'active',
        clusterInformation: {
          active: { enabled: true, initialFailoverVersion: 1, rpcName: 'frontend', rpcAddress: this.address },
        },
      },
      dcRedirectionPolicy: { policy: 'noop' },
      archival: disabled,
      namespaceDefaults: { archival: disabled },
      publicClient: { hostPort: this.address },
      dynamicConfigClient: { filepath: path.join(configDir, 'dynamicconfig.yaml'), pollInterval: '10s' },
    };
  }

  /** The file format: each key a list of values with (here no) constraints. */
  private dynamicConfigFile() {
    return Object.fromEntries(Object.entries(this.dynamicConfig).map(([k, value]) => [k, [{ value }]]));
  }
}
