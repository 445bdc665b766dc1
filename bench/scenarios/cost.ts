/**
 * cost: history events per session for one hour connected at a pong every 30 s, then close and
 * destroy, read from the real workflow histories (every continue-as-new run of a session).
 *
 * Time is compressed: the idle period is WS_IDLE_TIMEOUT_MS=1500 instead of 30 000 and the pongs
 * come every 1.5 s, so 120 pongs (an hour's worth) take 3 minutes. Every timing of the session
 * scales with idle (pong forwarding, liveness, the timer's tolerance, the hard destroy), except the
 * fixed 5 s soft destroy; 1500 keeps the hard destroy (6 s) after it, as with 30 s idle. The quick
 * run simulates fewer pongs and extrapolates the connected part linearly to an hour.
 */
import type { Client } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { sessionWorkflowId } from '../../src/client';
import { userWorkflowId } from '../../src/workflows/user-messages';
import type { BenchContext, Figure, Scenario, ScenarioResult } from '../lib/context';
import { sleep } from '../lib/observer';
import { SessionRun } from '../lib/session-run';
import { median, round } from '../lib/stats';
import type { SimConnection, TraceEvent } from '../lib/trace';

interface CostConfig {
  idleTimeoutMs: number;
  /** Pongs per session; one pong stands for 30 s of real time. */
  pongs: number;
  anonymous: number;
  authenticated: number;
}

const REAL_PONG_S = 30;
const FULL: CostConfig = { idleTimeoutMs: 1500, pongs: 120, anonymous: 8, authenticated: 8 };
const QUICK: CostConfig = { idleTimeoutMs: 1500, pongs: 16, anonymous: 2, authenticated: 2 };

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** Every run of a workflow chain, oldest first, following continue-as-new back from the latest. */
async function historyChain(client: Client, workflowId: string): Promise<HistoryEvent[][]> {
  const runs: HistoryEvent[][] = [];
  let runId: string | undefined;
  for (let guard = 0; guard < 100; guard++) {
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const events = history.events ?? [];
    runs.unshift(events);
    const previous = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId;
    if (!previous) break;
    runId = previous;
  }
  return runs;
}

interface EventCount {
  total: number;
  /** Start and first connect, up to the first forwarded heartbeat. */
  start: number;
  /** From the first forwarded heartbeat to the close: what grows with the session's length. */
  pongs: number;
  /** From the disconnected signal to completion (soft and hard destroy). */
  closeAndDestroy: number;
  runs: number;
}

function countEvents(runs: HistoryEvent[][]): EventCount {
  const all = runs.flat();
  const signal = (name: string) =>
    all.findIndex((e) => e.workflowExecutionSignaledEventAttributes?.signalName === name);
  const close = signal('disconnected');
  const end = close < 0 ? all.length : close;
  const first = signal('heartbeat');
  const start = first < 0 || first > end ? end : first;
  return { total: all.length, start, pongs: end - start, closeAndDestroy: all.length - end, runs: runs.length };
}

