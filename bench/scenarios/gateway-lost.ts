/**
 * gateway-lost: a gateway in a child process (its own SessionClient, autoTick) holds N sessions and
 * is SIGKILLed. Its lease is renewed no more; after 4 × idle the gateway workflow fans `gatewayLost`
 * out to every session it held (src/activities/gateway-effects.ts, FAN_OUT), and each is closed
 * (as of the last renewal), soft- and hard-destroyed. Every one must be closed and fully destroyed,
 * users offline, nothing left.
 *
 * "Closed" = the session's `connections` row of type `disconnect` exists (written by the close
 * effect), polled every 500 ms: the time it was first seen.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { gatewayStateQuery, gatewayWorkflowId } from '../../src/contracts/gateway';
import { FAN_OUT } from '../../src/activities/gateway-effects';
import type { Session } from '../../src/contracts/session';
import type { BenchContext, Figure, Scenario, ScenarioResult } from '../lib/context';
import { missingMarkers } from '../lib/observer';
import { sleep } from '../../harness/sleep';
import { auditFigure, SessionRun } from '../lib/session-run';
import { ROOT } from '../../harness/root';
import { percentile, round, summary } from '../lib/stats';
import { mapLimit } from '../../harness/map-limit';
import { GatewayWrites, type SimConnection } from '../lib/trace';

interface GatewayLostConfig {
  idleTimeoutMs: number;
  sessions: number;
  users: number;
  /** connected() calls in flight in the child. */
  concurrency: number;
  closePollMs: number;
}

const FULL: GatewayLostConfig = {
  idleTimeoutMs: 30_000,
  sessions: 5000,
  users: 200,
  concurrency: 48,
  closePollMs: 500,
};
const QUICK: GatewayLostConfig = { idleTimeoutMs: 5000, sessions: 300, users: 20, concurrency: 32, closePollMs: 500 };

