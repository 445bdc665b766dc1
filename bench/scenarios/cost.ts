/**
 * cost: history events per session connected for an hour at WS_IDLE_TIMEOUT_MS=30000, then close
 * and destroy, read from the real workflow histories (every continue-as-new run of a session), and
 * the gateway lease's own events per gateway-hour.
 *
 * Time is compressed only where every interval scales with it: WS_IDLE_TIMEOUT_MS=1500 stands for
 * 30 000 (×20), and SessionClient derives all of its timing from it (heartbeat forward interval
 * 30 × idle, liveness 3 × that, a lease renewal every idle, lapse 4 × idle, marker TTL 3 × idle),
 * so an hour is 120 idle periods = 3 minutes. Only the fixed 5 s soft destroy does not scale; 1500
 * keeps the hard destroy (6 s) after it, as at 30 s idle (1000 would not), and it changes no count.
 * The quick run stays connected 64 idle periods and scales the connected part to an hour.
 */
import type { Client } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { sessionWorkflowId } from '../../src/client';
import { gatewayWorkflowId } from '../../src/contracts/gateway';
import { userWorkflowId } from '../../src/contracts/user';
import type { BenchContext, Figure, Scenario, ScenarioResult } from '../lib/context';
import { sleep } from '../../harness/sleep';
import { PongFeeder } from '../lib/pongs';
import { SessionRun } from '../lib/session-run';
import { median, round } from '../lib/stats';
import type { SimConnection, TraceEvent } from '../lib/trace';

interface CostConfig {
  idleTimeoutMs: number;
  /** Idle periods each session stays connected (120 at 30 s = one hour). */
  idlePeriods: number;
  anonymous: number;
  authenticated: number;
  gateways: number;
}

/** The production idle period the compressed run stands for. */
const REAL_IDLE_MS = 30_000;
const FULL: CostConfig = { idleTimeoutMs: 1500, idlePeriods: 120, anonymous: 8, authenticated: 8, gateways: 2 };
const QUICK: CostConfig = { idleTimeoutMs: 1500, idlePeriods: 64, anonymous: 2, authenticated: 2, gateways: 1 };

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
  /** Start and first connect: up to the end of the first workflow task's commands. */
  start: number;
  /** After that, up to the `disconnected` signal: what grows with the time connected. */
  connected: number;
  /** From the disconnected signal to completion (close, soft and hard destroy). */
  closeAndDestroy: number;
  runs: number;
  /** Heartbeat signals received while connected. */
  heartbeats: number;
}

/** An event a workflow task's completion writes (a command), not one the server adds. */
function isCommand(e: HistoryEvent): boolean {
  return Boolean(
    e.markerRecordedEventAttributes ||
    e.timerStartedEventAttributes ||
    e.upsertWorkflowSearchAttributesEventAttributes ||
    e.workflowPropertiesModifiedEventAttributes ||
    e.activityTaskScheduledEventAttributes ||
    e.signalExternalWorkflowExecutionInitiatedEventAttributes ||
    e.startChildWorkflowExecutionInitiatedEventAttributes,
  );
}

function countEvents(runs: HistoryEvent[][]): EventCount {
  const all = runs.flat();
  const signalled = (e: HistoryEvent, name: string) => e.workflowExecutionSignaledEventAttributes?.signalName === name;
  const close = all.findIndex((e) => signalled(e, 'disconnected'));
  const end = close < 0 ? all.length : close;
  let start = all.findIndex((e) => e.workflowTaskCompletedEventAttributes) + 1;
  while (start > 0 && start < end && isCommand(all[start]!)) start++;
  start = Math.min(Math.max(start, 0), end);
  return {
    total: all.length,
    start,
    connected: end - start,
    closeAndDestroy: all.length - end,
    runs: runs.length,
    heartbeats: all.slice(0, end).filter((e) => signalled(e, 'heartbeat')).length,
  };
}

