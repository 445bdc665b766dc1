import { randomUUID } from 'node:crypto';
import { WorkflowNotFoundError } from '@temporalio/client';
import { keys } from '../src/stores/redis/keys';
import {
  ConnectionOwnershipError,
  HeartbeatOutcome,
  InvalidSessionInputError,
  type SessionClient,
} from '../src/client';
import type { Session, SessionUser, SessionView } from '../src/contracts/session';
import { sessionWorkflowId, stateQuery } from '../src/contracts/session';
import { count, violate, type ChaosContext, type Scenario, type Tracked } from './context';
import { sessionTrace } from './trace';
import { randomId } from '../harness/random-id';
import { sleep } from '../harness/sleep';
import { errorText } from './error-text';

export const SOFT_MS = 5_000;

/** Gives up on a gateway call after this long of transient failures (a restart is seconds). */
const CALL_DEADLINE_MS = 120_000;

export class ScenarioError extends Error {}

function isTyped(err: unknown): boolean {
  return err instanceof InvalidSessionInputError || err instanceof ConnectionOwnershipError;
}

/** A gateway call, retried through outages (the gateway keeps the socket; the call must land). */
export async function gw<T>(ctx: ChaosContext, what: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + CALL_DEADLINE_MS;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (isTyped(err) || Date.now() > deadline || ctx.signal.aborted) throw err;
      count(ctx, `retried:${what}`);
      await sleep(Math.min(2_000, 100 * 2 ** attempt));
    }
  }
}

/** Workflow description from the server (no worker needed); null when there is none. */
export async function describeStatus(
  ctx: ChaosContext,
  connectionId: string,
): Promise<{ status: string; runId: string; pendingActivities: number } | null> {
  // Retried through a Temporal restart (the fault): the question is about the session, not the server.
  const giveUpAt = Date.now() + 30_000;
  for (;;) {
    try {
      const d = await ctx.connection.withDeadline(Date.now() + 5_000, () =>
        ctx.temporal.workflow.getHandle(sessionWorkflowId(connectionId)).describe(),
      );
      return { status: d.status.name, runId: d.runId, pendingActivities: d.raw.pendingActivities?.length ?? 0 };
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return null;
      if (Date.now() > giveUpAt || ctx.signal.aborted) throw err;
      await sleep(500);
    }
  }
}

export async function queryState(ctx: ChaosContext, connectionId: string, timeoutMs = 5_000): Promise<SessionView> {
  return ctx.connection.withDeadline(Date.now() + timeoutMs, () =>
    ctx.temporal.workflow.getHandle(sessionWorkflowId(connectionId)).query(stateQuery),
  );
}

/** Polls (through outages) until the session's workflow run has closed; returns false on timeout. */
export async function awaitClosed(ctx: ChaosContext, connectionId: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !ctx.signal.aborted) {
    try {
      const d = await describeStatus(ctx, connectionId);
      if (d && d.status !== 'RUNNING') return true;
    } catch {
      // server restarting
    }
    await sleep(500);
  }
  return false;
}

/**
 * One websocket connection as the gateway drives it: every call for it runs in order (a pong in
 * flight is finished before the close goes out), pongs every `pongEveryMs` while open.
 */
export class Conn {
  private pongs: { stop: () => void; done: Promise<void> } | undefined;
  /** When the last `connected` call returned: its signal was accepted by then, not necessarily before. */
  connectedAt = 0;

  constructor(
    readonly ctx: ChaosContext,
    readonly t: Tracked,
  ) {}

  get cid(): string {
    return this.t.session.connectionId;
  }

  /** The gateway process (SessionClient) holding the socket: the harness's own unless set on the tracked. */
  get gateway(): SessionClient {
    return this.t.via ?? this.ctx.sessions;
  }

  /** Socket open: `connected`, then the gateway's own writes (rooms, subscriptions, presence). */
  async open(opts: { pong?: boolean; seed?: boolean } = {}): Promise<void> {
    await gw(this.ctx, 'connected', () => this.gateway.connected(this.t.session));
    this.connectedAt = Date.now();
    this.t.connected = true;
    count(this.ctx, 'calls:connected');
    if (opts.seed !== false) await this.seed();
    if (opts.pong !== false) this.startPongs();
  }

  /** A new socket for the same connection (the client resumed with its connectionId). */
  async reconnect(opts: { pong?: boolean; closeOldFirst?: boolean } = {}): Promise<void> {
    await this.stopPongs();
    this.t.session = { ...this.t.session, socketId: randomUUID() };
    this.t.sockets.push(this.t.session.socketId);
    this.t.destroyDueAt = null;
    await this.open({ pong: opts.pong });
  }

  async close(opts: { final?: boolean; socketId?: string } = {}): Promise<boolean> {
    await this.stopPongs();
    this.t.connected = false;
    const socketId = opts.socketId ?? this.t.session.socketId;
    const sent = await gw(this.ctx, 'disconnected', () =>
      this.gateway.disconnected({ connectionId: this.cid, socketId }),
    );
    count(this.ctx, 'calls:disconnected');
    if (opts.final !== false) this.t.destroyDueAt = Date.now() + 4 * this.ctx.idleMs;
    return sent;
  }

