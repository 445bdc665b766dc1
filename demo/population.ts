/**
 * The demo's simulated population: real websocket clients of the example gateway. Each joins rooms
 * (and presence in some) once the gateway has welcomed it, as the RelayBox gateway and presence
 * service would write it to Redis (bench/lib/trace.ts GatewayWrites); some are authenticated users
 * with two tabs. A client whose socket the gateway dropped reconnects with its connectionId.
 */
import type Redis from 'ioredis';
import { WebSocket } from 'ws';
import type { WelcomeMessage } from '../examples/gateway';
import { GatewayWrites, type SimConnection } from '../bench/lib/trace';
import { randomId } from '../harness/random-id';
import type { SessionUser } from '../src/contracts/session';

export interface DemoClient {
  index: number;
  /** `anon-3`, `ada/tab-2`: how the narration names it. */
  name: string;
  clientId?: string;
  user?: SessionUser;
  /** Set by the gateway's welcome; kept across reconnects. */
  connectionId?: string;
  rooms: string[];
  presenceRooms: string[];
  userSubscriptions: string[];
  /** Reconnects when the gateway drops its socket (not when it closed it itself). */
  reconnects: boolean;
  ws?: WebSocket;
  open: boolean;
}

export interface PopulationOptions {
  gatewayUrl: string;
  appPid: string;
  redis: Redis;
  signal: AbortSignal;
  /** A client whose socket the gateway dropped is welcomed again. */
  onReconnect: (c: DemoClient) => void;
}

export class Population {
  readonly clients: DemoClient[] = [];
  private readonly writes: GatewayWrites;
  private next = 0;
  private readonly rooms: string[];
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(private readonly opts: PopulationOptions) {
    this.writes = new GatewayWrites(opts.redis);
    this.rooms = ['lobby', 'general', 'random', 'support', 'sales', 'ops'].map((r) => `${opts.appPid}:${r}`);
  }

  /** A new client, not connected yet. */
  add(name: string, user?: SessionUser, subscribeTo: string[] = []): DemoClient {
    const index = this.next++;
    const rooms = [this.rooms[index % this.rooms.length]!, this.rooms[(index * 7 + 3) % this.rooms.length]!];
    const c: DemoClient = {
      index,
      name,
      ...(user ? { clientId: user.clientId, user } : {}),
      rooms: [...new Set(rooms)],
      presenceRooms: index % 2 === 0 ? [rooms[0]!] : [],
      userSubscriptions: subscribeTo.filter((id) => id !== user?.clientId),
      reconnects: true,
      open: false,
    };
    this.clients.push(c);
    return c;
  }

  /**
   * Connects the client (a reconnect when it has a connectionId), retrying every 500 ms while no
   * gateway listens; resolves true once welcomed, false if the demo stopped first. Never rejects.
   */
  async join(c: DemoClient): Promise<boolean> {
    while (!this.opts.signal.aborted) {
      try {
        await this.connect(c);
        return true;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
    return false;
  }

  /** Opens a socket; resolves once welcomed and its rooms are written. */
  private connect(c: DemoClient): Promise<void> {
    const q = new URLSearchParams({ appPid: this.opts.appPid, keyId: 'demo-key' });
    if (c.clientId) q.set('clientId', c.clientId);
    if (c.user) q.set('user', JSON.stringify(c.user));
    if (c.connectionId) q.set('connectionId', c.connectionId);
    const ws = new WebSocket(`${this.opts.gatewayUrl}/?${q.toString()}`);
    c.ws = ws;
    return new Promise<void>((resolve, reject) => {
      ws.once('message', (data: Buffer) => {
        const welcome = JSON.parse(data.toString()) as WelcomeMessage;
        c.connectionId = welcome.connectionId;
        c.open = true;
        // The gateway's joins and the presence service's membership, written again on a reconnect.
        this.writes.join(this.simConnection(c)).then(resolve, reject);
      });
      ws.on('error', reject);
      ws.once('close', (code) => {
        const wasOpen = c.open;
        c.open = false;
        if (c.ws !== ws) return;
        c.ws = undefined;
        if (!wasOpen) reject(new Error(`closed before the welcome (${code})`));
        // 1006: the gateway went away without a close frame (killed); 1001: it shut down.
        else if ((code === 1006 || code === 1001 || code === 1011) && c.reconnects) this.reconnectSoon(c);
      });
    });
  }

  /** Reconnects after 500 ms, retrying until a gateway welcomes it (or the demo stops). */
  private reconnectSoon(c: DemoClient): void {
    this.later(500, () => {
      void this.join(c).then((ok) => ok && this.opts.onReconnect(c));
    });
  }

  /** The client closes its socket itself (a tab closed). */
  close(c: DemoClient): void {
    const ws = c.ws;
    c.ws = undefined;
    c.open = false;
    ws?.close(1000, 'bye');
  }

  later(ms: number, fn: () => void): void {
    if (this.opts.signal.aborted) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.opts.signal.aborted) fn();
    }, ms);
    this.timers.add(t);
  }

  /** Stops every timer and closes every socket; resolves once they are closed (at most 3 s). */
  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await Promise.all(
      this.clients.map(
        (c) =>
          new Promise<void>((resolve) => {
            const ws = c.ws;
            c.reconnects = false;
            if (!ws || ws.readyState === WebSocket.CLOSED) return resolve();
            const cut = setTimeout(() => {
              ws.terminate();
              resolve();
            }, 3000);
            ws.once('close', () => {
              clearTimeout(cut);
              resolve();
            });
            ws.close(1000, 'demo stopping');
          }),
      ),
    );
  }

  private simConnection(c: DemoClient): SimConnection {
    const connectionId = c.connectionId!;
    return {
      index: c.index,
      gateway: 0,
      connectionId,
      session: {
        uid: c.clientId ?? connectionId,
        appPid: this.opts.appPid,
        keyId: 'demo-key',
        connectionId,
        socketId: randomId(),
        ...(c.clientId ? { clientId: c.clientId } : {}),
        ...(c.user ? { user: c.user } : {}),
      },
      openSocket: null,
      rooms: c.rooms,
      presenceRooms: c.presenceRooms,
      userSubscriptions: c.userSubscriptions,
    };
  }
}
