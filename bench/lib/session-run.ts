/**
 * One scenario's population against tether: an app and users seeded in Postgres, a worker child,
 * the trace generator, the target, the driver and the observer; `finish` closes what is still
 * open, waits for every destroy and audits that nothing is left behind.
 */
import { randomBytes } from 'node:crypto';
import { randomId } from '../../harness/random-id';
import { seedApp, seedUsers } from '../../harness/seed';
import { sleep } from '../../harness/sleep';
import type { WorkerChild } from '../../harness/worker-child';
import { WorkflowNotFoundError } from '@temporalio/client';
import { sessionWorkflowId, type SessionClientOptions } from '../../src/client';
import type { SessionUser } from '../../src/contracts/session';
import type { Audit, BenchContext, Figure } from './context';
import { Driver, type DriverHooks, type DriverStats } from './driver';
import { auditClean, Observer } from './observer';
import { startWorker } from './stack';
import { summary } from './stats';
import { TetherTarget } from './target';
import { DEFAULT_SHAPE, GatewayWrites, TraceGenerator, type SimConnection, type TraceShape } from './trace';

/** The figure every session scenario ends with: the sessions it created, and what its audit found. */
export function auditFigure(key: string, audit: Audit): Figure {
  return {
    key,
    label: 'sessions created / left unclean',
    value: audit.sessions,
    unit: 'sessions',
    note: audit.clean ? 'all destroyed and clean' : `${audit.problems.length} problem(s): ${audit.problems[0]}`,
  };
}

/** What the gateway's calls cost during a scenario, for its JSON details. */
export function callDetails(stats: DriverStats) {
  return {
    dispatched: stats.dispatched,
    failed: stats.failed,
    unknownSessions: stats.unknownSessions,
    skippedPongs: stats.skippedPongs,
    errors: stats.errors,
    dispatchLagMs: summary(stats.dispatchLagMs),
    openMs: summary(stats.callMs.open),
    pongMs: summary(stats.callMs.pong),
    closeMs: summary(stats.callMs.close),
  };
}

export interface SessionRunOptions {
  idleTimeoutMs: number;
  users: number;
  shape?: TraceShape;
  maxInFlight?: number;
  /** SessionClient options passed through (e.g. a shorter heartbeat forward interval). */
  client?: Pick<SessionClientOptions, 'heartbeatForwardIntervalMs' | 'maxHistoryEvents' | 'autoTick'>;
}

export class SessionRun {
  readonly conns: SimConnection[] = [];
  private constructor(
    private readonly ctx: BenchContext,
    readonly appPid: string,
    readonly users: SessionUser[],
    readonly gen: TraceGenerator,
    readonly target: TetherTarget,
    readonly driver: Driver,
    readonly observer: Observer,
    readonly worker: WorkerChild,
    readonly idleTimeoutMs: number,
    readonly taskQueue: string,
    /** Set by the scenario (`run.hooks.done = …`); called for every finished call. */
    readonly hooks: DriverHooks,
  ) {}

  static async start(ctx: BenchContext, opts: SessionRunOptions): Promise<SessionRun> {
    const taskQueue = `bench-${randomBytes(4).toString('hex')}`;
    const { appPid } = await seedApp(ctx.pg, 'tether bench');
    const clientIds = Array.from({ length: opts.users }, () => `bench-${randomId(10)}`);
    const users: SessionUser[] = await seedUsers(ctx.pg, clientIds, { usernamePrefix: 'bench-user-' });
    const worker = await startWorker(ctx, { kind: 'session', taskQueue, idleTimeoutMs: opts.idleTimeoutMs });
    const gen = new TraceGenerator(appPid, opts.idleTimeoutMs, users, opts.shape ?? DEFAULT_SHAPE, ctx.seed);
    // One SessionClient per simulated gateway (trace gateway k: gatewayId bench-<queue>-k).
    const target = new TetherTarget(ctx.env.client, {
      ...opts.client,
      taskQueue,
      idleTimeoutMs: opts.idleTimeoutMs,
      gatewayPrefix: `bench-${taskQueue}`,
    });
    const observer = new Observer(ctx.redis, ctx.pg);
    // The driver calls whatever hooks the scenario sets on the run later.
    const hooks: DriverHooks = {};
    const driver = new Driver(
      target,
      new GatewayWrites(ctx.redis),
      {
        done: (...args) => hooks.done?.(...args),
        failed: (...args) => hooks.failed?.(...args),
      },
      opts.maxInFlight,
    );
    return new SessionRun(
      ctx,
      appPid,
      users,
      gen,
      target,
      driver,
      observer,
      worker,
      opts.idleTimeoutMs,
      taskQueue,
      hooks,
    );
  }