export const cost: Scenario = {
  name: 'cost',
  description: 'history events per session-hour (30 s pongs, close, destroy), from real histories',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    const cfg = ctx.quick ? QUICK : FULL;
    const idle = cfg.idleTimeoutMs;
    const started = Date.now();
    const simulatedMinutes = (cfg.pongs * REAL_PONG_S) / 60;
    // One user per authenticated session: each user workflow covers exactly one online period.
    const run = await SessionRun.start(ctx, {
      idleTimeoutMs: idle,
      users: cfg.authenticated,
      shape: {
        rooms: 10,
        roomsPerConnection: [1, 3],
        presenceShare: 0.5,
        userShare: 0,
        userSubscriptions: [0, 2],
      },
    });
    const plannedMs = (cfg.pongs + 1.5) * idle + 4 * idle + 10_000;
    const progress = (text: string) => ctx.progress.update((Date.now() - started) / plannedMs, text);
    try {
      const t0 = Date.now() + 200;
      const events: TraceEvent[] = [];
      const anonymous: SimConnection[] = [];
      const authenticated: SimConnection[] = [];
      const n = cfg.anonymous + cfg.authenticated;
      for (let i = 0; i < n; i++) {
        const conn = run.connection(i % 2);
        const user = i >= cfg.anonymous ? run.users[i - cfg.anonymous] : undefined;
        if (user) {
          conn.session = { ...conn.session, uid: user.clientId, clientId: user.clientId, user };
          authenticated.push(conn);
        } else anonymous.push(conn);
        // Staggered over one idle period; closed half an idle period after the last pong.
        events.push(...run.gen.lifecycle(conn, t0 + (i * idle) / n, cfg.pongs, idle / 2));
      }
      run.driver.add(events);
      const closedBy = t0 + idle + (cfg.pongs + 0.5) * idle;
      while (Date.now() < closedBy) {
        progress(
          `${Math.min(cfg.pongs, Math.floor((Date.now() - t0) / idle))}/${cfg.pongs} pongs (${round(simulatedMinutes, 0)} min at 30 s)`,
        );
        await sleep(500);
      }
      const audit = await run.finish({
        closeSpreadMs: 0,
        timeoutMs: 4 * idle + 120_000,
        onProgress: (d, t) => progress(`waiting for destroys: ${d}/${t}`),
      });

      const client = ctx.env.client;
      const perSession = async (conns: SimConnection[]) =>
        Promise.all(conns.map(async (c) => countEvents(await historyChain(client, sessionWorkflowId(c.connectionId)))));
      const anon = await perSession(anonymous);
      const auth = await perSession(authenticated);
      const userRuns = await Promise.all(
        authenticated.map(async (c) =>
          countEvents(await historyChain(client, userWorkflowId(run.appPid, c.session.clientId!))),
        ),
      );
      // The first forwarded pong is the second one (1.5 × idle forwarding); the close comes half an
      // idle period after the last. An hour's session has 120 pongs: its pong part scales with (pongs − 1.5).
      const hourPongs = 3600 / REAL_PONG_S;
      const scale = (hourPongs - 1.5) / (cfg.pongs - 1.5);
      const perHour = (c: EventCount) => c.start + c.pongs * scale + c.closeAndDestroy;
      const extrapolated = cfg.pongs !== hourPongs;
      const how = extrapolated
        ? `pong part of a ${round(simulatedMinutes, 1)} min session scaled ×${round(scale, 2)}, + start + close/destroy`
        : 'whole histories of 1 h sessions (120 pongs)';
      const figures: Figure[] = [
        {
          key: 'cost.events_per_session_hour',
          label: 'history events per session-hour (anonymous)',
          value: round(median(anon.map(perHour)), 0),
          unit: 'events',
          note: `median of ${anon.length}; ${how}; pong every 30 s (idle ${idle} ms compressed)`,
        },
        {
          key: 'cost.events_start',
          label: 'of which start and first connect',
          value: round(median(anon.map((c) => c.start)), 0),
          unit: 'events',
          note: 'up to the first forwarded heartbeat',
        },
        {
          key: 'cost.events_pongs_per_hour',
          label: 'of which pongs, per hour connected',
          value: round(median(anon.map((c) => c.pongs * scale)), 0),
          unit: 'events',
          note: `${cfg.pongs} pongs simulated; SessionClient forwards every other one`,
        },
        {
          key: 'cost.events_close_destroy',
          label: 'of which close + soft + hard destroy',
          value: round(median(anon.map((c) => c.closeAndDestroy)), 0),
          unit: 'events',
          note: 'from the disconnected signal to completion',
        },
        {
          key: 'cost.events_per_session_hour_user',
          label: 'history events per session-hour (authenticated)',
          value: round(median(auth.map(perHour)), 0),
          unit: 'events',
          note: `median of ${auth.length}; session workflow only`,
        },
        {
          key: 'cost.user_workflow_events',
          label: 'user workflow events per online period',
          value: round(median(userRuns.map((c) => c.total)), 0),
          unit: 'events',
          note: 'one user per session here: up, online, down, offline',
        },
        {
          key: 'cost.runs_per_session',
          label: 'workflow runs per session (continue-as-new)',
          value: Math.max(...anon.map((c) => c.runs), ...auth.map((c) => c.runs)),
          unit: 'runs',
          note: 'largest over the sessions',
        },
      ];
      return {
        scenario: 'cost',
        completed: true,
        figures,
        config: { ...cfg, simulatedMinutes, realPongSeconds: REAL_PONG_S },
        details: {
          anonymous: anon,
          authenticated: auth,
          userWorkflows: userRuns,
          calls: { failed: run.driver.stats.failed, errors: run.driver.stats.errors },
        },
        audit,
        durationMs: Date.now() - started,
      };
    } catch (err) {
      await run.abort();
      throw err;
    }
  },
};
