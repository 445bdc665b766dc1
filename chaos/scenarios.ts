import { randomUUID } from 'node:crypto';
import { keys } from '../src/stores/redis/keys';
import { ConnectionOwnershipError, HeartbeatOutcome, InvalidSessionInputError } from '../src/client';
import { count, violate, type ChaosContext, type Scenario, type Tracked } from './context';
import { Conn, SOFT_MS, awaitClosed, describeStatus, gw, newTracked, queryState, type SessionShape } from './driver';
import { verifyLive } from './invariants';
import { sleep } from '../harness/sleep';
import { errorText } from './error-text';

/** The forgetful gateway's heartbeat forward interval: liveness is 3 × this. */
export const SILENT_FORWARD_MS = (idleMs: number) => 2 * idleMs;

/** How often each scenario is drawn for the churn. */
export const CHURN_WEIGHTS: Partial<Record<Scenario, number>> = {
  simple: 30,
  'quick-reconnect': 10,
  'soft-race': 8,
  'hard-race': 8,
  'late-reconnect': 5,
  'double-close': 8,
  'stale-close': 6,
  'late-pong': 5,
  silent: 4,
  invalidate: 4,
  'unknown-app': 3,
  'weird-valid': 6,
  ownership: 3,
};

export function shapeFor(ctx: ChaosContext, scenario: Scenario): SessionShape {
  const { rng } = ctx;
  if (scenario === 'unknown-app') return { appPid: ctx.unknownAppPid };
  const shape: SessionShape = {};
  if (rng.chance(0.35) && ctx.users.length > 0) {
    const u = rng.pick(ctx.users);
    shape.appPid = u.appPid;
    shape.user = u.user;
  }
  if (scenario === 'weird-valid') shape.weird = true;
  return shape;
}

/** Live time before a close: none, a little, or a few pongs. */
function liveFor(ctx: ChaosContext): number {
  return ctx.rng.pick([0, 200, ctx.rng.int(500, 3 * ctx.idleMs)]);
}

/** Wall-clock times of the pending soft and hard destroys, from the workflow when it answers. */
async function deadlines(ctx: ChaosContext, c: Conn, closedAt: number): Promise<{ soft: number; hard: number }> {
  try {
    const st = await queryState(ctx, c.cid, 2_000);
    if (st.status === 'disconnected' && st.softDestroyAt && st.hardDestroyAt) {
      return { soft: Date.parse(st.softDestroyAt), hard: Date.parse(st.hardDestroyAt) };
    }
  } catch {
    // no worker right now: estimate from our own clock (the dev server's clock is ours)
  }
  return { soft: closedAt + SOFT_MS, hard: closedAt + 4 * ctx.idleMs };
}

const until = (at: number) => sleep(at - Date.now());

/**
 * A reconnect sent before the soft destroy can still land after it when a fault holds the call
 * (the Temporal server down: the client retries until it is back). The workflow's deadlines count
 * from when it took the close, no earlier than `sinceClose` ago; a signal accepted before a
 * deadline always wins over it. One accepted later could not have been seen in time: the session
 * is then rightly destroyed (or its presence removed) and lives on as a new one.
 */
function heldReconnect(ctx: ChaosContext, t: Tracked, sinceClose: number, hardMs: number): void {
  const pastSoft = sinceClose >= SOFT_MS && !t.mayHaveLostPresence;
  const pastHard = sinceClose >= hardMs && !t.mayHaveBeenDestroyed;
  if (!pastSoft && !pastHard) return;
  if (pastSoft) t.mayHaveLostPresence = true;
  if (pastHard) t.mayHaveBeenDestroyed = true;
  t.notes.push(`reconnect accepted ${sinceClose} ms after the close was sent`);
  count(ctx, `held-reconnect:${sinceClose >= hardMs ? 'past-hard' : 'past-soft'}`);
}