  connection(gateway: number): SimConnection {
    const conn = this.gen.connection(gateway);
    this.conns.push(conn);
    return conn;
  }

  /** Hard destroy is due this long after a close (spec §3). */
  get destroyDelayMs(): number {
    return 4 * this.idleTimeoutMs;
  }

  /**
   * Of these connections (an open of each failed), those that left no session workflow: the server
   * refused the call. They are dropped from the run (its teardown would wait for a destroy that
   * cannot come); one whose failed call did start its workflow stays, and is torn down and audited.
   */
  async dropRefused(failed: Iterable<SimConnection>): Promise<SimConnection[]> {
    const refused: SimConnection[] = [];
    for (const conn of failed) {
      try {
        await this.ctx.env.client.workflow.getHandle(sessionWorkflowId(conn.connectionId)).describe();
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) throw err;
        refused.push(conn);
      }
    }
    const drop = new Set(refused);
    this.conns.splice(0, this.conns.length, ...this.conns.filter((c) => !drop.has(c)));
    return refused;
  }

  /** `finish` for a run that kept its sockets open: they close 20 ms apart (20 s at most). */
  teardown(progress: (line: string) => void): Promise<Audit> {
    const open = this.conns.filter((c) => c.openSocket !== null).length;
    return this.finish({
      closeSpreadMs: Math.min(open * 20, 20_000),
      timeoutMs: this.destroyDelayMs + 180_000,
      onProgress: (d, t) => progress(`teardown: ${d}/${t} destroyed`),
    });
  }

  /**
   * Drops what is still scheduled, closes every open socket (spread over `closeSpreadMs`), waits
   * until every session's destroy is visible, audits Redis/Postgres and the workflows, stops the
   * worker. `onProgress(destroyed, total)` while waiting. `closeBy: 'release'`: no close is
   * reported, the gateways just release their leases (a shutdown that drops its sockets), and each
   * gateway's fan-out closes what it held.
   */
  async finish(opts: {
    closeSpreadMs: number;
    closeBy?: 'socket' | 'release';
    timeoutMs: number;
    onProgress?: (destroyed: number, total: number) => void;
  }): Promise<Audit> {
    const { driver, observer } = this;
    try {
      driver.clear();
      await driver.drained();
      const start = Date.now() + 100;
      const open = this.conns.filter((c) => c.openSocket !== null);
      if (opts.closeBy === 'release') for (const c of open) c.openSocket = null;
      else
        driver.add(
          open.map((conn, i) =>
            this.gen.close(conn, conn.openSocket!, start + (opts.closeSpreadMs * i) / Math.max(1, open.length)),
          ),
        );
      await driver.drained();
      // The gateways shut down cleanly once their closes went out: every lease released.
      await this.target.close();
      let destroyed = 0;
      const seen = await Promise.all(
        this.conns.map(async (conn) => {
          const seen = await observer.destroyed(conn, { timeoutMs: opts.timeoutMs });
          destroyed += seen === null ? 0 : 1;
          opts.onProgress?.(destroyed, this.conns.length);
          return seen;
        }),
      );
      const notDestroyed = this.conns.filter((_, i) => seen[i] === null);
      // Users go offline through their own workflow after the last soft destroy: give it a moment.
      let problems: string[] = [];
      for (let attempt = 0; attempt < 30; attempt++) {
        problems = [
          ...(notDestroyed.length
            ? [`${notDestroyed.length} session(s) not seen destroyed, e.g. ${notDestroyed[0]!.connectionId}`]
            : []),
          ...(await auditClean(this.ctx.redis, this.ctx.pg, this.appPid, this.conns, this.users)),
          ...(await this.target.leftovers(
            this.conns.map((c) => c.connectionId),
            this.users.map((u) => ({ appPid: this.appPid, clientId: u.clientId })),
          )),
        ];
        if (problems.length === 0 || notDestroyed.length) break;
        await sleep(1000);
      }
      return {
        sessions: this.conns.length,
        destroyed: this.conns.length - notDestroyed.length,
        clean: problems.length === 0,
        problems,
      };
    } finally {
      await observer.close();
      await this.worker.stop();
    }
  }

  /** Stops everything without waiting for destroys (after a failure). */
  async abort(): Promise<void> {
    this.driver.stop();
    await this.target.close().catch(() => undefined);
    await this.observer.close();
    await this.worker.stop();
  }
}
