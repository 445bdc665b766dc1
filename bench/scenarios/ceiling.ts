/**
 * ceiling: the same dev server and the same worker settings running the least workflow with the
 * same ingredients (start, one timer, one activity, complete) as fast as they go: workflows
 * started in a closed loop at a fixed concurrency, completions counted per window. The churn
 * figure is reported as a ratio of this one. What a history event costs the server: the events
 * of the workflows completed over the windows (a sample's historyLength from describe(), the same
 * for every run of this workflow) per CPU second the server process used meanwhile, and the same
 * with its persistence's CPU added where that runs apart (Postgres backends). `--engines` runs
 * this once per Temporal engine (bench/lib/engines.ts).
 */
import { randomBytes } from 'node:crypto';
import type { BenchContext, Figure, Scenario, ScenarioResult } from '../lib/context';
import { sleep } from '../../harness/sleep';
import { processCpuSeconds } from '../lib/report';
import { startWorker } from '../lib/stack';
import { median, round, summary } from '../lib/stats';

interface CeilingConfig {
  /** Workflows in flight; each level is tried and the best is reported. */
  concurrency: number[];
  timerMs: number;
  warmupMs: number;
  windows: number;
  windowMs: number;
}

const FULL: CeilingConfig = { concurrency: [50, 200], timerMs: 1000, warmupMs: 5000, windows: 3, windowMs: 10_000 };
const QUICK: CeilingConfig = { concurrency: [100], timerMs: 1000, warmupMs: 3000, windows: 2, windowMs: 4000 };

/** Completed workflows read with describe() for the events per workflow. */
const SAMPLE = 20;

interface Completion {
  at: number;
  workflowId: string;
}

/**
 * CPU seconds so far at a moment: the server process's (null: no /proc, or no process) and each
 * process doing its persistence apart from it (null: none, SQLite in process).
 */
interface CpuReading {
  at: number;
  server: number | null;
  persistence: Map<number, number> | null;
}

/** The server's CPU over one level's windows: from the first poll inside them to their end. */
interface ServerCpu {
  from: number;
  to: number;
  seconds: number;
  /** Its persistence processes' (a backend new in the span counts from zero); null: in process. */
  persistenceSeconds: number | null;
}

function serverCpu(from: CpuReading | undefined, to: CpuReading): ServerCpu | null {
  if (from?.server == null || to.server === null) return null;
  let persistence: number | null = null;
  if (from.persistence && to.persistence) {
    persistence = 0;
    for (const [pid, seconds] of to.persistence) persistence += seconds - (from.persistence.get(pid) ?? 0);
  }
  return {
    from: from.at,
    to: to.at,
    seconds: round(to.server - from.server, 2),
    persistenceSeconds: persistence === null ? null : round(persistence, 2),
  };
}

