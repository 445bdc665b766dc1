import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import WebSocket from 'ws';
import { startGateway, type Gateway, type WelcomeMessage } from '../examples/gateway';
import { HEARTBEAT_KEY, keys } from '../src/stores/redis/keys';
import { DestroyReason, SessionStatus, sessionWorkflowId, type SessionClient, type SessionView } from '../src/client';
import { devServerEnv } from './helpers/temporal';
import { nanoid, seedApp, startStack, testConfig, testLogger } from './helpers/stack';
import { waitUntil, withTimeout } from './helpers/wait';

const IDLE = 1_000;
const ROOT = path.resolve(__dirname, '..');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

/** A real websocket client; `welcome` is the gateway's answer once the session is registered. */
function openClient(port: number, query: Record<string, string>, options: WebSocket.ClientOptions = {}) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/?${new URLSearchParams(query).toString()}`, options);
  const welcome = new Promise<WelcomeMessage>((resolve, reject) => {
    ws.once('message', (data: WebSocket.RawData) => resolve(JSON.parse((data as Buffer).toString()) as WelcomeMessage));
    ws.once('close', (code, reason) => reject(new Error(`closed before welcome: ${code} ${reason.toString()}`)));
    ws.once('error', reject);
  });
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  // Neither is awaited by every test: keep an early rejection from being unhandled.
  welcome.catch(() => undefined);
  return { ws, welcome: withTimeout('welcome', welcome), closed };
}

describe('example gateway end to end (dev server, real sockets)', () => {
  let env: TestWorkflowEnvironment;
  let stack: Awaited<ReturnType<typeof startStack>>;
  let gateway: Gateway;
  let appPid: string;
  let sessions: SessionClient;
  const clients: WebSocket[] = [];

  beforeAll(async () => {
    env = await devServerEnv();
    stack = await startStack(env, testConfig({ WS_IDLE_TIMEOUT_MS: String(IDLE) }));
    ({ appPid } = await seedApp(stack.resources));
    // Real time: the lease renews on its own timer, as in a gateway process.
    sessions = stack.newClient({ autoTick: true });
    gateway = await startGateway({
      port: 0,
      host: '127.0.0.1',
      sessionClient: sessions,
      idleTimeoutMs: IDLE,
      logger: testLogger,
    });
  });
  afterAll(async () => {
    for (const ws of clients) ws.terminate();
    await gateway?.close();
    await stack?.stop();
    await env?.teardown();
  });

  const client = (port: number, query: Record<string, string>, options?: WebSocket.ClientOptions) => {
    const c = openClient(port, { appPid, keyId: nanoid(), ...query }, options);
    clients.push(c.ws);
    return c;
  };
  const describeSession = (cid: string) => sessions.describe(cid);
  const waitForState = (cid: string, what: string, ok: (st: SessionView) => boolean) =>
    waitUntil(`${cid} ${what}`, async () => {
      const st = await describeSession(cid);
      return st && ok(st) ? st : null;
    });

  /** Everything a destroyed session leaves behind, per spec §4.1 and §5. */
  async function expectCleanedUp(cid: string) {
    const redis = stack.resources.redis;
    expect(await redis.exists(keys.active(cid))).toBe(0);
    expect(await redis.zscore(HEARTBEAT_KEY, cid)).toBeNull();
    const { rows } = await stack.resources.pg.query<{ disconnectedAt: Date | null }>(
      'SELECT "disconnectedAt" FROM sessions WHERE "connectionId" = $1',
      [cid],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]!.disconnectedAt).toBeInstanceOf(Date);
  }

  it('a clean close: connected -> disconnected -> destroyed, and nothing left behind', async () => {
    const c = client(gateway.port, {});
    const { connectionId: cid, socketId } = await c.welcome;
    expect(cid.startsWith(`${appPid}:`)).toBe(true);
    expect(socketId).toMatch(UUID);

    const live = await waitForState(cid, 'connected', (st) => st.status === SessionStatus.connected);
    expect(live.socketId).toBe(socketId);
    expect(live.session.uid).toBe(cid); // anonymous: uid is the connectionId
    // The connect effect (an activity) marks it live a moment after the state shows it connected.
    await waitUntil('marked live', async () => (await stack.resources.redis.exists(keys.active(cid))) === 1);
    expect(await stack.resources.redis.zscore(HEARTBEAT_KEY, cid)).not.toBeNull();

    c.ws.close(1000, 'bye');
    expect(await withTimeout('client close', c.closed)).toBe(1000);
    const closed = await waitForState(cid, 'closed', (st) => st.status !== SessionStatus.connected);
    expect(closed.disconnectedAt).not.toBeNull();
    expect([SessionStatus.disconnected, SessionStatus.destroyed]).toContain(closed.status);

    const final: SessionView = await withTimeout(
      'workflow result',
      env.client.workflow.getHandle(sessionWorkflowId(cid)).result(),
    );
    expect(final.status).toBe(SessionStatus.destroyed);
    expect(final.destroyReason).toBe(DestroyReason.closed);
    expect(final.socketId).toBe(socketId);
    await expectCleanedUp(cid);
    const events = await stack.resources.pg.query<{ connectionEventType: string; socketId: string }>(
      'SELECT "connectionEventType", "socketId" FROM connections WHERE "connectionId" = $1 ORDER BY "connectionEventType"',
      [cid],
    );
    expect(events.rows).toEqual([
      { connectionEventType: 'connect', socketId },
      { connectionEventType: 'disconnect', socketId },
    ]);
  });

  it('a reconnect sends the old connectionId, gets a new socketId and keeps the session', async () => {
    const clientId = `client-${nanoid(6)}`;
    const first = client(gateway.port, { clientId });
    const { connectionId: cid, socketId: firstSocket } = await first.welcome;
    first.ws.close();
    await withTimeout('client close', first.closed);
    // Straight back, as a client does: its old socket's close and the new open may reach the
    // workflow in either order (a late close of the old socket is stale and ignored).

    const second = client(gateway.port, { clientId, connectionId: cid });
    const again = await second.welcome;
    expect(again.connectionId).toBe(cid);
    expect(again.socketId).toMatch(UUID);
    expect(again.socketId).not.toBe(firstSocket);
    const st = await waitForState(cid, 'reconnected', (x) => x.socketId === again.socketId);
    expect(st.status).toBe(SessionStatus.connected);
    expect(st.counts.reconnects).toBe(1);
    expect(st.session.uid).toBe(clientId);
    expect(st.hardDestroyAt).toBeNull();

    second.ws.close();
    const final = await waitForState(cid, 'destroyed', (x) => x.status === SessionStatus.destroyed);
    expect(final.destroyReason).toBe(DestroyReason.closed);
    await expectCleanedUp(cid);
  });

  it('a graceful gateway shutdown closes its sockets and reports every close before it returns', async () => {
    const other = await startGateway({
      port: 0,
      host: '127.0.0.1',
      sessionClient: stack.client,
      idleTimeoutMs: IDLE,
      logger: testLogger,
    });
    const c = client(other.port, {});
    const { connectionId: cid } = await c.welcome;
    await other.close();
    expect(await withTimeout('client close', c.closed)).toBe(1001);
    // close() waited for the `disconnected` signal; queries see every signal accepted before them.
    const st = await describeSession(cid);
    expect(st?.status).toBe(SessionStatus.disconnected);
    expect(st?.disconnectedAt).not.toBeNull();
  });

  it('a client that stops answering pings is cut off by the idle timeout and its session destroyed', async () => {
    // Pongs by hand, so the test decides when the client goes quiet.
    const c = client(gateway.port, {}, { autoPong: false });
    let answering = true;
    c.ws.on('ping', (data: Buffer) => {
      if (answering) c.ws.pong(data);
    });
    const { connectionId: cid } = await c.welcome;
    // Live while it answers: the lease keeps its marker (pongs themselves cost the workflow nothing).
    await new Promise((r) => setTimeout(r, 4 * IDLE));
    expect(await stack.resources.redis.exists(keys.active(cid))).toBe(1);
    expect((await describeSession(cid))?.status).toBe(SessionStatus.connected);

    answering = false;
    // The gateway terminates the socket (no close frame: 1006 on the client's side).
    expect(await withTimeout('idle timeout', c.closed)).toBe(1006);
    const final = await waitForState(cid, 'destroyed', (st) => st.status === SessionStatus.destroyed);
    expect(final.destroyReason).toBe(DestroyReason.closed);
    expect(final.disconnectedAt).not.toBeNull();
    await expectCleanedUp(cid);
  });

  describe('a gateway process killed with SIGKILL', () => {
    let child: ChildProcess | undefined;
    let output = '';
    let killed = false;
    const killGroup = () => {
      // detached: the child leads its own process group (npx -> tsx -> node); kill all of it, or
      // the node process holding the sockets would outlive npx.
      if (!child?.pid || killed) return;
      killed = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    afterAll(killGroup);

    it('sends no close: its lease lapses and every one of its sessions is closed as gateway-lost and destroyed', async () => {
      child = spawn('npx', ['tsx', 'examples/gateway.ts'], {
        cwd: ROOT,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          ...process.env,
          TEMPORAL_ADDRESS: env.address,
          TEMPORAL_NAMESPACE: env.namespace ?? 'default',
          TEMPORAL_TASK_QUEUE: stack.taskQueue,
          TEMPORAL_TLS: 'false',
          WS_IDLE_TIMEOUT_MS: String(IDLE),
          GATEWAY_PORT: '0',
          LOG_LEVEL: 'info',
          LOCALHOST: 'false',
        },
      });
      const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
        child!.once('exit', (code, signal) => resolve(signal ?? code)),
      );
      child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      // The gateway logs one JSON line per event; the port is in `gateway listening`.
      const listening = new Promise<number>((resolve, reject) => {
        child!.stdout!.on('data', (d: Buffer) => {
          output += d.toString();
          const line = output.split('\n').find((l) => l.includes('"gateway listening"'));
          if (line) resolve((JSON.parse(line) as { port: number }).port);
        });
        void exited.then((why) => reject(new Error(`gateway exited (${String(why)}):\n${output}`)));
      });
      const port = await withTimeout('the gateway to listen', listening).catch((err: Error) => {
        throw new Error(`${err.message}\n${output}`);
      });

      const sockets = [
        client(port, {}),
        client(port, { clientId: `client-${nanoid(6)}` }),
        client(port, { clientId: `client-${nanoid(6)}` }),
      ];
      const cids = (await Promise.all(sockets.map((s) => s.welcome))).map((w) => w.connectionId);
      // Held by the child's lease: every session live and in its gateway's index.
      for (const cid of cids) await waitForState(cid, 'connected', (st) => st.status === SessionStatus.connected);
      const holder = (await describeSession(cids[0]!))!.holder;
      expect(holder.gatewayId).toBe('example-0');
      await new Promise((r) => setTimeout(r, 2 * IDLE)); // a renewal or two
      const killedAt = Date.now();

      killGroup();
      expect(await withTimeout('the gateway to die', exited)).toBe('SIGKILL');
      await Promise.all(sockets.map((s) => withTimeout('client close', s.closed)));

      for (const cid of cids) {
        const final = await waitForState(cid, 'destroyed', (st) => st.status === SessionStatus.destroyed);
        // No close ever reached it: its lease lapsed, and it closed as of the gateway's last renewal.
        expect(final.destroyReason).toBe(DestroyReason.gatewayLost);
        expect(final.holder).toEqual(holder);
        expect(Date.parse(final.disconnectedAt!)).toBeLessThanOrEqual(killedAt);
        expect(Date.parse(final.disconnectedAt!)).toBeGreaterThan(killedAt - 3 * IDLE);
        expect(final.counts.staleDisconnects).toBe(0);
        await expectCleanedUp(cid);
      }
    });
  });
});
