/**
 * A minimal websocket gateway showing where the three session calls go (see
 * docs/contract.md §1):
 *
 *   socket open  -> sessionClient.connected(session)
 *   pong         -> sessionClient.heartbeat(connectionId)
 *   socket close -> sessionClient.disconnected({ connectionId, socketId })
 *
 * Run it:  npx tsx examples/gateway.ts [port]    (or GATEWAY_PORT; 0 picks a free port)
 *          GATEWAY_ID (default example-{port}), HEARTBEAT_FORWARD_INTERVAL_MS (default 30 × idle)
 * Connect: ws://localhost:8080/?appPid=Fef8GnS7C5zN&keyId=k1[&clientId=..][&connectionId=..][&user=..]
 *          (user: the authenticated user as JSON, `{"id": "<uuid>", "clientId": "..", ...}`)
 *
 * It trusts the query string for brevity; a real gateway takes appPid/keyId/clientId/user from a
 * verified token and only the connectionId (to resume) from the client.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client, Connection } from '@temporalio/client';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  ConnectionOwnershipError,
  HeartbeatOutcome,
  InvalidSessionInputError,
  SessionClient,
  type Session,
  type SessionUser,
} from '../src/client';
import { loadConfig } from '../src/config';
import { createLogger, type Logger } from '../src/logger';

export interface GatewayOptions {
  port: number;
  host?: string;
  sessionClient: SessionClient;
  /** WS_IDLE_TIMEOUT_MS: must be the one the SessionClient (and so the workflows) use. */
  idleTimeoutMs: number;
  logger?: Logger;
}

export interface Gateway {
  port: number;
  /** Closes every socket (each gets its `disconnected`), waits for those calls, stops listening. */
  close(): Promise<void>;
}

/** What the gateway sends a client once its session is registered: it resumes with this connectionId. */
export interface WelcomeMessage {
  type: 'connected';
  connectionId: string;
  socketId: string;
}

const ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const shortId = () => Array.from(randomBytes(12), (b) => ID_CHARS[b % ID_CHARS.length]).join('');

/** The session object for a new socket. A reconnect keeps its connectionId but always gets a new socketId. */
function sessionFrom(req: IncomingMessage): Session {
  const q = new URL(req.url ?? '/', 'http://gateway').searchParams;
  const appPid = q.get('appPid') ?? '';
  const clientId = q.get('clientId') || undefined;
  const connectionId = q.get('connectionId') || `${appPid}:${shortId()}`;
  const user = userFrom(q.get('user'));
  return {
    appPid,
    keyId: q.get('keyId') ?? '',
    connectionId,
    // uid is the clientId when there is one, else the connectionId (spec §2).
    uid: clientId ?? connectionId,
    ...(clientId ? { clientId } : {}),
    socketId: randomUUID(),
    ...(user ? { user } : {}),
  };
}

/** The authenticated user (a token's claim in a real gateway); the client validates its shape. */
function userFrom(json: string | null): SessionUser | undefined {
  if (!json) return undefined;
  try {
    return JSON.parse(json) as SessionUser;
  } catch {
    return { id: '', clientId: '' }; // refused by connected() as bad input: the socket is closed 1008
  }
}

