/**
 * storm: every socket of one gateway instance drops and its clients reconnect (same connectionId,
 * new socketId) within one second, through the next gateway (the session moves to that gateway's
 * lease; the old gateway's close names the old socket and must change nothing). The old gateway's close of each socket is reported just before
 * the reconnect, or for a share of them late, after it (a stale close that must not count).
 *
 * Figures: time from the storm's start until every one of those sessions is live again (its active
 * marker names the new socket), per-session reconnect-to-live, and sessions destroyed by mistake:
 * checked after the hard-destroy deadline of the old sockets has passed (state of every session of
 * every gateway: marker, gateway keys, heartbeat score, presence, `disconnectedAt`), plus pongs
 * the service answered "unknown session". Repeated on several gateways; medians over repeats.
 */
import type { BenchContext, Figure, Scenario, ScenarioResult } from '../lib/context';
import { checkLive } from '../lib/observer';
import { sleep } from '../../harness/sleep';
import { PongFeeder } from '../lib/pongs';
import { auditFigure, callDetails, SessionRun } from '../lib/session-run';
import { median, percentile, round, summary } from '../lib/stats';
import type { SimConnection, TraceEvent } from '../lib/trace';

interface StormConfig {
  idleTimeoutMs: number;
  users: number;
  gateways: number;
  perGateway: number;
  openRate: number;
  /** Storms, one gateway each (gateway k for repeat k). */
  repeats: number;
  reconnectWithinMs: number;
  /** Share of sockets whose old close arrives after the reconnect. */
  lateCloseShare: number;
}

const FULL: StormConfig = {
  idleTimeoutMs: 2000,
  users: 40,
  gateways: 3,
  perGateway: 100,
  openRate: 10,
  repeats: 3,
  reconnectWithinMs: 1000,
  lateCloseShare: 0.2,
};

const QUICK: StormConfig = {
  idleTimeoutMs: 2000,
  users: 10,
  gateways: 2,
  perGateway: 30,
  openRate: 10,
  repeats: 1,
  reconnectWithinMs: 1000,
  lateCloseShare: 0.2,
};

