import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { cliSearchAttributes, type AttributeKey } from '../contracts/search-attributes';

/**
 * The Temporal dev server (`temporal server start-dev`: SQLite persistence, embedded Web UI) that
 * `npm start` runs when nothing answers at a local TEMPORAL_ADDRESS.
 */

const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '0.0.0.0', '::1']);

export function isLocalHost(host: string): boolean {
  return LOCAL_HOSTS.has(host.toLowerCase());
}

export function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

/** True when something accepts a TCP connection at host:port within the timeout. */
export function answers(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export interface DevServerOptions {
  /** The Temporal CLI binary. */
  cli: string;
  ip: string;
  port: number;
  uiPort: number;
  /** Namespace to create besides `default`. */
  namespace: string;
  dbFile: string;
  /** Server output goes here, not to the console. */
  logFile: string;
  /** Holds the server's pid while it runs, so that a later start can adopt a server left behind. */
  pidFile: string;
  searchAttributes: readonly AttributeKey[];
}

export interface DevServer {
  pid: number;
  uiUrl: string;
  logFile: string;
  /** Resolves with the exit code (or signal name) when the process ends, for whatever reason. */
  exited: Promise<number | string>;
  /** SIGTERM, then SIGKILL after the grace period; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
  /** Synchronous last resort (forced exit): SIGKILL. */
  kill(): void;
  /** The last lines of its log, for error messages. */
  logTail(lines?: number): string;
}

/** The SQLite settings of `npm start`'s dev server (its database file). */
export const DEV_SQLITE_PRAGMAS = ['journal_mode=wal', 'synchronous=normal'];

/**
 * Dynamic config of every dev server tether runs (npm start, tests, bench, chaos).
 *
 * Eager activity execution: an activity scheduled by a workflow task comes back with that task's
 * completion, to the same worker, recorded as started in the same state write; without it (the
 * server's default) each activity costs a state transition and a matching round trip more. A
 * lifecycle: 22–23 state transitions instead of 27, the same 44 events (docs/design.md, "Event
 * budget").
 *
 * Per-host request limits (frontend 2,400/s, matching 1,200/s, history 3,000/s by default) raised:
 * a reconnect storm (bench `storm`: 100 closes and reconnects in a second, each about ten calls
 * from gateways and the worker, plus the polls) ran into them, and the throttled calls' retries
 * doubled each reconnect's time to live (p50 1.2 s → 0.7 s with them raised). The server's CPU,
 * not these limits, then bounds its rate.
 */
export const DEV_DYNAMIC_CONFIG = {
  'system.enableActivityEagerExecution': true,
  'frontend.rps': 20_000,
  'frontend.namespaceRPS': 20_000,
  'matching.rps': 20_000,
  'history.rps': 20_000,
} as const;

export const dynamicConfigArgs = (config: Record<string, unknown>): string[] =>
  Object.entries(config).flatMap(([k, v]) => ['--dynamic-config-value', `${k}=${JSON.stringify(v)}`]);

export function devServerArgs(opts: Omit<DevServerOptions, 'cli' | 'logFile' | 'pidFile'>): string[] {
  return [
    'server',
    'start-dev',
    '--ip',
    opts.ip,
    '--port',
    String(opts.port),
    '--ui-port',
    String(opts.uiPort),
    '--db-filename',
    opts.dbFile,
    // Write-ahead log, fsync at checkpoints only: 2.3× the workflows/s of the default rollback
    // journal on this machine's file (bench/README.md, engine table); a crash of the server process
    // loses nothing committed, power loss at most the last transactions, never the database.
    ...DEV_SQLITE_PRAGMAS.flatMap((p) => ['--sqlite-pragma', p]),
    ...dynamicConfigArgs(DEV_DYNAMIC_CONFIG),
    ...(opts.namespace !== 'default' ? ['--namespace', opts.namespace] : []),
    ...cliSearchAttributes(opts.searchAttributes).flatMap(({ name, type }) => [
      '--search-attribute',
      `${name}=${type}`,
    ]),
    '--log-level',
    'warn',
    // Flags only: TEMPORAL_* variables meant for tether must not reconfigure the CLI.
    '--disable-config-env',
    '--disable-config-file',
  ];
}

export function startDevServer(opts: DevServerOptions): DevServer {
  mkdirSync(path.dirname(opts.dbFile), { recursive: true });
  mkdirSync(path.dirname(opts.logFile), { recursive: true });
  const log = openSync(opts.logFile, 'w');
  // Own process group: a terminal Ctrl-C reaches only us, and we stop the server after the worker
  // has drained (it needs the server to finish its in-flight tasks).
  const child = spawn(opts.cli, devServerArgs(opts), { detached: true, stdio: ['ignore', log, log] });
  closeSync(log);
  if (child.pid) writeFileSync(opts.pidFile, `${child.pid}\n`);
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.once('error', (err) => resolve(err.message));
  });
  void exited.then(() => rmSync(opts.pidFile, { force: true }));
  let gone = false;
  void exited.then(() => (gone = true));
  return {
    pid: child.pid ?? -1,
    uiUrl: `http://${opts.ip}:${opts.uiPort}`,
    logFile: opts.logFile,
    exited,
    async stop(graceMs = 10_000) {
      if (gone) return;
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const killed = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          resolve();
        }, graceMs);
      });
      await Promise.race([exited, killed]);
      clearTimeout(timer);
      await exited;
    },
    kill() {
      if (!gone) child.kill('SIGKILL');
    },
    logTail(lines = 20) {
      try {
        return readFileSync(opts.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
      } catch {
        return '';
      }
    },
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * A dev server an earlier `npm start` left running (that process was killed outright): found by its
 * pid file and command line (`start-dev` on the same database file), to be stopped on our way out.
 */
export function adoptDevServer(pidFile: string, dbFile: string): Pick<DevServer, 'pid' | 'stop' | 'kill'> | null {
  let pid: number;
  let cmdline: string;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return null;
  }
  if (!(pid > 1) || !cmdline.includes('start-dev') || !cmdline.includes(dbFile)) return null;
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  return {
    pid,
    async stop(graceMs = 10_000) {
      signal('SIGTERM');
      const until = Date.now() + graceMs;
      while (alive(pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      if (alive(pid)) signal('SIGKILL');
      rmSync(pidFile, { force: true });
    },
    kill: () => signal('SIGKILL'),
  };
}
