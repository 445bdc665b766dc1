/** Machine description, CPU accounting, the printed table, the JSON file and the README table. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { textTable as formatTable } from '../../harness/text-table';
import type { CpuAccount, Figure, ScenarioResult } from './context';

export function machine() {
  const cpus = os.cpus();
  return {
    hostname: os.hostname(),
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryBytes: os.totalmem(),
    node: process.version,
    loadAverage: os.loadavg().map((v) => Math.round(v * 100) / 100),
  };
}

export function git(cwd: string): { commit: string | null; dirty: boolean | null; branch: string | null } {
  const run = (args: string[]) => {
    try {
      return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return null;
    }
  };
  const status = run(['status', '--porcelain']);
  return {
    commit: run(['rev-parse', 'HEAD']),
    dirty: status === null ? null : status.length > 0,
    branch: run(['rev-parse', '--abbrev-ref', 'HEAD']),
  };
}

// ---- CPU accounting from /proc (Linux); elsewhere the account is left out.

const TICK = 100; // USER_HZ; 100 on every Linux the bench targets

function procTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[11], fields[12]: utime, stime (fields 14 and 15 of the full line)
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return null;
  }
}

function machineTicks(): { busy: number; total: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

export interface CpuSnapshot {
  at: number;
  machine: { busy: number; total: number } | null;
  bench: number;
  devServer: number;
  workers: Map<number, number>;
}

/** CPU seconds (user + system, all threads) a process has used so far; null without /proc. */
export function processCpuSeconds(pid: number): number | null {
  const t = procTicks(pid);
  return t === null ? null : t / TICK;
}

/** `serverPid`: the Temporal server's process (BenchTemporal.serverPid). */
export function cpuSnapshot(workerPids: Iterable<number>, serverPid: number | undefined): CpuSnapshot {
  const own = process.cpuUsage();
  const workers = new Map<number, number>();
  for (const pid of workerPids) {
    const t = procTicks(pid);
    if (t !== null) workers.set(pid, t);
  }
  return {
    at: Date.now(),
    machine: machineTicks(),
    bench: (own.user + own.system) / 1e6,
    devServer: serverPid === undefined ? 0 : (procTicks(serverPid) ?? 0) / TICK,
    workers,
  };
}

/**
 * CPU used between two snapshots. A worker that exited before `b` is counted up to its last
 * snapshot only, so scenarios take `b` before stopping their worker when they can.
 */
export function cpuAccount(
  a: CpuSnapshot,
  b: CpuSnapshot,
  lastWorkerTicks: Map<number, number>,
): CpuAccount | undefined {
  if (!a.machine || !b.machine) return undefined;
  const cpus = os.cpus().length;
  const wall = (b.at - a.at) / 1000;
  let worker = 0;
  for (const [pid, end] of lastWorkerTicks) worker += (end - (a.workers.get(pid) ?? 0)) / TICK;
  const machineBusy = (b.machine.busy - a.machine.busy) / TICK;
  const bench = b.bench - a.bench;
  const devServer = Math.max(0, b.devServer - a.devServer);
  const r = (v: number) => Math.round(v * 10) / 10;
  return {
    wallSeconds: r(wall),
    machineCpus: cpus,
    bench: r(bench),
    worker: r(worker),
    devServer: r(devServer),
    other: r(Math.max(0, machineBusy - bench - worker - devServer)),
    machineBusyPct: r((100 * (b.machine.busy - a.machine.busy)) / Math.max(1, b.machine.total - a.machine.total)),
  };
}

/** Latest CPU ticks of each worker pid, refreshed while they run. */
export function workerTicks(pids: Iterable<number>, into: Map<number, number>): void {
  for (const pid of pids) {
    const t = procTicks(pid);
    if (t !== null) into.set(pid, t);
  }
}

// ---- output

export function formatValue(f: Figure): string {
  if (f.value === null || !Number.isFinite(f.value)) return 'n/a';
  const v = f.value;
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
}

function rows(results: ScenarioResult[]): string[][] {
  const out: string[][] = [];
  for (const r of results) {
    if (!r.completed) out.push([r.scenario, 'did not complete', 'n/a', '', r.error ?? '']);
    for (const f of r.figures) out.push([r.scenario, f.label, formatValue(f), f.unit, f.note ?? '']);
  }
  return out;
}

export function textTable(results: ScenarioResult[]): string {
  return formatTable(['scenario', 'figure', 'value', 'unit', 'note'], rows(results), (i) => i === 2);
}

function markdown(head: string[], right: (column: number) => boolean, body: string[][]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return [
    `| ${head.join(' | ')} |`,
    `| ${head.map((_, i) => (right(i) ? '---:' : '---')).join(' | ')} |`,
    ...body.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

export function markdownTable(results: ScenarioResult[]): string {
  return markdown(['scenario', 'figure', 'value', 'unit', 'note'], (i) => i === 2, rows(results));
}

// ---- the engine comparison of an `--engines` run: one row per ceiling result with an engine

const ENGINE_HEAD = [
  'engine',
  'server',
  'persistence',
  'dynamic config',
  'workflows/s',
  'history events / server CPU-s',
  'history events / CPU-s, server + persistence',
  'server CPU, % of a core',
  'start-to-result p50, ms',
];
const ENGINE_FIGURES = [
  'workflows_per_s',
  'events_per_server_cpu_s',
  'events_per_cpu_s_with_persistence',
  'server_cpu_pct',
  'latency_p50',
];

function engineRows(results: ScenarioResult[]): string[][] {
  return results.flatMap(({ engine, figures, completed }) => {
    if (!engine) return [];
    const value = (figure: string) => {
      const f = figures.find((x) => x.key === `ceiling.${engine.name}.${figure}`);
      return f ? formatValue(f) : 'n/a';
    };
    const name = completed ? engine.name : `${engine.name} (did not complete)`;
    const entries = Object.entries(engine.dynamicConfig);
    const dynamic =
      entries.length > 1
        ? 'throughput set (below)'
        : entries.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ') || 'defaults';
    return [[name, engine.server, engine.persistence, dynamic, ...ENGINE_FIGURES.map(value)]];
  });
}

/** The dynamic config the tuned engines ran with, as `key=value`s. */
function throughputSet(results: ScenarioResult[], quote: (s: string) => string): string[] {
  const set = new Set(
    results.flatMap(({ engine }) =>
      Object.entries(engine && Object.keys(engine.dynamicConfig).length > 1 ? engine.dynamicConfig : {}).map(([k, v]) =>
        quote(`${k}=${JSON.stringify(v)}`),
      ),
    ),
  );
  return set.size ? ['', `Throughput set: ${[...set].join(', ')}.`] : [];
}

export function engineTextTable(results: ScenarioResult[]): string {
  return [formatTable(ENGINE_HEAD, engineRows(results), (i) => i >= 4), ...throughputSet(results, (s) => s)].join('\n');
}

export function engineMarkdown(results: ScenarioResult[]): string {
  return [markdown(ENGINE_HEAD, (i) => i >= 4, engineRows(results)), ...throughputSet(results, (s) => `\`${s}\``)].join(
    '\n',
  );
}
