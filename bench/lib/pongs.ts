/**
 * Pongs of long-lived sockets, fed to the driver a little ahead of time (an hour of pongs for
 * thousands of sockets would not fit in the schedule at once).
 */
import type { Driver } from './driver';
import type { SimConnection, TraceEvent } from './trace';

export class PongFeeder {
  private readonly next = new Map<SimConnection, { socketId: string; at: number }>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly driver: Driver,
    private readonly idleTimeoutMs: number,
    private readonly aheadMs = 15_000,
  ) {
    this.timer = setInterval(() => this.fill(), 2_000);
  }

  /** The socket opened at `openAt` pongs every idle period from then on (replaces an older socket's). */
  start(conn: SimConnection, socketId: string, openAt: number): void {
    this.next.set(conn, { socketId, at: openAt + this.idleTimeoutMs });
    this.fill(conn);
  }

  stop(conn: SimConnection): void {
    this.next.delete(conn);
  }

  close(): void {
    clearInterval(this.timer);
    this.next.clear();
  }

  private fill(only?: SimConnection): void {
    const until = Date.now() + this.aheadMs;
    const events: TraceEvent[] = [];
    for (const [conn, n] of only ? [[only, this.next.get(only)!] as const] : this.next) {
      for (; n.at < until; n.at += this.idleTimeoutMs)
        events.push({ kind: 'pong', at: n.at, conn, socketId: n.socketId });
    }
    this.driver.add(events);
  }
}
