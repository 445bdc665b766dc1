import { WorkflowNotFoundError } from '@temporalio/client';
import { HEARTBEAT_KEY, keys } from '../src/stores/redis/keys';
import { SessionClient } from '../src/client';
import { gatewayStateQuery, gatewayWorkflowId, renewLeaseSignal } from '../src/contracts/gateway';
import { DestroyReason, sessionWorkflowId, type SessionView } from '../src/contracts/session';
import { count, violate, type ChaosContext } from './context';
import { Conn, newTracked } from './driver';
import { verifyLive } from './invariants';
import { shapeFor } from './scenarios';
import { sessionTrace } from './trace';
import { mapLimit } from '../harness/map-limit';
import { sleep } from '../harness/sleep';
import { errorText } from './error-text';

/**
 * Gateway processes the harness runs besides its main one (`ctx.sessions`), each a SessionClient
 * with `autoTick: false` and the harness's own loop, so that it can die without a word (the loop
 * stops, nothing is released) or forget its sockets (the lease is renewed, no heartbeat is sent).
 */
export class HarnessGateway {
  client: SessionClient;
  /** Wall-clock time the last renewal of the current incarnation reached the server. */
  lastRenewalAt = 0;
  private loop: Promise<void> | undefined;
  private stopped = false;
  private wake: () => void = () => undefined;

  constructor(
    private readonly ctx: ChaosContext,
    readonly gatewayId: string,
    private readonly opts: { forgetful: boolean; heartbeatForwardIntervalMs?: number },
  ) {
    this.client = this.newIncarnation();
  }

  private newIncarnation(): SessionClient {
    return new SessionClient(this.ctx.temporal, {
      taskQueue: this.ctx.taskQueue,
      idleTimeoutMs: this.ctx.idleMs,
      gatewayId: this.gatewayId,
      autoTick: false,
      ...(this.opts.heartbeatForwardIntervalMs && { heartbeatForwardIntervalMs: this.opts.heartbeatForwardIntervalMs }),
    });
  }

  /** Every idle period: `tick()` (renew + due heartbeats), or, when forgetful, the renewal alone. */
  start(): void {
    this.loop = (async () => {
      while (!this.stopped && !this.ctx.signal.aborted) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.ctx.idleMs);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        if (this.stopped) break;
        try {
          if (this.opts.forgetful) await this.renewOnly();
          else await this.client.tick();
          this.lastRenewalAt = Date.now();
        } catch {
          // an outage: the next period tries again (as the client's own timer does)
        }
      }
    })();
  }

  /**
   * The renewal a live gateway sends, without the heartbeats its held sockets would get. If the
   * lease was lost meanwhile (a long outage), a new incarnation takes over for the next sessions.
   */
  private async renewOnly(): Promise<void> {
    if (this.client.heldCount === 0 && this.lastRenewalAt === 0) return; // not acquired yet
    const handle = this.ctx.temporal.workflow.getHandle(gatewayWorkflowId(this.gatewayId));
    const gap = Date.now() - this.lastRenewalAt;
    try {
      await handle.signal(renewLeaseSignal, { incarnation: this.client.holder.incarnation });
      if (gap < 2 * this.ctx.idleMs) return;
      const state = await handle.query(gatewayStateQuery);
      if (state.current?.incarnation === this.client.holder.incarnation) return;
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
    count(this.ctx, 'forgetful-gateway:new-incarnation');
    this.client = this.newIncarnation();
  }

  /** SIGKILL, as seen from outside: the loop stops after the tick in flight; nothing is released. */
  async kill(): Promise<number> {
    this.stopped = true;
    this.wake();
    await this.loop;
    return Date.now();
  }

  /** Clean shutdown: stop the loop, release the lease. */
  async close(): Promise<void> {
    await this.kill();
    await this.client.close().catch(() => undefined);
  }
}

/** Sessions held by the gateway the `gateway-kill` fault kills (quick: 16, full: 40). */
export interface GatewayKillResult {
  killedAt: number;
  restoredAt: number;
  lastRenewalAt: number;
  lost: number;
  moved: number;
  /** From the kill to the last lost session's run closed (destroyed), ms; null if one never closed. */
  allDestroyedMs: number | null;
  detail: string;
  /** The reconnected sessions, open on the new incarnation: checked and closed at the end of the run. */
  movedConns: Conn[];
}

/**
 * A lost session must be destroyed within the design's own delays counted from the gateway's last
 * renewal (the lease lapses 4 × idle after it, the hard destroy comes 4 × idle after the close),
 * plus this for the lapse check, the fan-out and the effects.
 */
export const GATEWAY_LOST_SLACK_MS = 10_000;

/**
 * `gateway-kill`: a gateway process holding `n` sessions dies without releasing its lease; a new
 * incarnation of the same gatewayId starts and reconnects some (not all) of its sockets. Every
 * session held only by the dead incarnation must be closed as gateway-lost and fully destroyed
 * within 4 × idle + slack of the kill; every reconnected one stays live with its marker.
 */