interface Socket {
  ws: WebSocket;
  session: Session;
  /** Answered the last ping. */
  alive: boolean;
  /**
   * Every session call for this socket runs in order on this chain: a close racing a slow
   * `connected` must not reach the workflow first (it would find no session and be lost).
   */
  calls: Promise<unknown>;
  /** `connected` was refused (bad input, connectionId owned by someone else): nothing to close. */
  refused: boolean;
}

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { sessionClient, idleTimeoutMs } = options;
  const logger = options.logger ?? createLogger({ level: 'info' });
  const sockets = new Set<Socket>();
  const wss = new WebSocketServer({ port: options.port, host: options.host });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });

  const enqueue = (s: Socket, call: () => Promise<unknown>) => {
    // A failed call is logged and the chain goes on: liveness (4 × idle) covers a lost signal.
    s.calls = s.calls
      .then(call)
      .catch((err: unknown) =>
        logger.warn('session call failed', { connectionId: s.session.connectionId, error: err }),
      );
    return s.calls;
  };

  /** Registers the socket's session; the client gets its connectionId back to resume with. */
  const connect = async (s: Socket) => {
    try {
      await sessionClient.connected(s.session);
    } catch (err) {
      if (err instanceof InvalidSessionInputError || err instanceof ConnectionOwnershipError) {
        // Refused before any workflow was touched: tell the client why; its close sends nothing.
        s.refused = true;
        s.ws.close(1008, err.message.slice(0, 120));
        return;
      }
      // Anything else (Temporal unreachable, a timeout) may or may not have started the session:
      // drop the socket so the client reconnects, and still send `disconnected` on its close.
      s.ws.close(1011, 'session service unavailable');
      throw err;
    }
    const welcome: WelcomeMessage = {
      type: 'connected',
      connectionId: s.session.connectionId,
      socketId: s.session.socketId,
    };
    s.ws.send(JSON.stringify(welcome));
  };

  wss.on('connection', (ws, req) => {
    const s: Socket = { ws, session: sessionFrom(req), alive: true, calls: Promise.resolve(), refused: false };
    sockets.add(s);
    void enqueue(s, () => connect(s));

    ws.on('pong', () => {
      s.alive = true;
      void enqueue(s, async () => {
        // The client coalesces pongs, so calling it on every one is cheap.
        const outcome = await sessionClient.heartbeat(s.session.connectionId);
        // The session ended while the socket stayed open (e.g. this gateway was unreachable for
        // 4 × idle and liveness destroyed it): the socket is still here, so register it again.
        if (outcome === HeartbeatOutcome.unknownSession && ws.readyState === ws.OPEN) await connect(s);
      });
    });

    ws.on('close', () => {
      sockets.delete(s);
      // Queued behind `connected`: only then is it known whether there is a session to close.
      void enqueue(s, async () => {
        if (!s.refused) await sessionClient.disconnected(s.session);
      });
    });

    ws.on('error', (err) => logger.warn('socket error', { connectionId: s.session.connectionId, error: err }));
  });

  // One ping per idle period. A socket that did not answer the previous ping is dead or stuck:
  // terminate it (no close handshake to wait for) and its close handler reports it gone.
  const pinger = setInterval(() => {
    for (const s of sockets) {
      if (!s.alive) {
        logger.info('idle timeout', { connectionId: s.session.connectionId });
        s.ws.terminate();
        continue;
      }
      s.alive = false;
      s.ws.ping();
    }
  }, idleTimeoutMs);

  return {
    port: (wss.address() as AddressInfo).port,
    async close() {
      clearInterval(pinger);
      const open = [...sockets];
      // A clean shutdown closes the sockets so clients move to another gateway at once and their
      // sessions start the 4 × idle grace; only a crash leaves it to liveness. A client that does
      // not answer the close handshake within an idle period is cut off.
      await Promise.all(
        open.map(
          (s) =>
            new Promise<void>((resolve) => {
              const cutOff = setTimeout(() => s.ws.terminate(), idleTimeoutMs);
              s.ws.once('close', () => {
                clearTimeout(cutOff);
                resolve();
              });
              s.ws.close(1001, 'gateway shutting down');
            }),
        ),
      );
      // Each close handler has queued its `disconnected` by now.
      await Promise.all(open.map((s) => s.calls));
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

/** TLS for Temporal Cloud or any mTLS cluster, from the same variables the worker reads. */
function temporalTls(tls: ReturnType<typeof loadConfig>['temporal']['tls']) {
  if (!tls) return undefined;
  const read = (p?: string) => (p ? readFileSync(p) : undefined);
  const crt = read(tls.clientCertPath);
  const key = read(tls.clientKeyPath);
  return {
    serverNameOverride: tls.serverNameOverride,
    serverRootCACertificate: read(tls.serverRootCACertPath),
    clientCertPair: crt && key ? { crt, key } : undefined,
  };
}

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = createLogger({ level: config.logLevel, pretty: config.localhost });
  const port = Number(process.argv[2] ?? process.env.GATEWAY_PORT ?? 8080);
  const connection = await Connection.connect({
    address: config.temporal.address,
    tls: temporalTls(config.temporal.tls),
  });
  const client = new Client({ connection, namespace: config.temporal.namespace });
  const sessionClient = new SessionClient(client, {
    taskQueue: config.temporal.taskQueue,
    idleTimeoutMs: config.idleTimeoutMs,
    // RelayBox core's instanceId; a new incarnation is drawn at every start.
    gatewayId: process.env.GATEWAY_ID ?? `example-${port}`,
    // Default 30 × idle; the demo shortens it so that heartbeats show within a minute.
    ...(process.env.HEARTBEAT_FORWARD_INTERVAL_MS
      ? { heartbeatForwardIntervalMs: Number(process.env.HEARTBEAT_FORWARD_INTERVAL_MS) }
      : {}),
  });
  const gateway = await startGateway({ port, sessionClient, idleTimeoutMs: config.idleTimeoutMs, logger });
  logger.info('gateway listening', { port: gateway.port, taskQueue: config.temporal.taskQueue });

  const stop = async () => {
    logger.info('gateway stopping');
    await gateway.close();
    await sessionClient.close(); // releases the lease once the sockets' closes went out
    await connection.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
