/**
 * steady: connected sessions ponging every idle period, in levels of rising count. Per level, once
 * the new sessions are open and settled, a window in which every pong passed on to the service is
 * followed to its effect (the heartbeat score moving to at least the pong's time): the lag is
 * effect seen − pong scheduled. A level is sustained when that lag's p99 stays under 1 s, no pong
 * effect is lost and no session was found gone. The worker runs in its own process; its memory
 * (after a full GC) is sampled at every level and fitted against the open-session count.
 */
import type { BenchContext, Figure, Scenario, ScenarioResult } from '../lib/context';
import { sleep } from '../lib/observer';
import { auditFigure, callDetails, SessionRun } from '../lib/session-run';
import type { WorkerMemory } from '../lib/stack';
import { linearFit, percentile, round, summary } from '../lib/stats';
import { PongFeeder } from '../lib/pongs';
import type { SimConnection, TraceEvent } from '../lib/trace';

interface SteadyConfig {
  idleTimeoutMs: number;
  users: number;
  levels: number[];
  /** New sessions are opened at this rate (opens are not what this scenario measures). */
  openRate: number;
  /** Measuring window per level, in forward intervals of the client (2 × idle with its default). */
  windowMs: number;
  lagLimitMs: number;
  /** No new level starts after this much time (the teardown still has to destroy every session). */
  budgetMs: number;
}

const FULL: SteadyConfig = {
  idleTimeoutMs: 2000,
  users: 100,
  levels: [25, 50, 75, 100, 150, 200, 300, 400, 600, 800],
  openRate: 10,
  windowMs: 12_000,
  lagLimitMs: 1000,
  budgetMs: 150_000,
};

const QUICK: SteadyConfig = {
  idleTimeoutMs: 2000,
  users: 10,
  levels: [20, 40],
  openRate: 10,
  windowMs: 6_000,
  lagLimitMs: 1000,
  budgetMs: 30_000,
};

const MiB = 2 ** 20;

