import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { PoolClient } from 'pg';
import { HEARTBEAT_KEY, keys } from '../src/stores/redis/keys';
import { DestroyReason, SessionClient, SessionStatus, sessionWorkflowId, type SessionView } from '../src/client';
import { openResources, type Resources } from '../src/service/resources';
import type { Session } from '../src/contracts/session';
import { SessionStatusKey } from '../src/contracts/search-attributes';
import { devServerEnv } from './helpers/temporal';
import { makeSession, nanoid, seedApp, testConfig } from './helpers/stack';
import { waitUntil, withTimeout } from './helpers/wait';

/**
 * The real worker entry (`node --import tsx src/service/worker-main.ts`, what `npm run worker` and the Docker
 * image run)
 * as a child process against a dev server: its health endpoints scraped, then a SIGTERM while
 * destroy activities are in flight, and a fresh worker that finishes every session.
 */
// Short, but long enough that a few sequential calls fit in the liveness window (4 × idle).
const IDLE = 2_000;
const ROOT = path.resolve(__dirname, '..');

function listen(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(port, '0.0.0.0', () => resolve(server));
  });
}
const close = (server: net.Server) => new Promise<void>((resolve) => server.close(() => resolve()));

/** A free port p with p + 1 free too: the worker's health server and its Prometheus exporter. */
async function freePortPair(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const first = await listen(0);
    const port = (first.address() as net.AddressInfo).port;
    try {
      if (port >= 65534) continue;
      const second = await listen(port + 1).catch(() => null);
      if (!second) continue;
      await close(second);
      return port;
    } finally {
      await close(first);
    }
  }
  throw new Error('no free port pair');
}

interface LogRecord {
  msg?: string;
  level?: string;
  [field: string]: unknown;
}

interface WorkerChild {
  child: ChildProcess;
  records: LogRecord[];
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log record `match` accepts; rejects if the process exits first. */
  logged(what: string, match: (r: LogRecord) => boolean): Promise<LogRecord>;
  killGroup(): void;
}

