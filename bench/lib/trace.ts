/**
 * The trace generator: simulated gateway instances and their connections, as timed socket events
 * (open, pong every idle period, close, reconnect), plus what the gateway and the presence service
 * write to Redis for a connection (rooms, per-room subscriptions, presence, user subscriptions).
 *
 * It knows nothing about the implementation under test: a `SessionTarget` receives the socket
 * events (see target.ts) and an `Observer` reads the shared state (observer.ts).
 */
import { randomUUID } from 'node:crypto';
import type Redis from 'ioredis';
import { randomId } from '../../harness/random-id';
import { Rng } from '../../harness/rng';
import type { Session, SessionUser } from '../../src/contracts/session';

export interface TraceShape {
  /** Rooms in the simulated app; connections join some of them. */
  rooms: number;
  roomsPerConnection: [min: number, max: number];
  /** Share of a connection's rooms where it is also a presence member. */
  presenceShare: number;
  /** Share of connections that are authenticated users (need `users`). */
  userShare: number;
  /** User subscriptions (`connection:{cid}:users:{clientId}`) per connection. */
  userSubscriptions: [min: number, max: number];
}

export const DEFAULT_SHAPE: TraceShape = {
  rooms: 50,
  roomsPerConnection: [1, 3],
  presenceShare: 0.5,
  userShare: 0.25,
  userSubscriptions: [0, 2],
};

/** One websocket connection across its sockets (a reconnect keeps the connectionId, new socketId). */
export interface SimConnection {
  index: number;
  gateway: number;
  connectionId: string;
  /** The session of the socket opened last (the one the gateway currently holds). */
  session: Session;
  /** socketId of the open socket; null while none is open. */
  openSocket: string | null;
  rooms: string[];
  presenceRooms: string[];
  /** clientIds this connection subscribes to. */
  userSubscriptions: string[];
}

interface EventBase {
  /** Epoch ms at which the gateway sees the socket event. */
  at: number;
  conn: SimConnection;
  /** Free label the scenario uses to file the outcome (e.g. the ramp step). */
  tag?: string;
}
export type TraceEvent =
  | (EventBase & { kind: 'open'; socketId: string; gateway: number })
  | (EventBase & { kind: 'pong'; socketId: string })
  | (EventBase & { kind: 'close'; socketId: string });

export class TraceGenerator {
  private readonly random: () => number;
  private next = 0;
  readonly rooms: string[];

  constructor(
    readonly appPid: string,
    readonly idleTimeoutMs: number,
    private readonly users: SessionUser[] = [],
    readonly shape: TraceShape = DEFAULT_SHAPE,
    seed = 1,
  ) {
    const rng = new Rng(seed);
    this.random = () => rng.next();
    this.rooms = Array.from({ length: shape.rooms }, (_, i) => `${appPid}:room-${i}`);
  }

  private int([min, max]: [number, number]): number {
    return min + Math.floor(this.random() * (max - min + 1));
  }

  private pick<T>(from: readonly T[], n: number): T[] {
    const pool = [...from];
    const out: T[] = [];
    while (out.length < n && pool.length) out.push(pool.splice(Math.floor(this.random() * pool.length), 1)[0]!);
    return out;
  }

  /** A new connection on a gateway, with its rooms, presence and subscriptions drawn from the shape. */
  connection(gateway: number): SimConnection {
    const connectionId = `${this.appPid}:${randomId()}`;
    const user = this.users.length && this.random() < this.shape.userShare ? this.pick(this.users, 1)[0] : undefined;
    const session: Session = {
      uid: user ? user.clientId : connectionId,
      appPid: this.appPid,
      keyId: `bench-key-${gateway}`,
      connectionId,
      socketId: randomUUID(),
      ...(user ? { clientId: user.clientId, user } : {}),
    };
    const rooms = this.pick(this.rooms, this.int(this.shape.roomsPerConnection));
    const others = this.users.filter((u) => u.clientId !== user?.clientId).map((u) => u.clientId);
    return {
      index: this.next++,
      gateway,
      connectionId,
      session,
      openSocket: null,
      rooms,
      presenceRooms: rooms.filter(() => this.random() < this.shape.presenceShare),
      userSubscriptions: this.pick(others, this.int(this.shape.userSubscriptions)),
    };
  }

  /** Uniform jitter in [0, maxMs). */
  jitter(maxMs: number): number {
    return this.random() * maxMs;
  }

