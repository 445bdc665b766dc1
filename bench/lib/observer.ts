/**
 * Reads the shared state (Redis, Postgres) that any session service must leave behind, and tells
 * when an effect became visible. Polls: a figure built on it has the poll interval as resolution
 * (stated next to it). Implementation-independent: it never asks the service itself.
 */
import type Redis from 'ioredis';
import type { Pool } from 'pg';
import { sleep } from '../../harness/sleep';
import type { SessionUser } from '../../src/contracts/session';
import { GatewayWrites, type SimConnection } from './trace';

export const HEARTBEAT_KEY = 'heartbeat:keepalive';
const activeKey = (cid: string) => `session:${cid}:active`;

export interface ObserverOptions {
  /** Poll interval for destroys, ms. */
  destroyPollMs: number;
  /** Poll interval for heartbeat effects and live markers, ms. */
  effectPollMs: number;
  /** Most sessions checked per poll (oldest check first), so a backlog cannot flood Redis. */
  maxBatch: number;
}

interface Waiter {
  resolve(at: number | null): void;
  deadline: number;
}
/** When a destroy was seen complete, and when the service wrote `disconnectedAt` (Postgres clock). */
export interface DestroySeen {
  seenAt: number;
  disconnectedAt: number;
}
interface DestroyWaiter {
  resolve(seen: DestroySeen | null): void;
  deadline: number;
  conn: SimConnection;
  keys: string[];
  notBefore: number;
  checkedAt: number;
}
interface EffectWaiter extends Waiter {
  connectionId: string;
  since: number;
}
interface LiveWaiter extends Waiter {
  connectionId: string;
  socketId: string;
}

export class Observer {
  private readonly destroys = new Map<string, DestroyWaiter>();
  private readonly effects = new Set<EffectWaiter>();
  private readonly lives = new Set<LiveWaiter>();
  private stopped = false;
  private readonly loops: Promise<void>[];
  readonly options: ObserverOptions;

  constructor(
    private readonly redis: Redis,
    private readonly pg: Pool,
    options: Partial<ObserverOptions> = {},
  ) {
    this.options = { destroyPollMs: 50, effectPollMs: 25, maxBatch: 500, ...options };
    this.loops = [
      this.loop(this.options.destroyPollMs, () => this.pollDestroys()),
      this.loop(this.options.effectPollMs, () => this.pollEffects()),
      this.loop(this.options.effectPollMs, () => this.pollLives()),
    ];
  }

  /**
   * Resolves with the time (epoch ms) at which the session's destroy was seen complete: every
   * `connection:{cid}:*` key the gateway wrote gone, the active marker gone, no heartbeat score, no
   * presence membership left, and `sessions.disconnectedAt` set; null after `timeoutMs`.
   * `notBefore`: no need to look earlier (a destroy seen at the first look may have happened before).
   */
  destroyed(conn: SimConnection, opts: { notBefore?: number; timeoutMs: number }): Promise<DestroySeen | null> {
    return new Promise((resolve) => {
      this.destroys.get(conn.connectionId)?.resolve(null);
      this.destroys.set(conn.connectionId, {
        conn,
        keys: [...GatewayWrites.keys(conn), activeKey(conn.connectionId)],
        notBefore: opts.notBefore ?? 0,
        deadline: Date.now() + opts.timeoutMs,
        checkedAt: 0,
        resolve,
      });
    });
  }

  /** Resolves when the heartbeat score of the connection is at least `since` (a pong's effect landed). */
  heartbeatEffect(connectionId: string, since: number, timeoutMs: number): Promise<number | null> {
    return new Promise((resolve) =>
      this.effects.add({ connectionId, since, deadline: Date.now() + timeoutMs, resolve }),
    );
  }

  /** Resolves when the connection's active marker names this socket (the reconnect is live). */
  live(connectionId: string, socketId: string, timeoutMs: number): Promise<number | null> {
    return new Promise((resolve) =>
      this.lives.add({ connectionId, socketId, deadline: Date.now() + timeoutMs, resolve }),
    );
  }