describe('worker process (node --import tsx src/service/worker-main.ts, dev server)', () => {
  let env: TestWorkflowEnvironment;
  let resources: Resources;
  let sessions: SessionClient;
  let appPid: string;
  let metricsPort: number;
  const config = testConfig({ WS_IDLE_TIMEOUT_MS: String(IDLE) });
  const taskQueue = `tq-proc-${nanoid(8)}`;
  const children: WorkerChild[] = [];
  let current: WorkerChild | undefined;

  beforeAll(async () => {
    env = await devServerEnv();
    resources = openResources(config);
    ({ appPid } = await seedApp(resources));
    metricsPort = await freePortPair();
    sessions = new SessionClient(env.client, { taskQueue, idleTimeoutMs: IDLE, gatewayId: `gw-${taskQueue}` });
  }, 120_000);

  afterAll(async () => {
    for (const w of children) w.killGroup();
    await Promise.all(children.map((w) => withTimeout('worker exit', w.exited, 10_000).catch(() => undefined)));
    await resources?.close();
    await env?.teardown();
  }, 60_000);

  /** The worker entry in its own process group, with the test's configuration. */
  function startWorker(): WorkerChild {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/service/worker-main.ts'], {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        DB_HOST: config.db.host,
        DB_PORT: String(config.db.port),
        DB_NAME: config.db.name,
        DB_USER: config.db.user,
        DB_PASSWORD: config.db.password,
        DB_TLS_DISABLED: String(!config.db.tls),
        REDIS_HOST: config.redis.host,
        REDIS_PORT: String(config.redis.port),
        REDIS_TLS_DISABLED: String(!config.redis.tls),
        RABBIT_MQ_CONNECTION_STRING: config.rabbitmq.url,
        RABBIT_MQ_QUEUE_COUNT: String(config.rabbitmq.queueCount),
        TEMPORAL_ADDRESS: env.address,
        TEMPORAL_NAMESPACE: env.namespace ?? 'default',
        TEMPORAL_TASK_QUEUE: taskQueue,
        TEMPORAL_TLS: 'false',
        METRICS_PORT: String(metricsPort),
        WS_IDLE_TIMEOUT_MS: String(IDLE),
        LOG_LEVEL: 'info',
        LOCALHOST: 'false',
      },
    });
    let out = '';
    let pending = '';
    const records: LogRecord[] = [];
    const waiters: { match: (r: LogRecord) => boolean; resolve: (r: LogRecord) => void }[] = [];
    const onRecord = (r: LogRecord) => {
      records.push(r);
      for (const w of waiters.splice(0)) {
        if (w.match(r)) w.resolve(r);
        else waiters.push(w);
      }
    };
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      pending += d.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        try {
          onRecord(JSON.parse(line) as LogRecord);
        } catch {
          // not one of ours
        }
      }
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    let killed = false;
    const w: WorkerChild = {
      child,
      records,
      output: () => out,
      exited,
      logged: (what, match) => {
        const found = records.find(match);
        if (found) return Promise.resolve(found);
        return new Promise<LogRecord>((resolve, reject) => {
          waiters.push({ match, resolve });
          void exited.then(({ code, signal }) =>
            reject(new Error(`worker exited (${code ?? signal}) before ${what}:\n${out}`)),
          );
        });
      },
      killGroup: () => {
        // detached: the worker leads its own process group; kill it with anything it started.
        if (!child.pid || killed || child.exitCode !== null || child.signalCode !== null) return;
        killed = true;
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      },
    };
    children.push(w);
    return w;
  }

  async function runningWorker(): Promise<WorkerChild> {
    if (current && current.child.exitCode === null && current.child.signalCode === null) return current;
    const w = startWorker();
    current = w;
    await withTimeout(
      'the "worker running" log line',
      w.logged('"worker running"', (r) => r.msg === 'worker running'),
      90_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${w.output()}`);
    });
    return w;
  }

  const url = (route: string) => `http://127.0.0.1:${metricsPort}${route}`;
  const state = async (s: Session): Promise<SessionView | null> => sessions.describe(s.connectionId);
  const waitForState = (s: Session, what: string, ok: (st: SessionView) => boolean, timeoutMs?: number) =>
    waitUntil(
      `${s.connectionId} ${what}`,
      async () => {
        const st = await state(s);
        return st && ok(st) ? st : null;
      },
      timeoutMs,
    );
  const tail = (text: string, lines = 30) => text.split('\n').slice(-lines).join('\n');
  /** For a failure message: the workflow's status and history, event by event. */
  async function explain(s: Session): Promise<string> {
    try {
      const handle = env.client.workflow.getHandle(sessionWorkflowId(s.connectionId));
      const { status } = await handle.describe();
      const { events } = await handle.fetchHistory();
      const types = (events ?? []).map((e) => {
        const type = e.eventType ? temporal.api.enums.v1.EventType[e.eventType] : '?';
        return `${Number(e.eventTime?.seconds ?? 0) % 1000}s ${type?.replace('EVENT_TYPE_', '')}`;
      });
      return `workflow ${status.name}; history:\n  ${types.join('\n  ')}`;
    } catch (err) {
      return `no description: ${err instanceof Error ? err.message : String(err)}`;
    }
  }

  async function sessionRow(cid: string) {
    const { rows } = await resources.pg.query<{ disconnectedAt: Date | null }>(
      'SELECT "disconnectedAt" FROM sessions WHERE "connectionId" = $1',
      [cid],
    );
    return rows;
  }

  /** Subscription keys a gateway would have written for the connection; the destroy purges them. */
  async function seedSubscriptions(s: Session) {
    const room = `${appPid}:room-${nanoid(6)}`;
    await resources.redis
      .multi()
      .hset(keys.rooms(s.connectionId), room, '1')
      .hset(keys.roomSubscriptions(s.connectionId, 'subscriptions', room), 'sub', '1')
      .exec();
    return room;
  }

  /** Everything a destroyed session leaves behind, per spec §4.1 and §5. */
  async function expectCleanedUp(s: Session, room: string) {
    const redis = resources.redis;
    const cid = s.connectionId;
    expect(
      await redis.exists(keys.active(cid), keys.rooms(cid), keys.roomSubscriptions(cid, 'subscriptions', room)),
    ).toBe(0);
    expect(await redis.zscore(HEARTBEAT_KEY, cid)).toBeNull();
    const rows = await sessionRow(cid);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.disconnectedAt).toBeInstanceOf(Date);
  }

  async function connect(s: Session) {
    await sessions.connected(s);
    // The connect effect has run: the session row exists and the active marker is set.
    await waitUntil(`${s.connectionId} connect effects`, async () => {
      const rows = await sessionRow(s.connectionId);
      return rows.length === 1 && (await resources.redis.exists(keys.active(s.connectionId))) === 1;
    });
    return seedSubscriptions(s);
  }

  it('serves /healthz, /readyz and /metrics, with session and Temporal metrics after a lifecycle', async () => {
    await runningWorker();

    const healthz = await fetch(url('/healthz'));
    expect(healthz.status).toBe(200);
    expect(await healthz.json()).toEqual({ status: 'ok' });

    // Ready once the worker polls and the backing services answer (rabbitmq connects lazily).
    const ready = await waitUntil('/readyz 200', async () => {
      const r = await fetch(url('/readyz'));
      return r.status === 200 ? ((await r.json()) as { ready: boolean; checks: Record<string, string> }) : null;
    });
    expect(ready).toEqual({
      ready: true,
      checks: { temporal: 'ok', redis: 'ok', postgres: 'ok', rabbitmq: 'ok' },
    });
    expect((await fetch(url('/nope'))).status).toBe(404);

    // One real session: connected -> disconnected -> destroyed (4 × idle after the close).
    const s = makeSession(appPid);
    const room = await connect(s);
    expect((await state(s))!.status).toBe(SessionStatus.connected);
    expect(await sessions.disconnected(s)).toBe(true);
    const closed = await waitForState(s, 'disconnected', (st) => st.status !== SessionStatus.connected);
    expect(closed.disconnectedAt).not.toBeNull();
    const final = await waitForState(s, 'destroyed', (st) => st.status === SessionStatus.destroyed);
    expect(final.destroyReason).toBe(DestroyReason.closed);
    await expectCleanedUp(s, room);

    // Workflow metrics reach the exporter a moment after the workflow task that recorded them.
    const metrics = await waitUntil('tether metrics on /metrics', async () => {
      const r = await fetch(url('/metrics'));
      if (r.status !== 200) return null;
      const text = await r.text();
      return /^tether_sessions_destroyed_total\{/m.test(text) ? text : null;
    });
    const samples = metrics
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => {
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(l);
        return m ? { name: m[1]!, labels: m[2] ?? '', value: Number(m[3]) } : null;
      })
      .filter((x): x is { name: string; labels: string; value: number } => x !== null);
    const sum = (name: string, ...labels: string[]) =>
      samples
        .filter((x) => x.name === name && labels.every((l) => x.labels.includes(l)))
        .reduce((a, x) => a + x.value, 0);

    // Ours (workflow metric meter): counters get `_total`; labels namespace/taskQueue/workflowType.
    expect(sum('tether_sessions_started_total', `taskQueue="${taskQueue}"`)).toBeGreaterThanOrEqual(1);
    expect(
      sum('tether_sessions_destroyed_total', 'reason="closed"', `taskQueue="${taskQueue}"`),
    ).toBeGreaterThanOrEqual(1);
    // The SDK's own metrics, from the same exporter (labels task_queue/workflow_type/activity_type).
    expect(sum('temporal_workflow_completed_total', `task_queue="${taskQueue}"`)).toBeGreaterThanOrEqual(1);
    expect(
      sum('temporal_activity_execution_latency_count', 'activity_type="hardDestroySession"'),
    ).toBeGreaterThanOrEqual(1);
    expect(sum('temporal_worker_start_total')).toBeGreaterThanOrEqual(1);
    expect(samples.some((x) => x.name.startsWith('temporal_'))).toBe(true);
  });

  it('SIGTERM while destroy activities are in flight: exits 0 once drained; a fresh worker loses nothing', async () => {
    const worker = await runningWorker();

    // inFlight: destroys blocked on a row lock when the signal arrives. pending: closed just before
    // the signal, their destroy timers not yet fired.
    const inFlight = Array.from({ length: 4 }, () => makeSession(appPid));
    const pending = Array.from({ length: 3 }, () => makeSession(appPid));
    const rooms = new Map<string, string>();
    const open = async (group: Session[]) => {
      const seeded = await Promise.all(group.map((s) => connect(s)));
      group.forEach((s, i) => rooms.set(s.connectionId, seeded[i]!));
    };

    await open(inFlight);
    for (const s of inFlight) expect(await sessions.disconnected(s)).toBe(true);
    // The disconnect effects of inFlight done (rows written), then their session rows locked: the
    // destroy's last step, `UPDATE sessions SET "disconnectedAt"`, blocks until the lock goes.
    await waitUntil('disconnect rows', async () => {
      const { rows } = await resources.pg.query<{ n: string }>(
        `SELECT count(*) AS n FROM connections WHERE "connectionId" = ANY($1) AND "connectionEventType" = 'disconnect'`,
        [inFlight.map((s) => s.connectionId)],
      );
      return Number(rows[0]!.n) === inFlight.length;
    });
    const locker: PoolClient = await resources.pg.connect();
    let locked = false;
    const unlock = async () => {
      if (!locked) return;
      locked = false;
      await locker.query('ROLLBACK');
    };
    try {
      await locker.query('BEGIN');
      locked = true;
      await locker.query('SELECT 1 FROM sessions WHERE "connectionId" = ANY($1) FOR UPDATE', [
        inFlight.map((s) => s.connectionId),
      ]);
      const lockerPid = (await locker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const blocked = async () => {
        const { rows } = await resources.pg.query<{ n: string }>(
          `SELECT count(*) AS n FROM pg_stat_activity
           WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE '%UPDATE sessions SET "disconnectedAt"%'`,
          [lockerPid],
        );
        return Number(rows[0]!.n);
      };
      await waitUntil('every inFlight destroy blocked in Postgres', async () => (await blocked()) === inFlight.length);

      await open(pending);
      for (const s of pending) expect(await sessions.disconnected(s)).toBe(true);
      // Still running (from the server: a query would wait for the workflow tasks held by the lock).
      for (const s of [...inFlight, ...pending])
        expect((await env.client.workflow.getHandle(sessionWorkflowId(s.connectionId)).describe()).status.name).toBe(
          'RUNNING',
        );

      // What `docker stop` does: SIGTERM to the worker process (PID 1 in the image).
      worker.child.kill('SIGTERM');
      await withTimeout(
        'the worker to see SIGTERM',
        worker.logged('SIGTERM', (r) => r.msg?.startsWith('SIGTERM') ?? false),
      );
      // Draining: the worker waits for its activities, which are still stuck on the lock.
      await new Promise((r) => setTimeout(r, 1_500));
      expect(worker.child.exitCode).toBeNull();
      expect(await blocked()).toBe(inFlight.length);
      await unlock();

      const exit = await withTimeout('the worker to exit', worker.exited).catch((err: Error) => {
        throw new Error(`${err.message}\n${worker.output()}`);
      });
      if (exit.code !== 0) throw new Error(`worker exited with ${exit.code ?? exit.signal}:\n${worker.output()}`);
      expect(worker.records.find((r) => r.msg === 'stopped')).toMatchObject({ exitCode: 0 });
      expect(worker.records.some((r) => r.msg === 'worker stopped')).toBe(true);
      expect(worker.records.filter((r) => r.level === 'error' || r.msg?.startsWith('cleanup failed'))).toEqual([]);
    } finally {
      await unlock().catch(() => undefined);
      locker.release();
    }

    // The in-flight activities finished during the drain, before the process went.
    for (const s of inFlight) expect((await sessionRow(s.connectionId))[0]!.disconnectedAt).toBeInstanceOf(Date);
    // No worker now: every session is still a running workflow (the task that records a finished
    // hard destroy needs a worker), none shown destroyed (the server's view: search attributes need
    // no worker, unlike the state query). inFlight's soft destroys ran: shown disconnected; pending's
    // grace has not ended for the server (no worker ran their soft destroy): still shown connected.
    for (const [group, shown] of [
      [inFlight, SessionStatus.disconnected],
      [pending, SessionStatus.connected],
    ] as const) {
      for (const s of group) {
        const d = await env.client.workflow.getHandle(sessionWorkflowId(s.connectionId)).describe();
        expect(d.status.name).toBe('RUNNING');
        expect(d.typedSearchAttributes.get(SessionStatusKey)).toBe(shown);
      }
    }

    // A fresh worker on the same task queue takes the sessions over: every one is destroyed. (A task
    // the old worker had been handed as it stopped comes back after its timeout: up to 30 s.)
    const fresh = await runningWorker();
    for (const s of [...inFlight, ...pending]) {
      const final = await waitForState(s, 'destroyed', (st) => st.status === SessionStatus.destroyed, 90_000).catch(
        async (err: Error) => {
          throw new Error(`${err.message}\n${await explain(s)}\nfresh worker:\n${tail(fresh.output())}`);
        },
      );
      expect(final.destroyReason).toBe(DestroyReason.closed);
      await expectCleanedUp(s, rooms.get(s.connectionId)!);
    }
  }, 180_000);

  it('SIGKILL inside an effect (the soft destroy recording the close, blocked in Postgres): a new worker runs it again, once', async () => {
    const worker = await runningWorker();
    const s = makeSession(appPid);
    const room = await connect(s);
    const locker: PoolClient = await resources.pg.connect();
    let locked = false;
    try {
      await locker.query('BEGIN');
      locked = true;
      // The close's first Postgres write, the sessions upsert (in the soft destroy 5 s later), waits for this row lock.
      await locker.query('SELECT 1 FROM sessions WHERE "connectionId" = $1 FOR UPDATE', [s.connectionId]);
      expect(await sessions.disconnected(s)).toBe(true);
      await waitUntil('the close effect blocked in Postgres', async () => {
        const { rows } = await resources.pg.query<{ n: string }>(
          `SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO sessions%'`,
        );
        return Number(rows[0]!.n) >= 1;
      });
      worker.killGroup();
      await withTimeout('the worker to die', worker.exited);
      await locker.query('ROLLBACK');
      locked = false;
    } finally {
      if (locked) await locker.query('ROLLBACK').catch(() => undefined);
      locker.release();
    }
    // The killed worker's activity times out (10 s); the next worker runs the effect again.
    const fresh = await runningWorker();
    const final = await waitForState(s, 'destroyed', (st) => st.status === SessionStatus.destroyed, 90_000).catch(
      async (err: Error) => {
        throw new Error(`${err.message}\n${await explain(s)}\nfresh worker:\n${tail(fresh.output())}`);
      },
    );
    expect(final.destroyReason).toBe(DestroyReason.closed);
    await expectCleanedUp(s, room);
    const { rows } = await resources.pg.query<{ connectionEventType: string }>(
      'SELECT "connectionEventType" FROM connections WHERE "connectionId" = $1 ORDER BY 1',
      [s.connectionId],
    );
    expect(rows.map((r) => r.connectionEventType)).toEqual(['connect', 'disconnect']);
    const { events } = await env.client.workflow.getHandle(sessionWorkflowId(s.connectionId)).fetchHistory();
    const types = (events ?? []).map((e) => e.eventType);
    expect(types).not.toContain(temporal.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED);
    // The soft destroy that completed was a second attempt: the first died with its worker.
    const scheduled = (events ?? []).find(
      (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'softDestroySession',
    );
    const started = (events ?? []).find(
      (e) => e.activityTaskStartedEventAttributes?.scheduledEventId?.toString() === scheduled?.eventId?.toString(),
    );
    expect(started?.activityTaskStartedEventAttributes?.attempt).toBeGreaterThanOrEqual(2);
  }, 180_000);
});
