/**
 * capacity: at WS_IDLE_TIMEOUT_MS=30000 in real time, sessions on 4 simulated gateways (one
 * SessionClient each, autoTick: a lease renewal per gateway every 30 s refreshes every held marker
 * in batch). Sessions are opened second by second at an adaptive rate: the ramp slows down while
 * connects whose call returned more than `effectLagMs` ago still have no marker (their connect
 * effect queued behind the server), and speeds up again when there are none, so the count grows as
 * fast as the server takes it instead of running ahead of it. Every ~30 s a pipelined EXISTS checks
 * the marker of every session connected one idle period ago or more. The count reached is then
 * held for 10 minutes with the same checks; it counts when every check of the hold found every
 * marker and no session was lost. The ramp stops early (and the count reached is held) when a
 * check misses a marker or the load generator falls behind. Teardown: the gateways shut down
 * without reporting their closes (leases released: the fan-out records every close in bulk) and
 * every destroy is waited for.
 */
import type { BenchContext, Figure, Scenario, ScenarioResult } from '../lib/context';
import { cpuSnapshot } from '../lib/report';
import { MarkerWatch, missingMarkers } from '../lib/observer';
import { sleep } from '../../harness/sleep';
import { PongFeeder } from '../lib/pongs';
import { auditFigure, callDetails, SessionRun } from '../lib/session-run';
import type { WorkerMemory } from '../../harness/worker-memory';
import { percentile, round, summary } from '../lib/stats';
import type { SimConnection, TraceEvent } from '../lib/trace';

interface CapacityConfig {
  idleTimeoutMs: number;
  target: number;
  gateways: number;
  users: number;
  /** Opens per second: where the ramp starts, and its bounds. */
  openRate: { initial: number; min: number; max: number };
  /** A connect whose call returned this long ago without a marker counts as backlog. */
  effectLagMs: number;
  /** Backlog above which the rate is cut (by 30 %); at or below it the rate grows by 1/s. */
  maxBacklog: number;
  holdMs: number;
  checkEveryMs: number;
  /** The ramp stops when opens are issued this late. */
  maxDispatchLagMs: number;
  /** Pongs are coalesced (no Temporal call); simulate them only below this count (bench CPU). */
  pongsUpTo: number;
}

const FULL: CapacityConfig = {
  idleTimeoutMs: 30_000,
  target: 20_000,
  gateways: 4,
  users: 200,
  openRate: { initial: 20, min: 2, max: 80 },
  effectLagMs: 3000,
  maxBacklog: 30,
  holdMs: 600_000,
  checkEveryMs: 30_000,
  maxDispatchLagMs: 30_000,
  pongsUpTo: 0,
};

const QUICK: CapacityConfig = {
  idleTimeoutMs: 5000,
  target: 800,
  gateways: 4,
  users: 20,
  openRate: { initial: 30, min: 5, max: 80 },
  effectLagMs: 1500,
  maxBacklog: 10,
  holdMs: 30_000,
  checkEveryMs: 5000,
  maxDispatchLagMs: 10_000,
  pongsUpTo: 0,
};

const MiB = 2 ** 20;