  pending(): { destroys: number; effects: number; lives: number } {
    return { destroys: this.destroys.size, effects: this.effects.size, lives: this.lives.size };
  }

  /** Stops polling; whatever is still waited for resolves null. */
  async close(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    for (const w of this.destroys.values()) w.resolve(null);
    for (const w of this.effects) w.resolve(null);
    for (const w of this.lives) w.resolve(null);
    this.destroys.clear();
    this.effects.clear();
    this.lives.clear();
  }

  private async loop(intervalMs: number, poll: () => Promise<void>): Promise<void> {
    while (!this.stopped) {
      const started = Date.now();
      try {
        await poll();
      } catch (err) {
        // A failed poll is retried at the next tick; the waiters keep waiting.
        process.stderr.write(`[observer] poll failed: ${err instanceof Error ? err.message : String(err)}\n`);
      }
      await sleep(Math.max(1, intervalMs - (Date.now() - started)));
    }
  }

  private async pollDestroys(): Promise<void> {
    const now = Date.now();
    const due: DestroyWaiter[] = [];
    for (const [cid, w] of this.destroys) {
      if (w.deadline < now) {
        this.destroys.delete(cid);
        w.resolve(null);
      } else if (w.notBefore <= now) due.push(w);
    }
    if (due.length === 0) return;
    if (due.length > this.options.maxBatch) due.sort((a, b) => a.checkedAt - b.checkedAt);
    const batch = due.slice(0, this.options.maxBatch);
    const p = this.redis.pipeline();
    for (const w of batch) {
      const cid = w.conn.connectionId;
      p.exists(...w.keys);
      p.zscore(HEARTBEAT_KEY, cid);
      for (const room of w.conn.presenceRooms) p.hexists(`presence:${room}:members`, cid);
    }
    const results = (await p.exec()) ?? [];
    let i = 0;
    const clean: DestroyWaiter[] = [];
    for (const w of batch) {
      w.checkedAt = now;
      const n = 2 + w.conn.presenceRooms.length;
      const slice = results.slice(i, i + n);
      i += n;
      if (slice.some(([err]) => err)) continue;
      const [exists, score, ...members] = slice.map(([, v]) => v);
      if (exists === 0 && score === null && members.every((m) => m === 0)) clean.push(w);
    }
    if (clean.length === 0) return;
    // `disconnectedAt` is a timestamp without time zone written with now(): read it back as epoch ms.
    const { rows } = await this.pg.query<{ connectionId: string; ms: string }>(
      `SELECT "connectionId", extract(epoch from "disconnectedAt"::timestamptz) * 1000 AS ms
         FROM sessions WHERE "connectionId" = ANY($1::varchar[]) AND "disconnectedAt" IS NOT NULL`,
      [clean.map((w) => w.conn.connectionId)],
    );
    const seenAt = Date.now();
    for (const { connectionId, ms } of rows) {
      const w = this.destroys.get(connectionId);
      if (!w) continue;
      this.destroys.delete(connectionId);
      w.resolve({ seenAt, disconnectedAt: Number(ms) });
    }
  }

  private async pollEffects(): Promise<void> {
    if (this.effects.size === 0) return;
    const now = Date.now();
    const batch = [...this.effects].slice(0, this.options.maxBatch * 4);
    const p = this.redis.pipeline();
    for (const w of batch) p.zscore(HEARTBEAT_KEY, w.connectionId);
    const results = (await p.exec()) ?? [];
    const seenAt = Date.now();
    batch.forEach((w, i) => {
      const [err, score] = results[i] ?? [null, null];
      if (!err && score !== null && Number(score) >= w.since) {
        this.effects.delete(w);
        w.resolve(seenAt);
      } else if (w.deadline < now) {
        this.effects.delete(w);
        w.resolve(null);
      }
    });
  }