  /** Idempotent: HSETs, and an index entry added only when absent. */
  async seed(): Promise<void> {
    const { redis } = this.ctx;
    const cid = this.cid;
    const tx = redis.multi();
    // First, in the same transaction: which presence rooms the connection is not in (a new lifetime).
    for (const room of this.t.presenceRooms) tx.hexists(keys.presenceMembers(room), cid);
    for (const room of this.t.rooms) {
      tx.hset(keys.rooms(cid), room, '1');
      tx.hset(keys.roomSubscriptions(cid, 'subscriptions', room), `sub:${room}:${this.t.n}`, '1');
    }
    for (const room of this.t.presenceRooms) {
      tx.hset(keys.roomSubscriptions(cid, 'presence', room), `presence:${room}`, '1');
      tx.hset(keys.presenceSets(cid), room, '1');
      tx.hset(
        keys.presenceMembers(room),
        cid,
        JSON.stringify({
          clientId: this.t.session.clientId ?? null,
          connectionId: cid,
          user: this.t.session.user ?? null,
        }),
      );
      tx.lrem(keys.presenceIndex(room), 0, cid);
      tx.rpush(keys.presenceIndex(room), cid);
    }
    for (const target of this.t.userTargets) {
      tx.hset(keys.users(cid), target, '1');
      tx.hset(keys.userSubscriptions(cid, target), `user:${target}`, '1');
    }
    // The harness's Redis client waits out an outage (offline queue): the gateway would too.
    const res = await tx.exec();
    this.t.presenceRooms.forEach((room, i) => {
      const [err, was] = res?.[i] ?? [null, null];
      if (!err && was === 0) this.t.presenceLifetimes[room] = (this.t.presenceLifetimes[room] ?? 0) + 1;
    });
  }

  startPongs(): void {
    if (this.pongs) return;
    let stopped = false;
    let wake: () => void = () => undefined;
    const done = (async () => {
      while (!stopped && !this.ctx.signal.aborted) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.ctx.pongEveryMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        if (stopped) break;
        try {
          const outcome = await gw(this.ctx, 'heartbeat', () => this.gateway.heartbeat(this.cid));
          count(this.ctx, `pong:${outcome}`);
          if (outcome === HeartbeatOutcome.unknownSession && !stopped) {
            // The gateway holds an open, ponging socket and the service forgot it: state was lost.
            violate(
              this.ctx,
              'live-session-kept',
              this.cid,
              `pong answered unknown-session while connected (${this.t.scenario})`,
              await sessionTrace(this.ctx, this.cid),
            );
            this.t.mayHaveBeenDestroyed = true;
            await gw(this.ctx, 'connected', () => this.gateway.connected(this.t.session));
            await this.seed();
          }
        } catch (err) {
          this.t.notes.push(`pong failed: ${errorText(err)}`);
        }
      }
    })();
    this.pongs = {
      stop: () => {
        stopped = true;
        wake();
      },
      done,
    };
  }

  async stopPongs(): Promise<void> {
    const p = this.pongs;
    this.pongs = undefined;
    if (!p) return;
    p.stop();
    await p.done;
  }
}

export interface SessionShape {
  user?: SessionUser;
  appPid?: string;
  weird?: boolean;
}

let counter = 0;

/** A new tracked connection of one of the run's apps (rooms, presence and user subscriptions chosen). */
export function newTracked(ctx: ChaosContext, scenario: Scenario, shape: SessionShape = {}): Tracked {
  const { rng } = ctx;
  const app = shape.appPid
    ? (ctx.apps.find((a) => a.appPid === shape.appPid) ?? { appPid: shape.appPid, appId: '' })
    : rng.pick(ctx.apps);
  const appPid = app.appPid;
  const connectionId = `${appPid}:${randomId(12)}`;
  const user = shape.user;
  const session: Session = {
    uid: user ? user.clientId : connectionId,
    appPid,
    keyId: `key-${randomId(6)}`,
    connectionId,
    socketId: randomUUID(),
    timestamp: new Date().toISOString(),
  };
  if (app.appId) session.appId = app.appId;
  if (user) {
    session.clientId = user.clientId;
    session.user = user;
  }
  if (shape.weird) {
    session.keyId = `🔑-ключ-鍵-${randomId(4)}`;
    if (!user) session.uid = `用户-${randomId(6)}-\u202eRTL`;
    session.timestamp = '２０２６年 — not ISO, but text';
    if (user) {
      session.user = {
        ...user,
        username: `名前 ${user.username ?? ''} 🧪 Ωμέγα \u0000 nul`,
        profile: {
          bio: 'ж'.repeat(rng.int(100, 2_000)),
          tags: ['😀', '\ud83d\ude00', 'é'],
          nested: { deep: [1, { x: null }] },
        },
      };
    }
  }
  const roomCount = rng.int(1, 3);
  const rooms = Array.from(new Set(Array.from({ length: roomCount }, () => `${appPid}:room-${rng.int(0, 9)}`)));
  const presenceRooms = rooms.filter(() => rng.chance(0.7));
  const others = ctx.users.filter((u) => u.appPid === appPid).map((u) => u.user.clientId);
  const userTargets = others.length > 0 && rng.chance(0.4) ? [rng.pick(others)] : [];
  const t: Tracked = {
    n: counter++,
    scenario,
    session,
    sockets: [session.socketId],
    rooms,
    presenceRooms,
    presenceLifetimes: {},
    userTargets,
    expect: scenario === 'unknown-app' ? 'rejected' : scenario === 'long-lived' ? 'live' : 'destroyed',
    connected: false,
    mayHaveBeenDestroyed: false,
    mayHaveLostPresence: false,
    destroyDueAt: null,
    startedAt: Date.now(),
    finishedAt: null,
    error: null,
    notes: [],
  };
  ctx.tracked.push(t);
  return t;
}