export const storm: Scenario = {
  name: 'storm',
  description: 'all sessions of one gateway reconnect within 1 s: time until all live, none destroyed',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    const cfg = ctx.quick ? QUICK : FULL;
    const idle = cfg.idleTimeoutMs;
    const started = Date.now();
    const run = await SessionRun.start(ctx, { idleTimeoutMs: idle, users: cfg.users });
    const total = cfg.gateways * cfg.perGateway;
    const stormMs = cfg.reconnectWithinMs + 500 + 4 * idle + 3000;
    const plannedMs = (total / cfg.openRate) * 1000 + idle + cfg.repeats * (stormMs + 2000) + total * 250;
    const progress = (text: string) => ctx.progress.update((Date.now() - started) / plannedMs, text);
    const pongs = new PongFeeder(run.driver, idle);
    try {
      // ---- everyone connects, spread over the gateways
      const byGateway: SimConnection[][] = Array.from({ length: cfg.gateways }, () => []);
      const sockets = new Map<SimConnection, string>();
      const t0 = Date.now() + 100;
      const opens: TraceEvent[] = [];
      for (let i = 0; i < total; i++) {
        const g = i % cfg.gateways;
        const conn = run.connection(g);
        const open = run.gen.open(conn, t0 + (i * 1000) / cfg.openRate);
        opens.push(open);
        pongs.start(conn, open.socketId, open.at);
        sockets.set(conn, open.socketId);
        byGateway[g]!.push(conn);
      }
      run.driver.add(opens);
      const opened = t0 + (total * 1000) / cfg.openRate;
      while (Date.now() < opened + idle) {
        progress(`opening: ${run.conns.filter((c) => c.openSocket).length}/${total} open`);
        await sleep(500);
      }
      const before = await checkLive(
        ctx.redis,
        ctx.pg,
        run.conns.map((conn) => ({ conn, socketId: sockets.get(conn)! })),
      );
      const notLive = before.filter((c) => c.problems.length).length;
      if (notLive)
        throw new Error(
          `${notLive} session(s) not live before the first storm: ${before.find((c) => c.problems.length)!.problems[0]}`,
        );

      // ---- storms
      const storms = [];
      let movedTotal = 0;
      const everBroken = new Set<string>();
      for (let k = 0; k < cfg.repeats; k++) {
        const g = k % cfg.gateways;
        const victims = byGateway[g]!;
        const T = Date.now() + 500;
        const unknownBefore = run.driver.stats.unknownSessions;
        const events: TraceEvent[] = [];
        const waits: Promise<{ reconnectAt: number; liveAt: number | null }>[] = [];
        let late = 0;
        const moved: { conn: SimConnection; to: number }[] = [];
        for (const conn of victims) {
          const at = T + run.gen.jitter(cfg.reconnectWithinMs);
          const lateClose = run.gen.jitter(1) < cfg.lateCloseShare;
          if (lateClose) late++;
          const lead = lateClose ? -(50 + run.gen.jitter(450)) : run.gen.jitter(100);
          // The clients reconnect through the next gateway: the session moves to its lease.
          const to = (g + 1) % cfg.gateways;
          const r = run.gen.reconnect(conn, sockets.get(conn)!, at, to, lead, `storm-${k}`);
          events.push(...r.events);
          sockets.set(conn, r.socketId);
          moved.push({ conn, to });
          pongs.start(conn, r.socketId, at);
          waits.push(
            run.observer.live(conn.connectionId, r.socketId, 120_000).then((liveAt) => ({ reconnectAt: at, liveAt })),
          );
        }
        run.driver.add(events);
        let done = 0;
        for (const w of waits) void w.then(() => done++);
        while (done < waits.length) {
          progress(`storm ${k + 1}/${cfg.repeats} (gateway ${g}): ${done}/${victims.length} live again`);
          await sleep(100);
        }
        const outcome = await Promise.all(waits);
        const lives = outcome.filter((o) => o.liveAt !== null);
        const allLiveMs = lives.length === outcome.length ? Math.max(...lives.map((o) => o.liveAt!)) - T : null;
        const perSession = lives.map((o) => o.liveAt! - o.reconnectAt);
        // Past the hard-destroy deadline of every old socket (+ margin): a destroy not cancelled
        // would have happened by now.
        const checkAt = T + cfg.reconnectWithinMs + 500 + 4 * idle + 3000;
        while (Date.now() < checkAt) {
          progress(`storm ${k + 1}/${cfg.repeats}: waiting out the old sockets' destroy deadline`);
          await sleep(500);
        }
        const checks = await checkLive(
          ctx.redis,
          ctx.pg,
          run.conns.map((conn) => ({ conn, socketId: sockets.get(conn)! })),
        );
        const broken = checks.filter((c) => c.problems.length && !everBroken.has(c.connectionId));
        for (const c of broken) everBroken.add(c.connectionId);
        const unknownSessions = run.driver.stats.unknownSessions - unknownBefore;
        // (storm k drops gateway k's original sessions: each still held by gateway k at that time)
        movedTotal += moved.length;
        storms.push({
          gateway: g,
          sessions: victims.length,
          lateCloses: late,
          allLiveMs,
          notLive: outcome.length - lives.length,
          reconnectToLiveMs: summary(perSession),
          destroyedByMistake: broken.length,
          unknownSessions,
          problems: broken.slice(0, 5),
        });
      }

      const allLive = storms.map((s) => s.allLiveMs).filter((v): v is number => v !== null);
      const mistakes = storms.reduce((n, s) => n + s.destroyedByMistake + s.unknownSessions + s.notLive, 0);
      const n = cfg.repeats;
      const figures: Figure[] = [
        {
          key: 'storm.time_to_all_live',
          label: 'storm start → all sessions live again',
          value: allLive.length === storms.length ? round(median(allLive), 0) : null,
          unit: 'ms',
          note: `${cfg.perGateway} sessions reconnecting within ${cfg.reconnectWithinMs} ms; median of ${n} storm(s); poll ${run.observer.options.effectPollMs} ms`,
        },
        {
          key: 'storm.reconnect_to_live_p99',
          label: 'reconnect → live p99 (per session)',
          value: round(median(storms.map((s) => s.reconnectToLiveMs.p99)), 0),
          unit: 'ms',
          note: `p50 ${round(median(storms.map((s) => s.reconnectToLiveMs.p50)), 0)} ms; median of ${n} storm(s)`,
        },
        {
          key: 'storm.destroyed_by_mistake',
          label: 'sessions destroyed by mistake',
          value: mistakes,
          unit: 'sessions',
          note: `all ${total} sessions checked ${round((4 * idle + 3500) / 1000, 1)} s after each storm; ${round(cfg.lateCloseShare * 100, 0)}% of closes arrive after the reconnect`,
        },
      ];
      pongs.close();
      const audit = await run.teardown(progress);
      figures.push(auditFigure('storm.sessions_created', audit));
      const stats = run.driver.stats;
      return {
        scenario: 'storm',
        completed: true,
        figures,
        config: { ...cfg, shape: run.gen.shape, observer: run.observer.options },
        details: {
          storms,
          allLiveP99: round(percentile(allLive, 99), 0),
          movedToAnotherGateway: movedTotal,
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