  private async pollLives(): Promise<void> {
    if (this.lives.size === 0) return;
    const now = Date.now();
    const batch = [...this.lives].slice(0, this.options.maxBatch * 4);
    const p = this.redis.pipeline();
    for (const w of batch) p.get(activeKey(w.connectionId));
    const results = (await p.exec()) ?? [];
    const seenAt = Date.now();
    batch.forEach((w, i) => {
      const [err, marker] = results[i] ?? [null, null];
      let socketId: unknown;
      try {
        socketId = typeof marker === 'string' ? (JSON.parse(marker) as { socketId?: unknown }).socketId : undefined;
      } catch {
        socketId = undefined;
      }
      if (!err && socketId === w.socketId) {
        this.lives.delete(w);
        w.resolve(seenAt);
      } else if (w.deadline < now) {
        this.lives.delete(w);
        w.resolve(null);
      }
    });
  }
}

/** One connection's live state as the gateway left it, checked after a storm. */
export interface LiveCheck {
  connectionId: string;
  problems: string[];
}

/**
 * A connection that should be live with `socketId`: marker names it, the gateway's keys are all
 * there, the heartbeat score exists, presence membership is intact, `disconnectedAt` is not set.
 */
export async function checkLive(
  redis: Redis,
  pg: Pool,
  items: { conn: SimConnection; socketId: string }[],
): Promise<LiveCheck[]> {
  const p = redis.pipeline();
  for (const { conn } of items) {
    const keys = GatewayWrites.keys(conn);
    p.get(activeKey(conn.connectionId));
    p.exists(...keys);
    p.zscore(HEARTBEAT_KEY, conn.connectionId);
    for (const room of conn.presenceRooms) p.hexists(`presence:${room}:members`, conn.connectionId);
  }
  const results = (await p.exec()) ?? [];
  const { rows } = await pg.query<{ connectionId: string }>(
    `SELECT "connectionId" FROM sessions WHERE "connectionId" = ANY($1::varchar[]) AND "disconnectedAt" IS NOT NULL`,
    [items.map((i) => i.conn.connectionId)],
  );
  const disconnected = new Set(rows.map((r) => r.connectionId));
  let i = 0;
  return items.map(({ conn, socketId }) => {
    const n = 3 + conn.presenceRooms.length;
    const [marker, exists, score, ...members] = results.slice(i, i + n).map(([, v]) => v);
    i += n;
    const problems: string[] = [];
    let markerSocket: unknown;
    try {
      markerSocket = typeof marker === 'string' ? (JSON.parse(marker) as { socketId?: unknown }).socketId : undefined;
    } catch {
      markerSocket = undefined;
    }
    if (markerSocket !== socketId)
      problems.push(`active marker ${marker ? `names ${String(markerSocket)}` : 'missing'}`);
    const expected = GatewayWrites.keys(conn).length;
    if (exists !== expected) problems.push(`${expected - Number(exists)} of ${expected} gateway keys gone`);
    if (score === null) problems.push('heartbeat score gone');
    const lost = members.filter((m) => m !== 1).length;
    if (lost) problems.push(`presence gone in ${lost} room(s)`);
    if (disconnected.has(conn.connectionId)) problems.push('sessions.disconnectedAt set');
    return { connectionId: conn.connectionId, problems };
  });
}

/**
 * After every session of a run should be destroyed: nothing of the app left in Redis (scanned, not
 * only the keys the trace wrote), every session row disconnected, every user offline.
 */