export async function gatewayKill(c: ChaosContext, index: number, n: number): Promise<GatewayKillResult> {
  const gatewayId = `chaos-${c.taskQueue}-gw${index}`;
  const victim = new HarnessGateway(c, gatewayId, { forgetful: false });
  victim.start();
  const conns: Conn[] = [];
  for (let i = 0; i < n; i++) {
    const t = newTracked(c, 'gateway-kill', shapeFor(c, 'gateway-kill'));
    t.via = victim.client;
    conns.push(new Conn(c, t));
  }
  await mapLimit(conns, 8, (conn) => conn.open());
  // A few renewals: markers refreshed in batch (no heartbeat signal is due in that time).
  await sleep(2 * c.idleMs + 500, c.signal);
  await mapLimit(conns, 8, (conn) => verifyLive(c, conn.t, 'held by the gateway before its kill', 30_000));

  // The process dies: its sockets with it (no close goes out), its lease is never released.
  await Promise.all(conns.map((conn) => conn.stopPongs()));
  const killedAt = await victim.kill();
  const lastRenewalAt = victim.lastRenewalAt;
  for (const conn of conns) conn.t.connected = false;

  // The restarted process: a new incarnation; some clients reconnect through it (new sockets).
  await sleep(c.rng.int(0, c.idleMs), c.signal);
  const next = new SessionClient(c.temporal, { taskQueue: c.taskQueue, idleTimeoutMs: c.idleMs, gatewayId });
  c.gateways.push(next);
  const shuffled = c.rng.shuffle([...conns]);
  const movedCount = Math.max(1, Math.min(n - 1, Math.round(n * c.rng.float(0.3, 0.6))));
  const moved = shuffled.slice(0, movedCount);
  const lost = shuffled.slice(movedCount);
  for (const conn of lost) {
    conn.t.destroyDueAt = killedAt + 4 * c.idleMs;
    conn.t.notes.push('held by a killed gateway');
  }
  let restoredAt = 0;
  await mapLimit(moved, 8, async (conn) => {
    conn.t.via = next;
    conn.t.notes.push('reconnected through the new incarnation');
    await conn.reconnect();
    restoredAt ||= Date.now();
  });
  restoredAt ||= Date.now();

  const allDestroyedMs = await checkLost(c, lost, killedAt, lastRenewalAt);
  await checkMoved(c, moved, gatewayId, victim.client.holder.incarnation);
  return {
    killedAt,
    restoredAt,
    lastRenewalAt,
    lost: lost.length,
    moved: moved.length,
    allDestroyedMs,
    detail: `gateway ${gatewayId} with ${n} sessions stopped without releasing its lease; a new incarnation reconnected ${moved.length}; ${lost.length} left to the lease`,
    movedConns: moved,
  };
}