export const ceiling: Scenario = {
  name: 'ceiling',
  description: 'minimal workflow (timer + activity) as fast as the same server and worker go',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    const cfg = ctx.quick ? QUICK : FULL;
    const started = Date.now();
    const plannedMs = cfg.concurrency.length * (cfg.warmupMs + cfg.windows * cfg.windowMs + cfg.timerMs + 2000);
    const taskQueue = `bench-ceiling-${randomBytes(4).toString('hex')}`;
    const worker = await startWorker(ctx, { kind: 'ceiling', taskQueue });
    const client = ctx.env.client;
    const { serverPid, persistencePids } = ctx.env;
    const cpuReading = async (): Promise<CpuReading> => {
      const pids = persistencePids ? await persistencePids() : null;
      return {
        at: Date.now(),
        server: serverPid === undefined ? null : processCpuSeconds(serverPid),
        persistence:
          pids &&
          new Map(
            pids.flatMap((pid) => {
              const seconds = processCpuSeconds(pid);
              return seconds === null ? [] : [[pid, seconds] as const];
            }),
          ),
      };
    };
    let failures = 0;
    const errors: string[] = [];
    try {
      const levels = [];
      for (const concurrency of cfg.concurrency) {
        const completions: Completion[] = [];
        const latencies: number[] = [];
        let stop = false;
        const loop = async () => {
          while (!stop) {
            const t = Date.now();
            const workflowId = `ceiling-${randomBytes(8).toString('hex')}`;
            try {
              await client.workflow.execute('ceilingWorkflow', {
                taskQueue,
                workflowId,
                args: [{ timerMs: cfg.timerMs }],
              });
              const done = Date.now();
              completions.push({ at: done, workflowId });
              latencies.push(done - t);
            } catch (err) {
              failures++;
              if (errors.length < 10) errors.push(err instanceof Error ? err.message : String(err));
            }
          }
        };
        const t0 = Date.now();
        const loops = Array.from({ length: concurrency }, loop);
        const end = t0 + cfg.warmupMs + cfg.windows * cfg.windowMs;
        let cpuFrom: CpuReading | undefined;
        while (Date.now() < end) {
          if (!cpuFrom && Date.now() >= t0 + cfg.warmupMs) cpuFrom = await cpuReading();
          ctx.progress.update(
            (Date.now() - started) / plannedMs,
            `${concurrency} in flight, ${completions.length} done`,
          );
          await sleep(500);
        }
        const cpu = serverCpu(cpuFrom, await cpuReading());
        stop = true;
        await Promise.all(loops);
        const windows = Array.from({ length: cfg.windows }, (_, j) => {
          const from = t0 + cfg.warmupMs + j * cfg.windowMs;
          const n = completions.filter((c) => c.at >= from && c.at < from + cfg.windowMs).length;
          return round(n / (cfg.windowMs / 1000), 2);
        });
        const measured = cpu ? completions.filter((c) => c.at >= cpu.from && c.at < cpu.to) : [];
        levels.push({
          concurrency,
          windows,
          perS: median(windows),
          latencyMs: summary(latencies),
          serverCpu: cpu,
          completedInCpuSpan: measured.length,
          sample: measured.slice(0, SAMPLE).map((c) => c.workflowId),
        });
      }
      const best = levels.reduce((a, b) => (b.perS > a.perS ? b : a));
      const events = await Promise.all(
        best.sample.map(async (id) => (await client.workflow.getHandle(id).describe()).historyLength),
      );
      const eventsPerWorkflow = median(events);
      const cpu = best.serverCpu;
      const cpuSpanS = cpu ? (cpu.to - cpu.from) / 1000 : NaN;
      const pct = (seconds: number) => round((seconds / cpuSpanS) * 100, 0);
      const perCpuSecond = (seconds: number | null | undefined) =>
        seconds && events.length ? round((best.completedInCpuSpan * eventsPerWorkflow) / seconds, 0) : null;
      const figures: Figure[] = [
        {
          key: 'ceiling.workflows_per_s',
          label: 'minimal workflows/s (timer + activity)',
          value: round(best.perS, 2),
          unit: 'workflows/s',
          note: `best of ${cfg.concurrency.join('/')} in flight; median of ${cfg.windows} windows of ${cfg.windowMs / 1000} s; ${cfg.timerMs} ms timer`,
        },
        {
          key: 'ceiling.latency_p50',
          label: 'minimal workflow start-to-result p50',
          value: round(best.latencyMs.p50, 0),
          unit: 'ms',
          note: `at ${best.concurrency} in flight, incl. the ${cfg.timerMs} ms timer`,
        },
        {
          key: 'ceiling.events_per_server_cpu_s',
          label: 'history events per CPU-second of the server',
          value: perCpuSecond(cpu?.seconds),
          unit: 'events/CPU-s',
          note: cpu
            ? `${best.completedInCpuSpan} workflows × ${eventsPerWorkflow} events (describe(), n = ${events.length}) ÷ ${cpu.seconds} CPU s of the server process (/proc utime+stime) over the windows at ${best.concurrency} in flight`
            : 'no server process CPU (/proc) to divide by',
        },
        {
          key: 'ceiling.events_per_cpu_s_with_persistence',
          label: 'history events per CPU-second of the server and its persistence',
          value: perCpuSecond(cpu && cpu.seconds + (cpu.persistenceSeconds ?? 0)),
          unit: 'events/CPU-s',
          note: !cpu
            ? 'no server process CPU (/proc) to divide by'
            : cpu.persistenceSeconds === null
              ? 'persistence inside the server process (SQLite): the same as the server alone'
              : `the server's ${cpu.seconds} CPU s + ${cpu.persistenceSeconds} CPU s of the Postgres backends serving its databases (${pct(cpu.persistenceSeconds)}% of a core)`,
        },
        {
          key: 'ceiling.server_cpu_pct',
          label: 'server CPU during the windows',
          value: cpu ? pct(cpu.seconds) : null,
          unit: '% of a core',
          note: cpu ? `${cpu.seconds} CPU s in ${round(cpuSpanS, 1)} s at ${best.concurrency} in flight` : 'no /proc',
        },
      ];
      return {
        scenario: 'ceiling',
        completed: failures === 0,
        error: failures ? `${failures} workflow(s) failed: ${errors[0]}` : undefined,
        figures,
        config: { ...cfg },
        details: { levels, eventsPerWorkflow: { median: eventsPerWorkflow, sample: events }, failures, errors },
        audit: null,
        durationMs: Date.now() - started,
      };
    } finally {
      await worker.stop();
    }
  },
};
