/**
 * ceiling: the same dev server and the same worker settings running the least workflow with the
 * same ingredients (start, one timer, one activity, complete) as fast as they go: workflows
 * started in a closed loop at a fixed concurrency, completions counted per window. The churn
 * figure is reported as a ratio of this one.
 */
import { randomBytes } from 'node:crypto';
import type { BenchContext, Figure, Scenario, ScenarioResult } from '../lib/context';
import { sleep } from '../../harness/sleep';
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
    let failures = 0;
    const errors: string[] = [];
    try {
      const levels = [];
      for (const concurrency of cfg.concurrency) {
        const completions: number[] = [];
        const latencies: number[] = [];
        let stop = false;
        const loop = async () => {
          while (!stop) {
            const t = Date.now();
            try {
              await client.workflow.execute('ceilingWorkflow', {
                taskQueue,
                workflowId: `ceiling-${randomBytes(8).toString('hex')}`,
                args: [{ timerMs: cfg.timerMs }],
              });
              const done = Date.now();
              completions.push(done);
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
        while (Date.now() < end) {
          ctx.progress.update(
            (Date.now() - started) / plannedMs,
            `${concurrency} in flight, ${completions.length} done`,
          );
          await sleep(500);
        }
        stop = true;
        await Promise.all(loops);
        const windows = Array.from({ length: cfg.windows }, (_, j) => {
          const from = t0 + cfg.warmupMs + j * cfg.windowMs;
          const n = completions.filter((c) => c >= from && c < from + cfg.windowMs).length;
          return round(n / (cfg.windowMs / 1000), 2);
        });
        levels.push({ concurrency, windows, perS: median(windows), latencyMs: summary(latencies) });
      }
      const best = levels.reduce((a, b) => (b.perS > a.perS ? b : a));
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
      ];
      return {
        scenario: 'ceiling',
        completed: failures === 0,
        error: failures ? `${failures} workflow(s) failed: ${errors[0]}` : undefined,
        figures,
        config: { ...cfg },
        details: { levels, failures, errors },
        audit: null,
        durationMs: Date.now() - started,
      };
    } finally {
      await worker.stop();
    }
  },
};
