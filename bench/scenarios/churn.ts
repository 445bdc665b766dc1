/**
 * churn: sessions that connect, pong a few times, close and are destroyed.
 *
 * 1. Ramp (full run only): arrivals at a rising rate, one step after another; a step passes when
 *    every session that arrived in it was seen destroyed and its destroy lateness p99 stayed under
 *    the limit. The ramp stops at the first failure (known, or visible early as overdue destroys).
 * 2. Steady state at the highest passing rate: after one lifecycle of warm-up, consecutive windows;
 *    per window, completed lifecycles/s (destroys seen in it) and the lateness of those destroys;
 *    figures are medians over the windows.
 *
 * Destroy lateness = time the observer saw the destroy complete − (close + 4 × idle), with the close
 * at its scheduled time (so a load generator falling behind would show, and is reported apart).
 */
import { sessionWorkflowId } from '../../src/client';
import { userWorkflowId } from '../../src/contracts/user';
import type { BenchContext, Figure, Scenario, ScenarioResult } from '../lib/context';
import { auditFigure, callDetails, SessionRun } from '../lib/session-run';
import { mapLimit } from '../../harness/map-limit';
import { median, percentile, round, summary } from '../lib/stats';
import type { SimConnection, TraceEvent } from '../lib/trace';
import { sleep } from '../../harness/sleep';

interface ChurnConfig {
  idleTimeoutMs: number;
  /** Pongs per lifecycle (one idle period apart); the close follows within the next idle period. */
  pongs: number;
  users: number;
  /** A ramp step passes when its destroy lateness p99 is below this. */
  latenessLimitMs: number;
  ramp: { startRate: number; factor: number; stepMs: number; maxSteps: number } | null;
  /** Steady-state rate when there is no ramp (quick). */
  fixedRate: number;
  windows: number;
  windowMs: number;
  /** Lifecycles per kind whose history is read with describe() (after they were destroyed). */
  sample: number;
}

const FULL: ChurnConfig = {
  idleTimeoutMs: 1500,
  pongs: 2,
  users: 40,
  latenessLimitMs: 1000,
  ramp: { startRate: 1, factor: 1.5, stepMs: 10_000, maxSteps: 10 },
  fixedRate: 2,
  windows: 3,
  windowMs: 15_000,
  sample: 40,
};

const QUICK: ChurnConfig = {
  idleTimeoutMs: 1500,
  pongs: 2,
  users: 10,
  latenessLimitMs: 1000,
  ramp: null,
  fixedRate: 3,
  windows: 2,
  windowMs: 6_000,
  sample: 10,
};

interface Lifecycle {
  conn: SimConnection;
  phase: string;
  openAt: number;
  closeAt: number;
  destroyedAt: number | null | undefined;
  latenessMs?: number;
  /** By `disconnectedAt` as Postgres wrote it: the lateness without the observer's poll delay. */
  writtenLatenessMs?: number;
}