/** Every session only the dead incarnation held: destroyed as gateway-lost, in time, with every effect. */
async function checkLost(
  c: ChaosContext,
  lost: Conn[],
  killedAt: number,
  lastRenewalAt: number,
): Promise<number | null> {
  // Not from the kill: a kill just after a renewal leaves the lease its whole 4 × idle to lapse.
  const deadline = lastRenewalAt + 8 * c.idleMs + GATEWAY_LOST_SLACK_MS;
  let lastClosed = 0;
  let allClosed = true;
  await mapLimit(lost, 8, async (conn) => {
    const cid = conn.cid;
    count(c, 'checked:gateway-lost-destroyed');
    const fail = async (detail: string) =>
      violate(c, 'gateway-lost-destroyed', `${cid} (gateway-kill)`, detail, await sessionTrace(c, cid));
    let closedAt: number | null = null;
    while (Date.now() < deadline + 1_000 && !c.signal.aborted) {
      try {
        const d = await c.connection.withDeadline(Date.now() + 5_000, () =>
          c.temporal.workflow.getHandle(sessionWorkflowId(cid)).describe(),
        );
        if (d.status.name !== 'RUNNING') {
          closedAt = d.closeTime?.getTime() ?? Date.now();
          break;
        }
      } catch {
        // server busy
      }
      await sleep(250);
    }
    if (closedAt === null || closedAt > deadline) {
      allClosed = false;
      return fail(
        closedAt === null
          ? `still running ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill (bound ${(deadline - killedAt) / 1000} s: 8 × idle + ${GATEWAY_LOST_SLACK_MS / 1000} s from the last renewal)`
          : `destroyed ${closedAt - killedAt} ms after the kill (bound ${deadline - killedAt} ms)`,
      );
    }
    lastClosed = Math.max(lastClosed, closedAt);
    let view: SessionView;
    try {
      view = (await c.connection.withDeadline(Date.now() + 15_000, () =>
        c.temporal.workflow.getHandle(sessionWorkflowId(cid)).result(),
      )) as SessionView;
    } catch (err) {
      return fail(`no result: ${errorText(err)}`);
    }
    const problems: string[] = [];
    if (view.status !== 'destroyed') problems.push(`ended ${view.status}`);
    if (view.destroyReason !== DestroyReason.gatewayLost) problems.push(`destroy reason ${view.destroyReason}`);
    // As if the socket closed at the last renewal (the workflow's time of it, this process's clock).
    const closed = view.disconnectedAt ? Date.parse(view.disconnectedAt) : NaN;
    if (!(closed >= lastRenewalAt - c.idleMs - 2_000 && closed <= killedAt + 2_000))
      problems.push(
        `closed at ${view.disconnectedAt}, not at the last renewal (${new Date(lastRenewalAt).toISOString()}, kill ${new Date(killedAt).toISOString()})`,
      );
    const t = conn.t;
    const r = c.redis.pipeline();
    r.exists(keys.active(cid));
    r.zscore(HEARTBEAT_KEY, cid);
    r.exists(keys.rooms(cid), keys.presenceSets(cid), keys.users(cid));
    for (const room of t.presenceRooms) r.hexists(keys.presenceMembers(room), cid);
    for (const room of t.presenceRooms) r.lpos(keys.presenceIndex(room), cid);
    const res = (await r.exec())!.map(([err, v]) => (err ? null : v));
    if (res[0] === 1) problems.push('active marker left');
    if (res[1] !== null) problems.push('heartbeat score left');
    if (res[2] !== 0) problems.push('connection keys left (not purged)');
    t.presenceRooms.forEach((room, i) => {
      if (res[3 + i] === 1) problems.push(`presence member of ${room} left`);
      if (res[3 + t.presenceRooms.length + i] !== null) problems.push(`in the presence index of ${room}`);
    });
    const rows = await c.pg.query<{ disconnectedAt: Date | null }>(
      'SELECT "disconnectedAt" FROM sessions WHERE "connectionId" = $1',
      [cid],
    );
    if (rows.rows.length !== 1 || rows.rows[0]!.disconnectedAt === null)
      problems.push('sessions.disconnectedAt not set');
    // Presence leaves and the user's offline edge are read from RabbitMQ at the end (every session).
    if (problems.length) await fail(problems.join('; '));
  });
  return allClosed && lost.length > 0 ? lastClosed - killedAt : null;
}

/** The reconnected sessions: live on the new incarnation, marker there, not touched by the old one's loss. */
async function checkMoved(c: ChaosContext, moved: Conn[], gatewayId: string, deadIncarnation: string): Promise<void> {
  // Until the dead incarnation's fan-out is done (its gatewayLost signals all sent).
  const handle = c.temporal.workflow.getHandle(gatewayWorkflowId(gatewayId));
  const until = Date.now() + 60_000;
  while (Date.now() < until && !c.signal.aborted) {
    try {
      const st = await handle.query(gatewayStateQuery);
      if (st.superseded.includes(deadIncarnation) && !st.owed.some((o) => o.incarnation === deadIncarnation)) break;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) break;
    }
    await sleep(250);
  }
  await mapLimit(moved, 4, async (conn) => {
    // A gatewayLost that reached the session before its reconnect closed it (and may have removed
    // presence): the reconnect then began a new lifetime. One that came after is ignored.
    const order = await signalOrder(c, conn.cid);
    const lastActive = order.lastIndexOf('active');
    const lostAt = order.indexOf('gatewayLost');
    if (order.includes('run-ended') || (lostAt >= 0 && lostAt < lastActive)) {
      conn.t.mayHaveLostPresence = true;
      if (order.includes('run-ended')) conn.t.mayHaveBeenDestroyed = true;
      count(c, 'gateway-kill:lost-before-reconnect');
    } else count(c, 'gateway-kill:moved-untouched');
    await verifyLive(c, conn.t, 'reconnected through the new incarnation', 60_000, 'gateway-moved-kept');
  });
}

/** Signal names of every run of the session, in order ('run-ended' between runs). */
async function signalOrder(c: ChaosContext, cid: string): Promise<string[]> {
  const out: string[] = [];
  try {
    const id = sessionWorkflowId(cid);
    const runs: { runId: string; start: number }[] = [];
    for await (const w of c.temporal.workflow.list({ query: `WorkflowId = '${id}'` }))
      runs.push({ runId: w.runId, start: w.startTime.getTime() });
    runs.sort((a, b) => a.start - b.start);
    for (const [i, run] of runs.entries()) {
      if (i > 0) out.push('run-ended', 'active');
      const h = await c.temporal.workflow.getHandle(id, run.runId).fetchHistory();
      for (const e of h.events ?? []) {
        const name = e.workflowExecutionSignaledEventAttributes?.signalName;
        if (name) out.push(name);
      }
    }
  } catch {
    // unreadable: treated as untouched (the stricter check)
  }
  return out;
}