export async function runScenario(ctx: ChaosContext, scenario: Scenario, t?: Tracked): Promise<Tracked> {
  t ??= newTracked(ctx, scenario, shapeFor(ctx, scenario));
  const c = new Conn(ctx, t);
  const { rng, idleMs } = ctx;
  const hardMs = 4 * idleMs;
  count(ctx, `scenario:${scenario}`);
  try {
    switch (scenario) {
      case 'simple':
      case 'probe': {
        await c.open();
        await sleep(liveFor(ctx));
        await c.close();
        break;
      }
      case 'weird-valid': {
        // Unicode everywhere the contract allows free text; one in four carries a NUL in keyId,
        // which JSON, Redis and the client accept and Postgres text columns cannot store.
        if (rng.chance(0.25)) {
          t.session = { ...t.session, keyId: `key\u0000${t.n}` };
          t.notes.push('keyId with NUL');
        }
        try {
          await c.open();
        } catch (err) {
          if (err instanceof InvalidSessionInputError) {
            t.expect = 'rejected';
            t.notes.push(`refused by the client: ${err.field}`);
            count(ctx, 'weird:refused-by-client');
            break;
          }
          throw err;
        }
        // Postgres cannot store a NUL: the session must be rejected cleanly, not retried forever.
        if (t.session.keyId.includes('\u0000')) t.expect = 'rejected';
        await sleep(liveFor(ctx));
        await c.close();
        break;
      }
      case 'quick-reconnect': {
        await c.open();
        await sleep(liveFor(ctx));
        const closing = Date.now();
        await c.close({ final: false });
        const closedAt = Date.now();
        await sleep(rng.int(100, SOFT_MS - 500));
        await c.reconnect();
        heldReconnect(ctx, t, c.connectedAt - closing, hardMs);
        // Past the old hard deadline: both destroys must have been cancelled.
        await until(closedAt + hardMs + 1_000);
        await verifyLive(ctx, t, 'reconnect before the soft destroy');
        await c.close();
        break;
      }
      case 'soft-race':
      case 'hard-race': {
        await c.open();
        await sleep(rng.pick([0, rng.int(200, idleMs)]));
        const closing = Date.now();
        await c.close({ final: false });
        const closedAt = Date.now();
        const { soft, hard } = await deadlines(ctx, c, closedAt);
        const target = (scenario === 'soft-race' ? soft : hard) + rng.int(-20, 20);
        t.notes.push(
          `reconnect at ${scenario === 'soft-race' ? 'soft' : 'hard'} ${target - (scenario === 'soft-race' ? soft : hard)} ms`,
        );
        await until(target);
        // At the deadline either side may win: a soft destroy that ran first has removed presence,
        // a hard destroy that ran first has purged what the gateway wrote (the session then lives
        // on as a new one). What must hold either way: live, on the new socket, nothing half-done.
        t.mayHaveLostPresence = true;
        if (scenario === 'hard-race') t.mayHaveBeenDestroyed = true;
        await c.reconnect();
        heldReconnect(ctx, t, c.connectedAt - closing, hardMs);
        await until(Math.max(hard, Date.now()) + 1_500);
        await verifyLive(ctx, t, `reconnect racing the ${scenario === 'soft-race' ? 'soft' : 'hard'} destroy`);
        await c.close();
        break;
      }
      case 'late-reconnect': {
        await c.open();
        await sleep(liveFor(ctx));
        await c.close();
        if (!(await awaitClosed(ctx, c.cid, 120_000))) throw new Error('first run never closed');
        await sleep(rng.int(0, 1_000));
        t.mayHaveBeenDestroyed = true;
        await c.reconnect();
        await sleep(1_000);
        await verifyLive(ctx, t, 'reconnect after the destroy (new run)');
        await c.close();
        break;
      }
      case 'double-close': {
        await c.open();
        await sleep(liveFor(ctx));
        await c.stopPongs();
        // Two closes for one socket at once, then a third one later.
        await Promise.all([c.close(), c.close()]);
        await sleep(rng.int(100, 3_000));
        await c.close();
        break;
      }
      case 'stale-close': {
        await c.open();
        const old = t.session.socketId;
        await sleep(rng.int(0, idleMs));
        await c.reconnect();
        await c.close({ final: false, socketId: old });
        t.connected = true;
        c.startPongs();
        await sleep(rng.int(500, 2_000));
        await verifyLive(ctx, t, 'close of the old socket after a reconnect');
        await c.close();
        break;
      }
      case 'late-pong': {
        await c.open();
        await sleep(liveFor(ctx));
        await c.close();
        // A pong right behind the close, and one after the destroy.
        const early = await gw(ctx, 'heartbeat', () => ctx.sessions.heartbeat(c.cid));
        count(ctx, `late-pong:${early}`);
        if (!(await awaitClosed(ctx, c.cid, 120_000))) throw new Error('run never closed');
        const before = await describeStatus(ctx, c.cid);
        const late = await gw(ctx, 'heartbeat', () => ctx.sessions.heartbeat(c.cid));
        count(ctx, `late-pong:${late}`);
        count(ctx, 'checked:late-signals-harmless');
        if (late !== HeartbeatOutcome.unknownSession)
          violate(ctx, 'late-signals-harmless', c.cid, `pong after destroy answered ${late}`);
        await sleep(500);
        const after = await describeStatus(ctx, c.cid);
        if (after?.runId !== before?.runId || after?.status === 'RUNNING')
          violate(
            ctx,
            'late-signals-harmless',
            c.cid,
            `pong after destroy resurrected the session: ${JSON.stringify(after)}`,
          );
        if (await ctx.redis.exists(keys.active(c.cid)))
          violate(ctx, 'late-signals-harmless', c.cid, 'pong after destroy wrote an active marker');
        break;
      }
      case 'silent': {
        // A socket its gateway forgot (a close that never went out): the gateway lives and renews
        // its lease, but sends no heartbeat for it. Liveness (3 × that gateway's forward interval)
        // closes it at its last sign of life. (A socket a gateway still holds gets a heartbeat every
        // forward interval whether it pongs or not, so it never expires: contract §7.8.)
        t.via = ctx.forgetful.client;
        await c.open({ pong: false });
        t.destroyDueAt = Date.now() + 3 * SILENT_FORWARD_MS(idleMs) + hardMs;
        break;
      }
      case 'invalidate': {
        await c.open();
        await sleep(liveFor(ctx));
        await c.stopPongs();
        await gw(ctx, 'invalidate', () => ctx.sessions.invalidate(c.cid, 'chaos: operator invalidated'));
        t.destroyDueAt = Date.now();
        await sleep(rng.int(0, 500));
        await c.close({ final: false });
        break;
      }
      case 'unknown-app': {
        await c.open({ pong: false });
        t.destroyDueAt = Date.now();
        await sleep(rng.int(0, 1_000));
        await c.close({ final: false });
        break;
      }
      case 'ownership': {
        await c.open();
        count(ctx, 'checked:ownership-enforced');
        // Same connectionId, another uid: refused while the session is live.
        try {
          await gw(ctx, 'connected', () =>
            ctx.sessions.connected({ ...t.session, uid: `intruder-${t.n}`, socketId: randomUUID() }),
          );
          violate(ctx, 'ownership-enforced', c.cid, 'a live connectionId was taken over by another uid');
        } catch (err) {
          if (err instanceof ConnectionOwnershipError && err.field === 'uid') count(ctx, 'ownership:refused');
          else violate(ctx, 'ownership-enforced', c.cid, `unexpected error: ${errorText(err)}`);
        }
        // Same connectionId claimed under another app: refused by validation before Temporal.
        const other = ctx.apps.find((a) => a.appPid !== t.session.appPid) ?? { appPid: ctx.unknownAppPid };
        try {
          await ctx.sessions.connected({ ...t.session, appPid: other.appPid, socketId: randomUUID() });
          violate(ctx, 'ownership-enforced', c.cid, 'a connectionId of another app was accepted');
        } catch (err) {
          if (err instanceof InvalidSessionInputError && err.field === 'session.connectionId')
            count(ctx, 'ownership:other-app-refused');
          else violate(ctx, 'ownership-enforced', c.cid, `unexpected error for another app: ${errorText(err)}`);
        }
        await verifyLive(ctx, t, 'after refused takeovers');
        await c.close();
        break;
      }
      case 'long-lived': {
        await c.open();
        break; // the harness checks and closes it at the end
      }
    }
    count(ctx, 'checked:scenario-completed');
  } catch (err) {
    count(ctx, 'checked:scenario-completed');
    t.error = errorText(err);
    violate(ctx, 'scenario-completed', t.session.connectionId, `${scenario}: ${t.error}`);
    await c.stopPongs();
  } finally {
    t.finishedAt = Date.now();
  }
  if (scenario === 'long-lived') longLived.set(t, c);
  return t;
}

/** Open connections of long-lived sessions, closed by the harness at the end. */
export const longLived = new Map<Tracked, Conn>();