export const churn: Scenario = {
  name: 'churn',
  description: 'connect, pong, close, destroy: lifecycles/s at steady state and destroy lateness',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    const cfg = ctx.quick ? QUICK : FULL;
    const started = Date.now();
    const idle = cfg.idleTimeoutMs;
    const run = await SessionRun.start(ctx, { idleTimeoutMs: idle, users: cfg.users });
    const lifecycles = new Map<SimConnection, Lifecycle>();
    const lifecycleMs = (cfg.pongs + 0.5) * idle + run.destroyDelayMs;
    const plannedMs = (cfg.ramp ? cfg.ramp.stepMs * 6 + lifecycleMs : 0) + lifecycleMs * 2 + cfg.windows * cfg.windowMs;
    const progress = (text: string) => ctx.progress.update((Date.now() - started) / plannedMs, text);

    run.hooks.done = (event: TraceEvent, startedAt: number) => {
      if (event.kind !== 'close') return;
      const lc = lifecycles.get(event.conn);
      if (!lc) return;
      lc.closeAt = event.at;
      const due = event.at + run.destroyDelayMs;
      // Looked for from 1 s before it is due: a destroy that came earlier shows as −1 s.
      void run.observer
        .destroyed(event.conn, {
          notBefore: due - 1000,
          timeoutMs: startedAt - event.at + run.destroyDelayMs + 120_000,
        })
        .then((seen) => {
          lc.destroyedAt = seen?.seenAt ?? null;
          if (seen) {
            lc.latenessMs = seen.seenAt - due;
            lc.writtenLatenessMs = seen.disconnectedAt - due;
          }
        });
    };
    const undecided = () => [...lifecycles.values()].filter((l) => l.destroyedAt === undefined).length;

    /** Schedules `rate`/s arrivals over [from, from + durationMs) under `phase`. */
    const arrivals = (phase: string, rate: number, from: number, durationMs: number) => {
      const n = Math.max(1, Math.round((rate * durationMs) / 1000));
      const events: TraceEvent[] = [];
      for (let i = 0; i < n; i++) {
        const at = from + ((i + run.gen.jitter(0.5)) * 1000) / rate;
        const conn = run.connection(i % 4);
        lifecycles.set(conn, { conn, phase, openAt: at, closeAt: NaN, destroyedAt: undefined });
        events.push(...run.gen.lifecycle(conn, at, cfg.pongs, run.gen.jitter(idle), phase));
      }
      run.driver.add(events);
      return n;
    };

    const ofPhase = (phase: string) => [...lifecycles.values()].filter((l) => l.phase === phase);
    const verdict = (phase: string) => {
      const ls = ofPhase(phase);
      const late = ls.map((l) => l.latenessMs).filter((v): v is number => v !== undefined);
      const missing = ls.filter((l) => l.destroyedAt === null).length;
      const p99 = percentile(late, 99);
      return {
        sessions: ls.length,
        destroyed: late.length,
        missing,
        latenessMs: summary(late),
        passed: missing === 0 && late.length === ls.length && p99 < cfg.latenessLimitMs,
      };
    };

    const figures: Figure[] = [];
    const details: Record<string, unknown> = {};
    let audit = null;
    try {
      // ---- 1. ramp
      const steps: { rate: number; phase: string }[] = [];
      let steadyRate = cfg.fixedRate;
      if (cfg.ramp) {
        let rate = cfg.ramp.startRate;
        let stopReason = `reached ${cfg.ramp.maxSteps} steps`;
        for (let k = 0; k < cfg.ramp.maxSteps; k++) {
          const phase = `ramp-${k}`;
          const from = Date.now() + 200;
          arrivals(phase, rate, from, cfg.ramp.stepMs);
          steps.push({ rate: round(rate, 2), phase });
          while (Date.now() < from + cfg.ramp.stepMs) {
            progress(`ramp step ${k + 1}: ${round(rate, 1)}/s, ${run.observer.pending().destroys} destroys pending`);
            await sleep(500);
          }
          // Known failure, or destroys already overdue: the machine no longer keeps up.
          const now = Date.now();
          const due = [...lifecycles.values()].filter(
            (l) => l.closeAt + run.destroyDelayMs + cfg.latenessLimitMs < now,
          );
          const overdue = due.filter(
            (l) => l.destroyedAt === undefined || l.destroyedAt === null || (l.latenessMs ?? 0) > cfg.latenessLimitMs,
          );
          if (due.length >= 10 && overdue.length / due.length > 0.01) {
            stopReason = `step ${k + 1} (${round(rate, 1)}/s): ${overdue.length} of ${due.length} due destroys late`;
            break;
          }
          rate *= cfg.ramp.factor;
        }
        await run.driver.drained();
        while (undecided() > 0) {
          progress(`ramp drain: ${undecided()} destroys pending`);
          await sleep(500);
        }
        const stepResults = steps.map((s) => ({ ...s, ...verdict(s.phase) }));
        let best: (typeof stepResults)[number] | undefined;
        for (const s of stepResults) {
          if (!s.passed) break;
          best = s;
        }
        details.ramp = { stopReason, steps: stepResults };
        steadyRate = best?.rate ?? cfg.ramp.startRate;
        figures.push({
          key: 'churn.max_rate',
          label: 'highest arrival rate kept up with (ramp)',
          value: best ? best.rate : null,
          unit: 'lifecycles/s',
          note: best ? `x${cfg.ramp.factor} steps of ${cfg.ramp.stepMs / 1000} s; ${stopReason}` : 'no step passed',
        });
      }

      // ---- 2. steady state at that rate
      // Lifecycles vary by up to one idle period (the close jitter): one more of warm-up, and
      // arrivals go on long enough to keep the last window full.
      const c0 = Date.now() + 200;
      const warmup = lifecycleMs + idle;
      arrivals('steady', steadyRate, c0, cfg.windows * cfg.windowMs + 2 * idle);
      const end = c0 + warmup + cfg.windows * cfg.windowMs;
      while (Date.now() < end) {
        progress(`steady ${round(steadyRate, 1)}/s, ${run.observer.pending().destroys} destroys pending`);
        await sleep(500);
      }
      await run.driver.drained();
      while (undecided() > 0) {
        progress(`steady drain: ${undecided()} destroys pending`);
        await sleep(500);
      }
      const windows = Array.from({ length: cfg.windows }, (_, j) => {
        const from = c0 + warmup + j * cfg.windowMs;
        const to = from + cfg.windowMs;
        const done = ofPhase('steady').filter(
          (l) => l.destroyedAt != null && l.destroyedAt >= from && l.destroyedAt < to,
        );
        const late = done.map((l) => l.latenessMs!);
        return {
          completedPerS: round(done.length / (cfg.windowMs / 1000), 2),
          latenessP50Ms: round(percentile(late, 50), 0),
          latenessP99Ms: round(percentile(late, 99), 0),
          destroys: done.length,
        };
      });
      const steady = verdict('steady');
      const written = ofPhase('steady')
        .map((l) => l.writtenLatenessMs)
        .filter((v): v is number => v !== undefined);
      details.steady = { rate: steadyRate, windows, ...steady, writtenLatenessMs: summary(written) };
      const windowNote = `median of ${cfg.windows} windows of ${cfg.windowMs / 1000} s at ${round(steadyRate, 2)} arrivals/s`;
      figures.push(
        {
          key: 'churn.lifecycles_per_s',
          label: 'completed lifecycles/s at steady state',
          value: round(median(windows.map((w) => w.completedPerS)), 2),
          unit: 'lifecycles/s',
          note: windowNote,
        },
        {
          key: 'churn.lateness_p50',
          label: 'destroy lateness p50',
          value: round(median(windows.map((w) => w.latenessP50Ms)), 0),
          unit: 'ms',
          note: `seen − (close + 4×idle); poll ${run.observer.options.destroyPollMs} ms`,
        },
        {
          key: 'churn.lateness_p99',
          label: 'destroy lateness p99',
          value: round(median(windows.map((w) => w.latenessP99Ms)), 0),
          unit: 'ms',
          note: steady.passed
            ? windowNote
            : `${windowNote}; above the ${cfg.latenessLimitMs} ms limit or destroys missing`,
        },
      );
      const stats = run.driver.stats;
      details.calls = { ...callDetails(stats), messagesSent: run.target.messagesSent() };

      const connectMs = [...run.target.connectMs];
      figures.push({
        key: 'churn.connect_ms_p99',
        label: 'connected() call p99 (as the gateway sees it)',
        value: round(percentile(connectMs, 99), 0),
        unit: 'ms',
        note: `p50 ${round(percentile(connectMs, 50), 0)} ms over ${connectMs.length} calls (all phases); SessionClient.connected alone, not the gateway's joins`,
      });

      audit = await run.finish({
        closeSpreadMs: 0,
        timeoutMs: run.destroyDelayMs + 120_000,
        onProgress: (d, t) => progress(`audit: ${d}/${t} destroyed`),
      });
      progress('reading histories of a sample');
      const costs = await lifecycleCosts(ctx, run, [...lifecycles.keys()], cfg.sample);
      details.lifecycleCost = costs;
      figures.push(...costFigures(costs));
      figures.push(auditFigure('churn.sessions', audit));
      return {
        scenario: 'churn',
        completed: true,
        figures,
        config: { ...cfg, lifecycleMs, shape: run.gen.shape, observer: run.observer.options },
        details,
        audit,
        durationMs: Date.now() - started,
      };
    } catch (err) {
      await run.abort();
      throw err;
    }
  },
};

