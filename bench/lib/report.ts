/** Machine description, CPU accounting, the printed table, the JSON file and the README table. */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
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

/** Children of this process whose command is the Temporal CLI (the dev server). */
function devServerPids(): number[] {
  const pids: number[] = [];
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (ppid === process.pid && comm.startsWith('temporal')) pids.push(Number(entry));
      } catch {
        // the process ended meanwhile
      }
    }
  } catch {
    // no /proc
  }
  return pids;
}

export interface CpuSnapshot {
  at: number;
  machine: { busy: number; total: number } | null;
  bench: number;
  devServer: number;
  workers: Map<number, number>;
}

export function cpuSnapshot(workerPids: Iterable<number>): CpuSnapshot {
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
    devServer: devServerPids().reduce((sum, pid) => sum + (procTicks(pid) ?? 0), 0) / TICK,
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

export function markdownTable(results: ScenarioResult[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return [
    '| scenario | figure | value | unit | note |',
    '| --- | --- | ---: | --- | --- |',
    ...rows(results).map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}