export const gatewayLost: Scenario = {
  name: 'gateway-lost',
  description: 'a gateway process holding thousands of sessions is SIGKILLed: all closed and destroyed in time',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    const cfg = ctx.quick ? QUICK : FULL;
    const idle = cfg.idleTimeoutMs;
    const started = Date.now();
    const run = await SessionRun.start(ctx, { idleTimeoutMs: idle, users: cfg.users });
    const gatewayId = `bench-${run.taskQueue}-child`;
    const budgetMs = 4 * idle + 10_000;
    const plannedMs = cfg.sessions * 25 + idle * 2 + budgetMs + cfg.sessions * 40 + 4 * idle;
    const progress = (text: string) => ctx.progress.update((Date.now() - started) / plannedMs, text);
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/gateway-process.ts')], {
      cwd: ROOT,
      env: {
        ...process.env,
        BENCH_GATEWAY_CONFIG: JSON.stringify({
          address: ctx.env.address,
          namespace: ctx.env.namespace,
          taskQueue: run.taskQueue,
          idleTimeoutMs: idle,
          gatewayId,
          concurrency: cfg.concurrency,
        }),
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('gateway child did not start within 60 s')), 60_000);
        child.once('message', () => (clearTimeout(t), resolve()));
        child.once('exit', (code) => reject(new Error(`gateway child exited with ${code}`)));
      });
      // ---- the child connects every session (in chunks), the bench writes the gateway's joins
      const conns: SimConnection[] = Array.from({ length: cfg.sessions }, () => run.connection(0));
      const connectMs: number[] = [];
      const t0 = Date.now();
      const CHUNK = 500;
      for (let i = 0; i < conns.length; i += CHUNK) {
        const part = conns.slice(i, i + CHUNK);
        const sessions: Session[] = part.map((c) => c.session);
        const reply = await new Promise<{ ms: number[]; errors: string[]; held: number }>((resolve) => {
          const on = (raw: unknown) => {
            const m = raw as { type: string; id: number; ms: number[]; errors: string[]; held: number };
            if (m.type === 'connected' && m.id === i) {
              child.off('message', on);
              resolve(m);
            }
          };
          child.on('message', on);
          child.send({ type: 'connect', id: i, sessions });
        });
        if (reply.errors.length) throw new Error(`gateway child: ${reply.errors[0]}`);
        connectMs.push(...reply.ms);
        for (const c of part) c.openSocket = c.session.socketId;
        await mapLimit(part, 32, (c) => new GatewayWrites(ctx.redis).join(c));
        progress(`gateway child: ${reply.held}/${cfg.sessions} sessions held`);
      }
      const connectS = (Date.now() - t0) / 1000;
      // One renewal past the last connect, then every marker should be there; a miss is recorded
      // (capacity is the scenario that judges markers) and waited out for up to 4 × idle.
      const cidsAll = conns.map((c) => c.connectionId);
      await sleep(idle + 1000);
      const markerChecks: { afterMs: number; missing: number }[] = [];
      const settledAt = Date.now();
      for (;;) {
        const missing = (await missingMarkers(ctx.redis, cidsAll)).length;
        markerChecks.push({ afterMs: Date.now() - settledAt, missing });
        if (missing === 0 || Date.now() - settledAt > 4 * idle) break;
        progress(`${missing} marker(s) missing before the kill; waiting`);
        await sleep(Math.min(idle, 2000));
      }

      // ---- SIGKILL
      const killAt = Date.now();
      child.kill('SIGKILL');
      await exited;
      for (const c of conns) c.openSocket = null;
      const closedAt = new Map<string, number>();
      const destroyed = conns.map((c) => run.observer.destroyed(c, { timeoutMs: budgetMs + 4 * idle + 600_000 }));
      let destroyedCount = 0;
      for (const d of destroyed) void d.then((s) => (destroyedCount += s ? 1 : 0));
      const cids = conns.map((c) => c.connectionId);
      const deadline = killAt + budgetMs + 600_000;
      while (closedAt.size < conns.length && Date.now() < deadline) {
        const { rows } = await ctx.pg.query<{ connectionId: string }>(
          `SELECT "connectionId" FROM connections
            WHERE "connectionId" = ANY($1::varchar[]) AND "connectionEventType" = 'disconnect'`,
          [cids.filter((c) => !closedAt.has(c))],
        );
        const now = Date.now();
        for (const r of rows) if (!closedAt.has(r.connectionId)) closedAt.set(r.connectionId, now);
        progress(
          `killed ${round((now - killAt) / 1000, 0)} s ago: ${closedAt.size}/${conns.length} closed, ${destroyedCount} destroyed`,
        );
        await sleep(cfg.closePollMs);
      }
      const seen = await Promise.all(destroyed);
      const closes = [...closedAt.values()].map((t) => t - killAt);
      const lastClose = closes.length ? Math.max(...closes) : null;
      const firstClose = closes.length ? Math.min(...closes) : null;
      const notDestroyed = seen.filter((s) => s === null).length;
      const missed = conns.filter((c, i) => !closedAt.has(c.connectionId) || seen[i] === null).length;
      const lastDestroy = Math.max(...seen.map((s) => (s ? s.seenAt - killAt : 0)));
      const gwState = await ctx.env.client.workflow
        .getHandle(gatewayWorkflowId(gatewayId))
        .query(gatewayStateQuery)
        .catch(() => null);
      const fanOutS = lastClose !== null && firstClose !== null ? (lastClose - firstClose) / 1000 : null;

      const audit = await run.finish({ closeSpreadMs: 0, timeoutMs: 60_000 });
      // The lost gateway's workflow: nothing owed, so it completes.
      const gw = await ctx.env.client.workflow
        .getHandle(gatewayWorkflowId(gatewayId))
        .describe()
        .catch(() => null);
      if (gw && gw.status.name !== 'COMPLETED' && gw.status.name !== 'CONTINUED_AS_NEW') {
        audit.problems.push(`workflow ${gatewayWorkflowId(gatewayId)} is ${gw.status.name}`);
        audit.clean = false;
      }
      const figures: Figure[] = [
        {
          key: 'gateway_lost.sessions_missed',
          label: 'sessions not closed and destroyed',
          value: missed,
          unit: 'sessions',
          note: `of ${cfg.sessions} held by the killed gateway process; ${notDestroyed} not seen destroyed`,
        },
        {
          key: 'gateway_lost.all_closed_ms',
          label: 'kill → last session closed',
          value: lastClose,
          unit: 'ms',
          note: `closed = its connections 'disconnect' row seen (poll ${cfg.closePollMs} ms); limit 4 × idle + 10 s = ${budgetMs} ms at WS_IDLE_TIMEOUT_MS=${idle}; first close at ${firstClose} ms`,
        },
        {
          key: 'gateway_lost.fan_out_per_s',
          label: 'closes/s during the fan-out',
          value: fanOutS ? round(closes.length / fanOutS, 1) : null,
          unit: 'closes/s',
          note: `first to last close; FAN_OUT ${FAN_OUT.concurrency} in flight, ≤ ${FAN_OUT.perSecond}/s`,
        },
        {
          key: 'gateway_lost.all_destroyed_ms',
          label: 'kill → last session destroyed',
          value: lastDestroy,
          unit: 'ms',
          note: 'every key gone, presence removed, disconnectedAt set (users offline checked by the audit)',
        },
        {
          key: 'gateway_lost.markers_missing_before_kill',
          label: 'markers missing one renewal after the last connect',
          value: markerChecks[0]!.missing,
          unit: 'markers',
          note: `of ${cfg.sessions}; ${markerChecks.at(-1)!.missing} still missing ${round(markerChecks.at(-1)!.afterMs / 1000, 1)} s later (lease refreshes late: see the JSON)`,
        },
        auditFigure('gateway_lost.sessions_created', audit),
      ];
      return {
        scenario: 'gateway-lost',
        completed: true,
        figures,
        config: { ...cfg, gatewayId, fanOut: FAN_OUT },
        details: {
          connectSeconds: round(connectS, 1),
          connectMs: summary(connectMs),
          connectP99Ms: round(percentile(connectMs, 99), 0),
          closeMs: summary(closes),
          gatewayState: gwState,
          markerChecks,
        },
        audit,
        durationMs: Date.now() - started,
      };
    } catch (err) {
      child.kill('SIGKILL');
      await run.abort();
      throw err;
    }
  },
};