interface Cost {
  events: number;
  transitions: number;
}

/** History length and state transitions of a closed session run, from describe(). */
async function describeCost(ctx: BenchContext, workflowId: string): Promise<Cost> {
  const d = await ctx.env.client.workflow.getHandle(workflowId).describe();
  const transitions = Number(d.raw.workflowExecutionInfo?.stateTransitionCount ?? NaN);
  return { events: d.historyLength, transitions };
}

/**
 * A sample of finished lifecycles, by kind: anonymous with presence (issue 16's case), and with a
 * user (the session workflow also drives the user's edges). Each connection here had exactly one
 * lifecycle, so its (only, closed) run is the lifecycle. The user workflows are read apart: all
 * their runs (visibility), divided by their edges (one up per connect, one down per soft destroy).
 */
async function lifecycleCosts(ctx: BenchContext, run: SessionRun, conns: SimConnection[], sample: number) {
  const anonymous = conns.filter((c) => !c.session.user && c.presenceRooms.length > 0).slice(0, sample);
  const withUser = conns.filter((c) => c.session.user).slice(0, sample);
  const read = async (cs: SimConnection[]) => {
    const out: Cost[] = [];
    await mapLimit(cs, 8, async (c) => {
      out.push(await describeCost(ctx, sessionWorkflowId(c.connectionId)));
    });
    return out;
  };
  const [anon, user] = [await read(anonymous), await read(withUser)];
  // Users: events of every run of their workflow per edge.
  const byUser = new Map<string, number>();
  for (const c of conns)
    if (c.session.clientId) byUser.set(c.session.clientId, (byUser.get(c.session.clientId) ?? 0) + 1);
  const perEdge: number[] = [];
  const userRuns: { clientId: string; sessions: number; runs: number; events: number }[] = [];
  await mapLimit([...byUser].slice(0, sample), 4, async ([clientId, sessions]) => {
    const id = userWorkflowId(run.appPid, clientId);
    let events = 0;
    let runs = 0;
    for await (const w of ctx.env.client.workflow.list({ query: `WorkflowId = '${id}'` })) {
      events += w.historyLength ?? 0;
      runs++;
    }
    if (runs === 0) return;
    userRuns.push({ clientId, sessions, runs, events });
    perEdge.push(events / (2 * sessions));
  });
  return {
    anonymousWithPresence: {
      n: anon.length,
      events: summary(anon.map((c) => c.events)),
      transitions: summary(anon.map((c) => c.transitions)),
    },
    withUser: {
      n: user.length,
      events: summary(user.map((c) => c.events)),
      transitions: summary(user.map((c) => c.transitions)),
    },
    userWorkflow: { eventsPerEdge: summary(perEdge), users: userRuns },
  };
}