export const steady: Scenario = {
  name: 'steady',
  description: 'connected sessions ponging: largest count with heartbeat-to-effect lag p99 < 1 s, memory',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    const cfg = ctx.quick ? QUICK : FULL;
    const idle = cfg.idleTimeoutMs;
    const started = Date.now();
    const run = await SessionRun.start(ctx, { idleTimeoutMs: idle, users: cfg.users });
    const plannedMs = cfg.budgetMs + 40_000;
    const progress = (text: string) => ctx.progress.update((Date.now() - started) / plannedMs, text);

    // Pongs whose effect is followed, filed by level; none while a level is opening.
    let measuring: { level: number; lags: number[]; lost: number; forwarded: number; from: number } | null = null;
    const follows: Promise<void>[] = [];
    run.hooks.done = (event: TraceEvent, _startedAt, _doneAt, heartbeat) => {
      if (event.kind !== 'pong' || !heartbeat?.effectExpected || !measuring || event.at < measuring.from) return;
      const m = measuring;
      m.forwarded++;
      follows.push(
        run.observer.heartbeatEffect(event.conn.connectionId, event.at, 10_000).then((at) => {
          if (at === null) m.lost++;
          else m.lags.push(at - event.at);
        }),
      );
    };

    const live: SimConnection[] = [];
    const pongs = new PongFeeder(run.driver, idle);
    try {
      const baseline = await run.worker.memory();
      const levels: {
        sessions: number;
        lagMs: ReturnType<typeof summary>;
        lost: number;
        unknownSessions: number;
        signalsPerS: number;
        passed: boolean;
        memory: WorkerMemory;
        workerCpuPct: number;
      }[] = [];
      let stopReason = 'all levels sustained';
      for (const target of cfg.levels) {
        if (Date.now() - started > cfg.budgetMs) {
          stopReason = `time budget (${cfg.budgetMs / 1000} s) reached`;
          break;
        }
        // Open the new sessions at the open rate; each pongs every idle period from then on.
        const add = target - live.length;
        const t0 = Date.now() + 100;
        const events: TraceEvent[] = [];
        for (let i = 0; i < add; i++) {
          const conn = run.connection(i % 4);
          const open = run.gen.open(conn, t0 + (i * 1000) / cfg.openRate);
          events.push(open);
          pongs.start(conn, open.socketId, open.at);
          live.push(conn);
        }
        run.driver.add(events);
        const opened = t0 + (add * 1000) / cfg.openRate;
        while (Date.now() < opened + idle) {
          progress(`level ${target}: opening (${live.filter((c) => c.openSocket).length} open)`);
          await sleep(500);
        }
        const unknownBefore = run.driver.stats.unknownSessions;
        const cpuBefore = await run.worker.memory();
        const from = Date.now();
        measuring = { level: target, lags: [], lost: 0, forwarded: 0, from };
        while (Date.now() < from + cfg.windowMs) {
          progress(`level ${target}: measuring (${measuring.forwarded} pongs followed)`);
          await sleep(500);
        }
        const m = measuring;
        measuring = null;
        const windowS = (Date.now() - from) / 1000;
        await Promise.all(follows.splice(0));
        const memory = await run.worker.memory();
        const unknownSessions = run.driver.stats.unknownSessions - unknownBefore;
        const p99 = percentile(m.lags, 99);
        const passed = m.lags.length > 0 && m.lost === 0 && unknownSessions === 0 && p99 < cfg.lagLimitMs;
        const cpuUs = memory.cpuUserUs + memory.cpuSystemUs - cpuBefore.cpuUserUs - cpuBefore.cpuSystemUs;
        levels.push({
          sessions: target,
          lagMs: summary(m.lags),
          lost: m.lost,
          unknownSessions,
          signalsPerS: round(m.forwarded / windowS, 1),
          passed,
          memory,
          workerCpuPct: round(cpuUs / 1e4 / windowS, 1),
        });
        if (!passed) {
          stopReason = `${target} sessions: lag p99 ${round(p99, 0)} ms, ${m.lost} effect(s) lost, ${unknownSessions} session(s) gone`;
          break;
        }
      }

      let best: (typeof levels)[number] | undefined;
      for (const l of levels) {
        if (!l.passed) break;
        best = l;
      }
      const points = [{ sessions: 0, memory: baseline }, ...levels.filter((l) => l.passed)];
      const rssFit = linearFit(points.map((p) => ({ x: p.sessions, y: p.memory.rss / MiB })));
      const heap = (m: WorkerMemory) => (m.heapUsed + m.workflowHeapUsed) / MiB;
      const heapFit = linearFit(points.map((p) => ({ x: p.sessions, y: heap(p.memory) })));
      const fitNote = `least-squares slope over ${points.length} levels (0…${best?.sessions ?? 0} sessions), after GC; worker caches ≤ 2000 workflows`;
      const figures: Figure[] = [
        {
          key: 'steady.sessions',
          label: 'largest connected-session count with lag p99 < 1 s',
          value: best?.sessions ?? null,
          unit: 'sessions',
          note: `WS_IDLE_TIMEOUT_MS=${idle}, a pong per idle; stopped: ${stopReason}`,
        },
        {
          key: 'steady.lag_p99',
          label: 'heartbeat-to-effect lag p99 at that count',
          value: best ? round(best.lagMs.p99, 0) : null,
          unit: 'ms',
          note: `p50 ${best ? round(best.lagMs.p50, 0) : 'n/a'} ms; pong scheduled → heartbeat score seen; poll ${run.observer.options.effectPollMs} ms`,
        },
        {
          key: 'steady.signals_per_s',
          label: 'heartbeat signals/s at that count',
          value: best?.signalsPerS ?? null,
          unit: 'signals/s',
          note: 'pongs passed on by SessionClient (it coalesces to one per 1.5 × idle)',
        },
        {
          key: 'steady.sessions_at_30s',
          label: 'same signal rate in sessions at 30 s idle',
          value: best ? Math.round(best.signalsPerS * 2 * 30) : null,
          unit: 'sessions',
          note: 'extrapolated: signals/s × 60 s; ignores memory and the worker cache size',
        },
        {
          key: 'steady.rss_per_1000',
          label: 'worker RSS per 1000 open sessions',
          value: Number.isFinite(rssFit.slope) ? round(rssFit.slope * 1000, 1) : null,
          unit: 'MiB',
          note: fitNote,
        },
        {
          key: 'steady.heap_per_1000',
          label: 'worker heap per 1000 open sessions',
          value: Number.isFinite(heapFit.slope) ? round(heapFit.slope * 1000, 1) : null,
          unit: 'MiB',
          note: `V8 heap used, main + ${baseline.workflowThreads} workflow thread(s); with no session: ${round(heap(baseline), 0)} MiB heap, ${round(baseline.rss / MiB, 0)} MiB RSS`,
        },
      ];

      pongs.close();
      const audit = await run.teardown(progress);
      figures.push(auditFigure('steady.sessions_created', audit));
      const stats = run.driver.stats;
      return {
        scenario: 'steady',
        completed: true,
        figures,
        config: { ...cfg, shape: run.gen.shape, observer: run.observer.options },
        details: {
          stopReason,
          baseline,
          levels,
          fit: { rssMiB: rssFit, heapMiB: heapFit },
          calls: callDetails(stats),
        },
        audit,
        durationMs: Date.now() - started,
      };
    } catch (err) {
      pongs.close();
      await run.abort();
      throw err;
    }
  },
};