export const cost: Scenario = {
  name: 'cost',
  description: 'history events per connected session-hour and per gateway lease-hour (30 s idle, time compressed)',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    const cfg = ctx.quick ? QUICK : FULL;
    const idle = cfg.idleTimeoutMs;
    const speedup = REAL_IDLE_MS / idle;
    const started = Date.now();
    const simulatedMinutes = (cfg.idlePeriods * REAL_IDLE_MS) / 60_000;
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
    const plannedMs = (cfg.idlePeriods + 1.5) * idle + 4 * idle + 15_000;
    const progress = (text: string) => ctx.progress.update((Date.now() - started) / plannedMs, text);
    const pongs = new PongFeeder(run.driver, idle);
    try {
      const t0 = Date.now() + 200;
      const events: TraceEvent[] = [];
      const anonymous: SimConnection[] = [];
      const authenticated: SimConnection[] = [];
      const openAt = new Map<SimConnection, number>();
      const n = cfg.anonymous + cfg.authenticated;
      for (let i = 0; i < n; i++) {
        const conn = run.connection(i % cfg.gateways);
        const user = i >= cfg.anonymous ? run.users[i - cfg.anonymous] : undefined;
        if (user) {
          conn.session = { ...conn.session, uid: user.clientId, clientId: user.clientId, user };
          authenticated.push(conn);
        } else anonymous.push(conn);
        // Staggered over one idle period; a pong every idle period (coalesced by SessionClient: the
        // heartbeats come from its tick, every forward interval); closed after `idlePeriods`.
        const open = run.gen.open(conn, t0 + (i * idle) / n);
        openAt.set(conn, open.at);
        events.push(open, run.gen.close(conn, open.socketId, open.at + cfg.idlePeriods * idle + idle / 2));
        pongs.start(conn, open.socketId, open.at);
      }
      run.driver.add(events);
      const closedBy = t0 + idle + (cfg.idlePeriods + 0.5) * idle;
      while (Date.now() < closedBy) {
        progress(
          `${Math.min(cfg.idlePeriods, Math.floor((Date.now() - t0) / idle))}/${cfg.idlePeriods} idle periods (${round(simulatedMinutes, 0)} min at 30 s)`,
        );
        await sleep(500);
      }
      pongs.close();
      const leaseFrom = t0;
      const gatewayIds = run.target.gatewayIds;
      const audit = await run.finish({
        closeSpreadMs: 0,
        timeoutMs: 4 * idle + 120_000,
        onProgress: (d, t) => progress(`waiting for destroys: ${d}/${t}`),
      });
      const leaseTo = Date.now();

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
      const gateways = await Promise.all(
        gatewayIds.map(async (id) => {
          const chain = await historyChain(client, gatewayWorkflowId(id));
          const all = chain.flat();
          const renewals = all.filter(
            (e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'renewLease',
          ).length;
          return { gatewayId: id, events: all.length, runs: chain.length, renewals };
        }),
      );
      // Connected for idlePeriods × idle (+ half an idle before the close): that many real hours.
      const connectedHours = ((cfg.idlePeriods + 0.5) * REAL_IDLE_MS) / 3_600_000;
      const perHour = (c: EventCount) => c.connected / connectedHours;
      const leaseHours = ((leaseTo - leaseFrom) * speedup) / 3_600_000;
      const leasePerHour = median(gateways.map((g) => g.events / leaseHours));
      const perRenewal = median(gateways.map((g) => g.events / Math.max(1, g.renewals)));
      const timing =
        `WS_IDLE_TIMEOUT_MS=${idle} standing for 30 000 (×${speedup}): the forward interval (30 × idle), liveness ` +
        `(3 × forward), lease renewal (every idle), lapse (4 × idle), marker TTL (3 × idle) and pongs all scale`;
      const figures: Figure[] = [
        {
          key: 'cost.events_per_session_hour',
          label: 'history events per connected session-hour (anonymous)',
          value: round(median(anon.map(perHour)), 1),
          unit: 'events',
          note: `median of ${anon.length}; session workflow chain from the first connect's task to the close, ${round(simulatedMinutes, 0)} min connected${connectedHours < 0.99 ? ', scaled to 1 h' : ''}; ${timing}`,
        },
        {
          key: 'cost.events_start',
          label: 'plus start and first connect (once)',
          value: round(median(anon.map((c) => c.start)), 0),
          unit: 'events',
          note: "up to the end of the first workflow task's commands",
        },
        {
          key: 'cost.events_close_destroy',
          label: 'plus close + soft + hard destroy (once)',
          value: round(median(anon.map((c) => c.closeAndDestroy)), 0),
          unit: 'events',
          note: 'from the disconnected signal to completion (the fixed 5 s soft destroy does not scale; counts do not depend on it)',
        },
        {
          key: 'cost.heartbeats_per_session_hour',
          label: 'heartbeat signals per connected session-hour',
          value: round(median(anon.map((c) => c.heartbeats / connectedHours)), 1),
          unit: 'signals',
          note: "sent by SessionClient's tick every forward interval for each held socket; pongs are coalesced",
        },
        {
          key: 'cost.events_per_session_hour_user',
          label: 'history events per connected session-hour (authenticated)',
          value: round(median(auth.map(perHour)), 1),
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
        {
          key: 'cost.lease_events_per_gateway_hour',
          label: 'gateway lease events per gateway-hour',
          value: round(leasePerHour, 0),
          unit: 'events',
          note: `median of ${gateways.length} gateway workflow chain(s), acquire to release (incl. the release's fan-out), per simulated hour; ${round(perRenewal, 1)} events per renewal (one renewal per idle)`,
        },
        {
          key: 'cost.lease_events_per_session_hour_at_1000',
          label: 'lease events per session-hour at 1,000 sessions per gateway',
          value: round(leasePerHour / 1000, 3),
          unit: 'events',
          note: 'gateway-hour ÷ 1000: a renewal refreshes every held marker in one activity, whatever the count (capacity measures it at 5,000 per gateway)',
        },
      ];
      return {
        scenario: 'cost',
        completed: true,
        figures,
        config: { ...cfg, simulatedMinutes, realIdleMs: REAL_IDLE_MS, speedup },
        details: {
          anonymous: anon,
          authenticated: auth,
          userWorkflows: userRuns,
          gateways,
          leaseHours,
          calls: { failed: run.driver.stats.failed, errors: run.driver.stats.errors },
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