export async function auditClean(
  redis: Redis,
  pg: Pool,
  appPid: string,
  conns: SimConnection[],
  users: SessionUser[],
): Promise<string[]> {
  const problems: string[] = [];
  for (const pattern of [
    `connection:${appPid}:*`,
    `session:${appPid}:*`,
    `presence:${appPid}:*`,
    `client:${appPid}:*`,
    `tether:client:${appPid}:*`,
  ]) {
    const all = await scanAll(redis, pattern);
    // tether's own record of a user edge's broadcasts outlives the edge on purpose (a late retry
    // must not resend) and expires by itself: fine as long as it has a TTL.
    const found: string[] = [];
    for (const key of all) {
      if (key.endsWith(':edge-published') && (await redis.ttl(key)) > 0) continue;
      found.push(key);
    }
    if (found.length)
      problems.push(`${found.length} key(s) left matching ${pattern}, e.g. ${found.slice(0, 3).join(', ')}`);
  }
  if (await redis.exists(`auth:${appPid}:online`)) {
    const n = await redis.hlen(`auth:${appPid}:online`);
    problems.push(`auth:${appPid}:online still lists ${n} user(s)`);
  }
  const cids = conns.map((c) => c.connectionId);
  let scores = 0;
  for (let i = 0; i < cids.length; i += 1000) {
    const p = redis.pipeline();
    for (const cid of cids.slice(i, i + 1000)) p.zscore(HEARTBEAT_KEY, cid);
    scores += ((await p.exec()) ?? []).filter(([, v]) => v !== null).length;
  }
  if (scores) problems.push(`${scores} heartbeat score(s) left in ${HEARTBEAT_KEY}`);
  const { rows } = await pg.query<{ total: string; open: string }>(
    `SELECT count(*) AS total, count(*) FILTER (WHERE "disconnectedAt" IS NULL) AS open
       FROM sessions WHERE "connectionId" = ANY($1::varchar[])`,
    [cids],
  );
  const total = Number(rows[0]?.total ?? 0);
  const open = Number(rows[0]?.open ?? 0);
  if (total !== cids.length) problems.push(`${cids.length} connections but ${total} session row(s)`);
  if (open) problems.push(`${open} session row(s) without disconnectedAt`);
  if (users.length) {
    const online = await pg.query<{ n: string }>(
      `SELECT count(*) AS n FROM authentication_users WHERE id = ANY($1::uuid[]) AND "isOnline" IS TRUE`,
      [users.map((u) => u.id)],
    );
    const n = Number(online.rows[0]?.n ?? 0);
    if (n) problems.push(`${n} user(s) still online in authentication_users`);
  }
  return problems;
}

async function scanAll(redis: Redis, match: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found;
}

/** Of these connections, those whose `session:{cid}:active` marker is missing (pipelined EXISTS). */
export async function missingMarkers(redis: Redis, cids: readonly string[], chunk = 5000): Promise<string[]> {
  const missing: string[] = [];
  for (let i = 0; i < cids.length; i += chunk) {
    const part = cids.slice(i, i + chunk);
    const p = redis.pipeline();
    for (const cid of part) p.exists(activeKey(cid));
    const results = (await p.exec()) ?? [];
    part.forEach((cid, j) => {
      const [err, n] = results[j] ?? [null, 0];
      if (err || n !== 1) missing.push(cid);
    });
  }
  return missing;
}

export interface MarkerCheck {
  /** Epoch ms the check started. */
  at: number;
  checked: number;
  missing: number;
  /** How long the pipelined EXISTS took, ms. */
  tookMs: number;
  examples: string[];
}

/**
 * Every `everyMs`, checks that every live session (`live()`: connected and not closed when the
 * check starts) has its active marker. Checks are kept for the figures.
 */
export class MarkerWatch {
  readonly checks: MarkerCheck[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly live: () => string[],
    readonly everyMs: number,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.check(), this.everyMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One check now (skipped while the previous one still runs). */
  check(): Promise<void> {
    this.running ??= (async () => {
      const at = Date.now();
      const cids = this.live();
      try {
        const missing = await missingMarkers(this.redis, cids);
        this.checks.push({
          at,
          checked: cids.length,
          missing: missing.length,
          tookMs: Date.now() - at,
          examples: missing.slice(0, 3),
        });
      } catch (err) {
        process.stderr.write(`[markers] check failed: ${err instanceof Error ? err.message : String(err)}\n`);
      }
    })().finally(() => (this.running = undefined));
    return this.running;
  }

  /** Checks since `from` (epoch ms). */
  since(from: number): MarkerCheck[] {
    return this.checks.filter((c) => c.at >= from);
  }
}