  /** Open at `start`, `pongs` pongs one idle period apart, close `closeAfterMs` after the last pong. */
  lifecycle(conn: SimConnection, start: number, pongs: number, closeAfterMs: number, tag?: string): TraceEvent[] {
    const socketId = randomUUID();
    const events: TraceEvent[] = [{ kind: 'open', at: start, conn, socketId, gateway: conn.gateway, tag }];
    for (let k = 1; k <= pongs; k++)
      events.push({ kind: 'pong', at: start + k * this.idleTimeoutMs, conn, socketId, tag });
    events.push({ kind: 'close', at: start + pongs * this.idleTimeoutMs + closeAfterMs, conn, socketId, tag });
    return events;
  }

  /** Open at `start`; the socket stays open (pongs are added with `pongs`). */
  open(conn: SimConnection, start: number, tag?: string): TraceEvent & { kind: 'open' } {
    return { kind: 'open', at: start, conn, socketId: randomUUID(), gateway: conn.gateway, tag };
  }

  /** Pongs of a socket one idle period apart, the first `idle` after `from`, all before `until`. */
  pongs(conn: SimConnection, socketId: string, from: number, until: number, tag?: string): TraceEvent[] {
    const events: TraceEvent[] = [];
    for (let t = from + this.idleTimeoutMs; t < until; t += this.idleTimeoutMs)
      events.push({ kind: 'pong', at: t, conn, socketId, tag });
    return events;
  }

  close(conn: SimConnection, socketId: string, at: number, tag?: string): TraceEvent {
    return { kind: 'close', at, conn, socketId, tag };
  }

  /**
   * The connection's gateway went away: the client reconnects to `gateway` at `at` with a new
   * socket. The old gateway's close is reported `closeLeadMs` before the reconnect (a clean
   * shutdown) or, when negative, after it (a late close of the old socket, which must not count).
   */
  reconnect(
    conn: SimConnection,
    oldSocketId: string,
    at: number,
    gateway: number,
    closeLeadMs: number,
    tag?: string,
  ): { events: TraceEvent[]; socketId: string } {
    const socketId = randomUUID();
    return {
      socketId,
      events: [
        { kind: 'close', at: at - closeLeadMs, conn, socketId: oldSocketId, tag },
        { kind: 'open', at, conn, socketId, gateway, tag },
      ],
    };
  }
}

/**
 * What the gateway (joins, subscriptions) and the presence service (presence membership) write for
 * a connection after its socket opened, in the key layout of the RelayBox contract (§4). Written
 * again on a reconnect, as the client re-joins its rooms.
 */
export class GatewayWrites {
  constructor(private readonly redis: Redis) {}

  /** The connection's own keys (`connection:{cid}:*`) this class writes. */
  static keys(conn: SimConnection): string[] {
    const cid = conn.connectionId;
    return [
      `connection:${cid}:rooms`,
      ...conn.rooms.map((room) => `connection:${cid}:subscriptions:${room}`),
      ...conn.presenceRooms.map((room) => `connection:${cid}:presence:${room}`),
      ...(conn.userSubscriptions.length ? [`connection:${cid}:users`] : []),
      ...conn.userSubscriptions.map((clientId) => `connection:${cid}:users:${clientId}`),
      ...(conn.presenceRooms.length ? [`connection:${cid}:presence-sets`] : []),
    ];
  }

  async join(conn: SimConnection): Promise<void> {
    const cid = conn.connectionId;
    const s = conn.session;
    const tx = this.redis.multi();
    const routingKey = `$$:${s.appPid}:${conn.index % 20}`;
    tx.hset(`connection:${cid}:rooms`, ...conn.rooms.flatMap((room) => [room, '1']), routingKey, '1');
    for (const room of conn.rooms) tx.hset(`connection:${cid}:subscriptions:${room}`, 'message', '1', 'typing', '1');
    for (const room of conn.presenceRooms) {
      tx.hset(`connection:${cid}:presence:${room}`, 'join', '1', 'leave', '1', 'update', '1');
      tx.hset(`connection:${cid}:presence-sets`, room, '1');
      const member = {
        clientId: s.clientId ?? null,
        connectionId: cid,
        user: s.user ?? null,
        timestamp: new Date().toISOString(),
      };
      tx.hset(`presence:${room}:members`, cid, JSON.stringify(member));
      tx.lrem(`presence:${room}:index`, 0, cid);
      tx.rpush(`presence:${room}:index`, cid);
    }
    if (conn.userSubscriptions.length) {
      tx.hset(`connection:${cid}:users`, ...conn.userSubscriptions.flatMap((c) => [c, '1']));
      for (const c of conn.userSubscriptions)
        tx.hset(`connection:${cid}:users:${c}`, 'user:connect', '1', 'user:disconnect', '1');
    }
    const results = await tx.exec();
    for (const [err] of results ?? []) if (err) throw err;
  }
}
