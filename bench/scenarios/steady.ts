/**
 * steady: connected sessions ponging every idle period (coalesced by their gateway's SessionClient),
 * on 4 gateways, in levels of rising count. Per level, once the new sessions are open and settled,
 * a window in which a pipelined EXISTS checks every live session's `session:{cid}:active` marker
 * every second (the markers come from the gateways' lease renewals, one per gateway per idle). A
 * level is sustained when no check missed a marker and no session was found gone. The worker runs
 * in its own process; its memory (after a full GC) is sampled at every level and fitted against
 * the open-session count.
 */
import { MAX_CACHED_WORKFLOWS } from '../../src/worker';
import type { BenchContext, Figure, Scenario, ScenarioResult } from '../lib/context';
import { MarkerWatch } from '../lib/observer';
import { sleep } from '../../harness/sleep';
import { auditFigure, callDetails, SessionRun } from '../lib/session-run';
import type { WorkerMemory } from '../../harness/worker-memory';
import { linearFit, round } from '../lib/stats';
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
  /** Marker check interval inside a window. */
  checkEveryMs: number;
  /** No new level starts after this much time (the teardown still has to destroy every session). */
  budgetMs: number;
}

const FULL: SteadyConfig = {
  idleTimeoutMs: 2000,
  users: 100,
  levels: [100, 250, 500, 1000, 1500, 2000, 3000],
  openRate: 50,
  windowMs: 12_000,
  checkEveryMs: 1000,
  budgetMs: 150_000,
};

const QUICK: SteadyConfig = {
  idleTimeoutMs: 2000,
  users: 10,
  levels: [40, 80],
  openRate: 40,
  windowMs: 6_000,
  checkEveryMs: 1000,
  budgetMs: 30_000,
};

const MiB = 2 ** 20;

export const steady: Scenario = {
  name: 'steady',
  description: 'connected sessions ponging: largest count with every marker present at every check, memory',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    const cfg = ctx.quick ? QUICK : FULL;
    const idle = cfg.idleTimeoutMs;
    const started = Date.now();
    const run = await SessionRun.start(ctx, { idleTimeoutMs: idle, users: cfg.users });
    const plannedMs = cfg.budgetMs + 40_000;
    const progress = (text: string) => ctx.progress.update((Date.now() - started) / plannedMs, text);

    // Live = connected() returned for its socket, socket still open.
    // Checked from one idle period after connected() returned (the connect effect wrote the first
    // marker, and a renewal came since).
    const connectedSockets = new Map<string, number>();
    run.hooks.done = (event: TraceEvent, _s, doneAt) => {
      if (event.kind === 'open') connectedSockets.set(event.socketId, doneAt);
    };
    const liveIds = () => {
      const settled = Date.now() - idle;
      return live
        .filter((c) => c.openSocket !== null && (connectedSockets.get(c.openSocket) ?? Infinity) <= settled)
        .map((c) => c.connectionId);
    };
    const watch = new MarkerWatch(ctx.redis, liveIds, cfg.checkEveryMs);

    const live: SimConnection[] = [];
    const pongs = new PongFeeder(run.driver, idle);
    try {
      const baseline = await run.worker.memory();
      const levels: {
        sessions: number;
        checks: number;
        missing: number;
        unknownSessions: number;
        messagesPerS: number;
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
        const sentBefore = run.target.messagesSent();
        const cpuBefore = await run.worker.memory();
        const from = Date.now();
        watch.start();
        while (Date.now() < from + cfg.windowMs) {
          progress(`level ${target}: checking markers (${watch.since(from).length} checks)`);
          await sleep(500);
        }
        await watch.stop();
        const checks = watch.since(from);
        const windowS = (Date.now() - from) / 1000;
        const memory = await run.worker.memory();
        const unknownSessions = run.driver.stats.unknownSessions - unknownBefore;
        const missing = checks.reduce((n, c) => n + c.missing, 0);
        const complete = checks.every((c) => c.checked === target);
        const passed = checks.length > 0 && missing === 0 && complete && unknownSessions === 0;
        const cpuUs = memory.cpuUserUs + memory.cpuSystemUs - cpuBefore.cpuUserUs - cpuBefore.cpuSystemUs;
        levels.push({
          sessions: target,
          checks: checks.length,
          missing,
          unknownSessions,
          messagesPerS: round((run.target.messagesSent() - sentBefore) / windowS, 1),
          passed,
          memory,
          workerCpuPct: round(cpuUs / 1e4 / windowS, 1),
        });
        if (!passed) {
          stopReason = `${target} sessions: ${missing} marker(s) missing over ${checks.length} checks${complete ? '' : ', not all connected'}, ${unknownSessions} session(s) gone`;
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
      const fitNote = `least-squares slope over ${points.length} levels (0…${best?.sessions ?? 0} sessions), after GC; worker caches ≤ ${MAX_CACHED_WORKFLOWS} workflows`;
      const figures: Figure[] = [
        {
          key: 'steady.sessions',
          label: 'largest connected-session count with every marker present',
          value: best?.sessions ?? null,
          unit: 'sessions',
          note: `WS_IDLE_TIMEOUT_MS=${idle}, a pong per idle (coalesced), 4 gateways; stopped: ${stopReason}`,
        },
        {
          key: 'steady.marker_checks',
          label: 'marker checks at that count, markers missing',
          value: best ? best.missing : null,
          unit: 'markers',
          note: best
            ? `${best.checks} checks (every ${cfg.checkEveryMs} ms: pipelined EXISTS of every live session's marker), none may miss`
            : 'no level passed',
        },
        {
          key: 'steady.messages_per_s',
          label: 'Temporal calls by the gateways/s at that count',
          value: best?.messagesPerS ?? null,
          unit: 'calls/s',
          note: 'connects, forwarded heartbeats, closes (lease renewals not counted: one per gateway per idle)',
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