function costFigures(c: Awaited<ReturnType<typeof lifecycleCosts>>): Figure[] {
  const a = c.anonymousWithPresence;
  const u = c.withUser;
  const how =
    'median of a sample read with describe() (historyLength, stateTransitionCount); connect, 2 pongs, close, soft + hard destroy';
  return [
    {
      key: 'churn.events_per_lifecycle',
      label: 'history events per lifecycle (anonymous, presence)',
      value: a.n ? round(a.events.p50, 0) : null,
      unit: 'events',
      note: `${how}; n = ${a.n}`,
    },
    {
      key: 'churn.transitions_per_lifecycle',
      label: 'state transitions per lifecycle (anonymous, presence)',
      value: a.n ? round(a.transitions.p50, 0) : null,
      unit: 'transitions',
      note: `n = ${a.n}; max ${round(a.transitions.max, 0)}`,
    },
    {
      key: 'churn.events_per_lifecycle_user',
      label: 'history events per lifecycle (with a user)',
      value: u.n ? round(u.events.p50, 0) : null,
      unit: 'events',
      note: `session workflow only; n = ${u.n}`,
    },
    {
      key: 'churn.transitions_per_lifecycle_user',
      label: 'state transitions per lifecycle (with a user)',
      value: u.n ? round(u.transitions.p50, 0) : null,
      unit: 'transitions',
      note: `session workflow only; n = ${u.n}`,
    },
    {
      key: 'churn.user_events_per_edge',
      label: 'user workflow events per edge',
      value: c.userWorkflow.users.length ? round(c.userWorkflow.eventsPerEdge.p50, 1) : null,
      unit: 'events',
      note: `all runs of a user's workflow ÷ its edges (an up per connect, a down per soft destroy); median of ${c.userWorkflow.users.length} users`,
    },
  ];
}