export const capacity: Scenario = {
  name: 'capacity',
  description: 'sessions held 10 min at 30 s idle on 4 gateways, every marker present: count, worker RSS, server CPU',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    const cfg = ctx.quick ? QUICK : FULL;
    const idle = cfg.idleTimeoutMs;
    const started = Date.now();
    const run = await SessionRun.start(ctx, { idleTimeoutMs: idle, users: cfg.users, maxInFlight: 256 });
    const rampMs = (cfg.target / cfg.openRate.initial) * 1000;
    const plannedMs = rampMs + cfg.holdMs + 4 * idle + cfg.target * 35;
    const progress = (text: string) => ctx.progress.update((Date.now() - started) / plannedMs, text);
    // socketId → when connected() returned. A session is checked from one idle period after that
    // (its connect effect wrote the first marker, and a renewal came since).
    const connected = new Map<string, number>();
    run.hooks.done = (event: TraceEvent, _s, doneAt) => {
      if (event.kind === 'open') connected.set(event.socketId, doneAt);
    };
    const live: SimConnection[] = [];
    // An open whose call failed (a server refusing it under load: 'Namespace not found' once in
    // 20,000) leaves the count: the ramp opens another in its place.
    const failedOpens = new Set<SimConnection>();
    run.hooks.failed = (event: TraceEvent) => {
      if (event.kind !== 'open') return;
      failedOpens.add(event.conn);
      const i = live.indexOf(event.conn);
      if (i >= 0) live.splice(i, 1);
    };
    const liveIds = () => {
      const settled = Date.now() - idle;
      return live
        .filter((c) => c.openSocket !== null && (connected.get(c.openSocket) ?? Infinity) <= settled)
        .map((c) => c.connectionId);
    };
    // Connected between effectLagMs and one idle period ago: a missing marker there is a connect
    // effect still queued (older ones are the watch's to judge).
    const recentlyConnected = () => {
      const now = Date.now();
      return live
        .filter((c) => {
          const at = c.openSocket === null ? undefined : connected.get(c.openSocket);
          return at !== undefined && at <= now - cfg.effectLagMs && at > now - idle;
        })
        .map((c) => c.connectionId);
    };
    const watch = new MarkerWatch(ctx.redis, liveIds, cfg.checkEveryMs);
    const pongs = cfg.pongsUpTo > 0 ? new PongFeeder(run.driver, idle) : null;
    const memory: { at: number; sessions: number; memory: WorkerMemory }[] = [];
    try {
      memory.push({ at: Date.now(), sessions: 0, memory: await run.worker.memory() });
      // ---- ramp
      const live0 = Date.now();
      let rate = cfg.openRate.initial;
      const rates: { at: number; rate: number; backlog: number }[] = [];
      watch.start();
      let stopReason = `target ${cfg.target} reached`;
      for (;;) {
        const lag = run.driver.stats.dispatchLagMs.at(-1) ?? 0;
        const bad = watch.checks.find((c) => c.missing > 0);
        if (bad) {
          stopReason = `ramp stopped at ${connected.size}: a check missed ${bad.missing} marker(s)`;
          break;
        }
        if (lag > cfg.maxDispatchLagMs) {
          stopReason = `ramp stopped at ${connected.size}: opens issued ${round(lag / 1000, 0)} s late`;
          break;
        }
        if (live.length >= cfg.target && run.driver.scheduled === 0 && connected.size >= cfg.target) break;
        const backlog = (await missingMarkers(ctx.redis, recentlyConnected())).length;
        rate =
          backlog > cfg.maxBacklog
            ? Math.max(cfg.openRate.min, Math.floor(rate * 0.7))
            : Math.min(cfg.openRate.max, rate + 1);
        rates.push({ at: Date.now() - live0, rate, backlog });
        // This second's opens (none while the backlog is above the bound).
        const n = backlog > cfg.maxBacklog ? 0 : Math.min(rate, cfg.target - live.length);
        const t0 = Date.now() + 50;
        const opens: TraceEvent[] = [];
        for (let k = 0; k < n; k++) {
          const conn = run.connection(live.length % cfg.gateways);
          const open = run.gen.open(conn, t0 + (k * 1000) / n);
          opens.push(open);
          if (pongs && live.length < cfg.pongsUpTo) pongs.start(conn, open.socketId, open.at);
          live.push(conn);
        }
        run.driver.add(opens);
        progress(
          `ramp: ${connected.size}/${cfg.target} connected, ${rate} opens/s, backlog ${backlog}, dispatch lag ${round(lag / 1000, 1)} s`,
        );
        await sleep(1000);
      }
      run.driver.clear();
      await run.driver.drained();
      // Sessions whose open was never issued are not part of the run's population (nor its audit).
      const held = live.filter((c) => c.openSocket !== null && connected.has(c.openSocket));
      live.splice(0, live.length, ...held);
      const issued = run.conns.filter((c) => c.openSocket !== null);
      run.conns.splice(0, run.conns.length, ...issued);
      const refused = await run.dropRefused(failedOpens);
      const rampS = (Date.now() - live0) / 1000;
      const connectMs = [...run.target.connectMs];
      memory.push({ at: Date.now(), sessions: held.length, memory: await run.worker.memory() });

      // ---- hold (from one idle period on: every held session is checked by then)
      await sleep(idle);
      const holdFrom = Date.now();
      const unknownBefore = run.driver.stats.unknownSessions;
      const cpu0 = cpuSnapshot([], ctx.env.serverPid);
      while (Date.now() < holdFrom + cfg.holdMs) {
        const checks = watch.since(holdFrom);
        progress(
          `hold ${round((Date.now() - holdFrom) / 1000, 0)}/${cfg.holdMs / 1000} s: ${held.length} sessions, ${checks.length} checks, ${checks.reduce((n, c) => n + c.missing, 0)} missing`,
        );
        await sleep(Math.min(5000, cfg.checkEveryMs));
        if (memory.at(-1)!.at < Date.now() - 60_000)
          memory.push({ at: Date.now(), sessions: held.length, memory: await run.worker.memory() });
      }
      await watch.stop();
      const cpu1 = cpuSnapshot([], ctx.env.serverPid);
      memory.push({ at: Date.now(), sessions: held.length, memory: await run.worker.memory() });
      const holdS = (cpu1.at - cpu0.at) / 1000;
      const serverCpuPct = round(((cpu1.devServer - cpu0.devServer) / holdS) * 100, 1);
      const checks = watch.since(holdFrom);
      const missing = checks.reduce((n, c) => n + c.missing, 0);
      const incomplete = checks.filter((c) => c.checked !== held.length).length;
      const unknownSessions = run.driver.stats.unknownSessions - unknownBefore;
      const passed = checks.length > 0 && missing === 0 && incomplete === 0 && unknownSessions === 0;
      const holdMem = memory.filter((m) => m.at >= holdFrom - 1000);
      const rss = holdMem.map((m) => m.memory.rss / MiB);
      const refusedNote = refused.length ? `; ${refused.length} open(s) refused by the server, replaced` : '';
      const heldNote = passed
        ? `${stopReason}${refusedNote}; held ${round(cfg.holdMs / 60_000, 1)} min, ${checks.length} checks (every ${cfg.checkEveryMs / 1000} s), 0 markers missing, 0 sessions lost`
        : `${stopReason}${refusedNote}; hold failed: ${missing} marker(s) missing over ${checks.length} checks, ${incomplete} incomplete, ${unknownSessions} lost`;
      const figures: Figure[] = [
        {
          key: 'capacity.sessions',
          label: 'sessions held with every marker present',
          value: passed ? held.length : null,
          unit: 'sessions',
          note: `WS_IDLE_TIMEOUT_MS=${idle} real time, ${cfg.gateways} gateways; ${heldNote}`,
        },
        {
          key: 'capacity.worker_rss_mib',
          label: 'worker RSS during the hold (max)',
          value: rss.length ? round(Math.max(...rss), 0) : null,
          unit: 'MiB',
          note: `after GC; min ${rss.length ? round(Math.min(...rss), 0) : 'n/a'} MiB over ${rss.length} samples; ${round(memory[0]!.memory.rss / MiB, 0)} MiB with no session`,
        },
        {
          key: 'capacity.server_cpu_pct',
          label: 'dev server CPU during the hold',
          value: serverCpuPct,
          unit: '% of a core',
          note: `${round(cpu1.devServer - cpu0.devServer, 1)} CPU s over ${round(holdS, 0)} s`,
        },
        {
          key: 'capacity.connect_ms_p99',
          label: 'connected() p99 during the ramp',
          value: round(percentile(connectMs, 99), 0),
          unit: 'ms',
          note: `p50 ${round(percentile(connectMs, 50), 0)} ms; adaptive ramp ${cfg.openRate.min}–${cfg.openRate.max} opens/s, ${held.length} in ${round(rampS, 0)} s (${round(held.length / rampS, 1)}/s)`,
        },
      ];
      pongs?.close();
      const audit = await run.finish({
        closeSpreadMs: 0,
        closeBy: 'release',
        timeoutMs: 4 * idle + 3_600_000,
        onProgress: (d, t) => progress(`teardown: ${d}/${t} destroyed`),
      });
      figures.push(auditFigure('capacity.sessions_created', audit));
      return {
        scenario: 'capacity',
        completed: true,
        figures,
        config: { ...cfg },
        details: {
          stopReason,
          refusedOpens: refused.length,
          rampSeconds: round(rampS, 1),
          rates,
          connectMs: summary(connectMs),
          checks: watch.checks,
          memory: memory.map((m) => ({
            at: m.at,
            sessions: m.sessions,
            rssMiB: round(m.memory.rss / MiB, 1),
            heapMiB: round((m.memory.heapUsed + m.memory.workflowHeapUsed) / MiB, 1),
          })),
          calls: callDetails(run.driver.stats),
        },
        audit,
        durationMs: Date.now() - started,
      };
    } catch (err) {
      pongs?.close();
      await watch.stop();
      await run.abort();
      throw err;
    }
  },
};
