/**
 * Plays a trace against a target in real time. Like a gateway, it runs the calls of one connection
 * strictly in order (a close never overtakes its open) and the calls of different connections
 * concurrently. After an open it writes what the gateway and presence service write (joins).
 */
import type { HeartbeatResult, SessionTarget } from './target';
import { GatewayWrites, type TraceEvent } from './trace';

export interface DriverHooks {
  /** The call for the event returned; `startedAt` is when it was issued (≥ event.at). */
  done?(event: TraceEvent, startedAt: number, doneAt: number, heartbeat?: HeartbeatResult): void;
  failed?(event: TraceEvent, err: unknown): void;
}

export interface DriverStats {
  dispatched: number;
  failed: number;
  /** Pongs answered "unknown session": the session was gone while its socket was open. */
  unknownSessions: number;
  /** Pongs not sent because their socket had closed. */
  skippedPongs: number;
  /** issue time − scheduled time, per call, ms (how far the load generator fell behind). */
  dispatchLagMs: number[];
  /** How long the target took per call, ms. */
  callMs: { open: number[]; pong: number[]; close: number[] };
  errors: string[];
}

class MinHeap<T> {
  private readonly items: T[] = [];
  constructor(private readonly key: (item: T) => number) {}
  get size(): number {
    return this.items.length;
  }
  peek(): T | undefined {
    return this.items[0];
  }
  push(item: T): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.key(a[parent]!) <= this.key(a[i]!)) break;
      [a[parent], a[i]] = [a[i]!, a[parent]!];
      i = parent;
    }
  }
  pop(): T | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.key(a[l]!) < this.key(a[m]!)) m = l;
        if (r < a.length && this.key(a[r]!) < this.key(a[m]!)) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
}

const SAMPLE_CAP = 200_000;

export class Driver {
  private readonly queue = new MinHeap<TraceEvent>((e) => e.at);
  private readonly chains = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];
  private stopped = false;
  readonly stats: DriverStats = {
    dispatched: 0,
    failed: 0,
    unknownSessions: 0,
    skippedPongs: 0,
    dispatchLagMs: [],
    callMs: { open: [], pong: [], close: [] },
    errors: [],
  };

  constructor(
    private readonly target: SessionTarget,
    private readonly writes: GatewayWrites,
    private readonly hooks: DriverHooks = {},
    /** Calls in flight at most (a gateway fleet has many processes; this only bounds the bench). */
    private readonly maxInFlight = 1024,
  ) {}

  add(events: readonly TraceEvent[]): void {
    if (this.stopped) return;
    for (const e of events) this.queue.push(e);
    this.arm();
  }

  /** Scheduled events not yet issued. */
  get scheduled(): number {
    return this.queue.size;
  }

  /** Resolves when nothing is scheduled and every issued call has returned. */
  drained(): Promise<void> {
    if (this.queue.size === 0 && this.chains.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Drops what is still scheduled (calls in flight finish); later `add`s are played. */
  clear(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    while (this.queue.size) this.queue.pop();
    this.checkIdle();
  }

  /** Drops what is still scheduled and ignores later `add`s; calls in flight finish. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    while (this.queue.size) this.queue.pop();
    this.checkIdle();
  }

  private arm(): void {
    const next = this.queue.peek();
    if (!next) return;
    if (this.timer && this.timerAt <= next.at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = next.at;
    this.timer = setTimeout(() => this.pump(), Math.max(0, next.at - Date.now()));
  }

  private pump(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = Date.now();
    while (this.queue.size && this.queue.peek()!.at <= now) this.dispatch(this.queue.pop()!);
    this.arm();
    this.checkIdle();
  }

  private dispatch(event: TraceEvent): void {
    const cid = event.conn.connectionId;
    const previous = this.chains.get(cid) ?? Promise.resolve();
    const next = previous.then(() => this.run(event));
    this.chains.set(cid, next);
    void next.then(() => {
      if (this.chains.get(cid) === next) this.chains.delete(cid);
      this.checkIdle();
    });
  }

  private async run(event: TraceEvent): Promise<void> {
    // A closed socket sends no pongs (its connection may have reconnected on another socket).
    if (event.kind === 'pong' && event.conn.openSocket !== event.socketId) {
      this.stats.skippedPongs++;
      return;
    }
    await this.slot();
    const startedAt = Date.now();
    this.stats.dispatched++;
    if (this.stats.dispatchLagMs.length < SAMPLE_CAP) this.stats.dispatchLagMs.push(startedAt - event.at);
    try {
      let heartbeat: HeartbeatResult | undefined;
      if (event.kind === 'open') {
        event.conn.session = { ...event.conn.session, socketId: event.socketId };
        event.conn.gateway = event.gateway;
        event.conn.openSocket = event.socketId;
        await this.target.connected(event.conn.session, startedAt, event.gateway);
        await this.writes.join(event.conn);
      } else if (event.kind === 'pong') {
        heartbeat = await this.target.heartbeat(event.conn.connectionId, startedAt, event.conn.gateway);
        if (heartbeat.unknownSession) {
          // As a gateway does: the socket is open, so register it again (and count the surprise).
          this.stats.unknownSessions++;
          await this.target.connected(event.conn.session, Date.now(), event.conn.gateway);
        }
      } else {
        if (event.conn.openSocket === event.socketId) event.conn.openSocket = null;
        await this.target.disconnected({ connectionId: event.conn.connectionId, socketId: event.socketId }, startedAt);
      }
      const doneAt = Date.now();
      const samples = this.stats.callMs[event.kind];
      if (samples.length < SAMPLE_CAP) samples.push(doneAt - startedAt);
      this.hooks.done?.(event, startedAt, doneAt, heartbeat);
    } catch (err) {
      this.stats.failed++;
      if (this.stats.errors.length < 20)
        this.stats.errors.push(
          `${event.kind} ${event.conn.connectionId}: ${err instanceof Error ? err.message : String(err)}`,
        );
      this.hooks.failed?.(event, err);
    } finally {
      this.release();
    }
  }

  private slot(): Promise<void> {
    if (this.inFlight < this.maxInFlight) {
      this.inFlight++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.inFlight--;
  }

  private checkIdle(): void {
    if (this.queue.size === 0 && this.chains.size === 0 && this.idleWaiters.length) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
