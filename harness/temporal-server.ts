import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import { DEV_DYNAMIC_CONFIG, dynamicConfigArgs } from '../src/dev/dev-server';
import { readToolPaths } from '../src/dev/environment';
import { cliSearchAttributes, SEARCH_ATTRIBUTES } from '../src/contracts/search-attributes';
import { freePort } from './free-port';
import { sleep } from './sleep';

export const NAMESPACE = 'default';

/**
 * The dev server's own knobs beyond the defaults: SQLite pragmas (`--sqlite-pragma`, which only
 * change anything with a database file) and dynamic config values (`--dynamic-config-value`).
 */
export interface DevServerTuning {
  sqlitePragmas: Record<string, string>;
  dynamicConfig: Record<string, unknown>;
}

/**
 * A run's own Temporal dev server: a child process (the cached Temporal CLI) on a private port,
 * with tether's search attributes. With a database file it can be SIGKILLed and started again on
 * the same file and port (chaos); without one its state lives in memory (bench). It runs with
 * `npm start`'s dynamic config (DEV_DYNAMIC_CONFIG); a tuning, for the bench's engine comparison,
 * adds to it.
 */
export class TemporalDevServer {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  starts = 0;

  constructor(
    readonly cli: string,
    readonly port: number,
    readonly logFile: string,
    readonly dbFile?: string,
    readonly tuning?: DevServerTuning,
  ) {}

  /** A server on a free port, with the CLI scripts/tools.sh put in place. */
  static async create(opts: {
    logFile: string;
    dbFile?: string;
    tuning?: DevServerTuning;
  }): Promise<TemporalDevServer> {
    const { temporalCli } = readToolPaths();
    if (!temporalCli) throw new Error('no Temporal CLI: run `npm run setup` (scripts/tools.sh) first');
    return new TemporalDevServer(temporalCli, await freePort(), opts.logFile, opts.dbFile, opts.tuning);
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  args(): string[] {
    return [
      'server',
      'start-dev',
      '--ip',
      '127.0.0.1',
      '--port',
      String(this.port),
      '--headless',
      ...(this.dbFile ? ['--db-filename', this.dbFile] : []),
      ...Object.entries(this.tuning?.sqlitePragmas ?? {}).flatMap(([k, v]) => ['--sqlite-pragma', `${k}=${v}`]),
      ...dynamicConfigArgs({ ...DEV_DYNAMIC_CONFIG, ...this.tuning?.dynamicConfig }),
      ...cliSearchAttributes(SEARCH_ATTRIBUTES).flatMap(({ name, type }) => ['--search-attribute', `${name}=${type}`]),
      '--log-level',
      'error',
      '--disable-config-env',
      '--disable-config-file',
    ];
  }

  /** Starts the server and resolves once the default namespace answers. */
  async start(timeoutMs = 60_000): Promise<void> {
    const log = openSync(this.logFile, 'a');
    const child = spawn(this.cli, this.args(), { stdio: ['ignore', log, log] });
    closeSync(log);
    this.child = child;
    this.starts++;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    await this.waitReady(timeoutMs);
  }

  /** A client of the server; closing its connection is the caller's. */
  async connectClient(): Promise<{ connection: Connection; client: Client }> {
    const connection = await Connection.connect({ address: this.address });
    return { connection, client: new Client({ connection, namespace: NAMESPACE }) };
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      if (this.child?.exitCode !== null && this.child?.exitCode !== undefined) {
        throw new Error(`temporal dev server exited (${this.child.exitCode}): ${this.logTail()}`);
      }
      let connection: Connection | undefined;
      try {
        connection = await Connection.connect({ address: this.address, connectTimeout: 1000 });
        await connection.withDeadline(Date.now() + 2000, () =>
          connection!.workflowService.describeNamespace({ namespace: NAMESPACE }),
        );
        return;
      } catch (err) {
        last = err;
      } finally {
        await connection?.close().catch(() => undefined);
      }
      await sleep(200);
    }
    throw new Error(`temporal dev server not ready on ${this.address}: ${String(last)}\n${this.logTail()}`);
  }

  /** SIGKILL: no chance to flush anything beyond what SQLite already committed. */
  async kill(): Promise<void> {
    this.child?.kill('SIGKILL');
    await this.exited;
    this.child = undefined;
  }

  async stop(): Promise<void> {
    if (!this.child) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
    this.child = undefined;
  }

  /** Synchronous last resort for process exit. */
  killSync(): void {
    try {
      this.child?.kill('SIGKILL');
    } catch {
      // gone
    }
  }

  logTail(lines = 15): string {
    try {
      return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }
}
