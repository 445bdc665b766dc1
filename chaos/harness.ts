import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Connection } from '@temporalio/client';
import Redis from 'ioredis';
import { mapLimit } from '../harness/map-limit';
import { randomId } from '../harness/random-id';
import { Rng } from '../harness/rng';
import { seedApp, seedUsers } from '../harness/seed';
import { sleep } from '../harness/sleep';
import { NAMESPACE, TemporalDevServer } from '../harness/temporal-server';
import { writeWorkflowBundle } from '../harness/workflow-bundle';
import { workerEnv } from '../harness/worker-protocol';
import { keys } from '../src/stores/redis/keys';
import { SessionClient } from '../src/client';
import { loadConfig, type Config } from '../src/config';
import { createPgPool } from '../src/service/resources';
import { BroadcastRecorder, type Broadcast } from './broadcasts';
import { count, violate, type App, type ChaosContext, type Scenario, type SeededUser, type Tracked } from './context';
import { describeStatus, gw, newTracked, type Conn } from './driver';
import { checkFinalSessions, checkHistories, checkUsers, settle, verifyLive, type HistoryStats } from './invariants';
import { fuzzClient, fuzzRawSignals, type ClientFuzzResult, type FuzzBase, type RawFuzzResult } from './malformed';
import { serviceOf, type ChaosOptions, type FaultKind } from './options';
import { buildReport, type ChaosReport, type FaultRecord } from './report';
import { GATEWAY_LOST_SLACK_MS, HarnessGateway, gatewayKill } from './gateways';
import { CHURN_WEIGHTS, SILENT_FORWARD_MS, longLived, runScenario } from './scenarios';
import { Services } from './services';
import { errorText } from './error-text';
import { sessionTrace } from './trace';
import { WorkerSupervisor } from './worker-supervisor';

/**
 * `npm run chaos`: the real stack (own Temporal dev server, worker child process, the machine's
 * Redis/Postgres/RabbitMQ) under a churn of sessions while faults are injected; then the invariant
 * checker. Returns the report; the caller prints and stores it.
 */
export async function runChaos(opts: ChaosOptions, outer?: AbortSignal): Promise<ChaosReport> {
  const started = Date.now();
  const runId = `${new Date(started).toISOString().replace(/[-:T]/g, '').slice(0, 14)}-${randomId(6)}`;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const stamp = (msg: string) => log(`[chaos ${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${msg}`);
  const aborter = new AbortController();
  const onOuterAbort = () => aborter.abort();
  outer?.addEventListener('abort', onOuterAbort, { once: true });
  const runTimer = setTimeout(() => {
    stamp(`run exceeded ${opts.maxRunMs} ms: aborting`);
    aborter.abort();
  }, opts.maxRunMs);

  const config: Config = loadConfig({
    ...process.env,
    WS_IDLE_TIMEOUT_MS: String(opts.idleMs),
    LOG_LEVEL: 'info',
  });
  const services = new Services(config);
  const temp = mkdtempSync(path.join(tmpdir(), 'tether-chaos-'));

  const faults: FaultRecord[] = [];
  const notes: string[] = [];
  const outagesRun: { kind: string; from: string; to: string }[] = [];
  let server: TemporalDevServer | undefined;
  let supervisor: WorkerSupervisor | undefined;
  let connection: Connection | undefined;
  let redis: Redis | undefined;
  let pg: ReturnType<typeof createPgPool> | undefined;
  let recorder: BroadcastRecorder | undefined;
  const killChildren = () => {
    supervisor?.killSync();
    server?.killSync();
  };
  process.on('exit', killChildren);
  longLived.clear();

  let ctx: ChaosContext | undefined;
  let clientFuzz: ClientFuzzResult | undefined;
  let rawFuzz: RawFuzzResult | undefined;
  let history: HistoryStats | undefined;
  let userTotals = { edges: 0, connects: 0, disconnects: 0 };
  let broadcasts: Broadcast[] = [];
  let churnLaunched = 0;
  let stillRunning = -1;
  const phases: Record<string, number> = {};
  const phase = (name: string) => {
    phases[name] = Date.now() - started;
    stamp(`— ${name}`);
  };

  try {
    // Services must be up to begin with (a previous run interrupted hard may have left one down).
    const restored = await services.restoreAll();
    if (restored.length) notes.push(`services started before the run: ${restored.join(', ')}`);

    phase('temporal dev server');
    server = await TemporalDevServer.create({
      dbFile: path.join(temp, 'temporal.db'),
      logFile: path.join(temp, 'temporal.log'),
    });
    await server.start();

    phase('bundle + worker');
    const bundleFile = await writeWorkflowBundle(require.resolve('../src/workflows'), path.join(temp, 'workflows.js'));
    const taskQueue = `chaos-${runId}`;
    supervisor = new WorkerSupervisor(
      workerEnv({
        address: server.address,
        namespace: NAMESPACE,
        taskQueue,
        bundleFile,
        logLevel: 'info',
        idleTimeoutMs: opts.idleMs,
      }),
      path.join(temp, 'worker.log'),
    );
    if (opts.noWorker) notes.push('--no-worker: the worker was never started');
    else await supervisor.start();

    const opened = await server.connectClient();
    connection = opened.connection;
    const temporal = opened.client;
    const sessions = new SessionClient(temporal, {
      taskQueue,
      idleTimeoutMs: opts.idleMs,
      gatewayId: `chaos-${taskQueue}`,
    });
    // The harness's own clients wait out outages instead of failing (the gateway would retry).
    redis = new Redis({
      host: config.redis.host,
      port: config.redis.port,
      maxRetriesPerRequest: null,
      lazyConnect: false,
    });
    redis.on('error', () => undefined);
    pg = createPgPool(config);
    pg.on('error', () => undefined);

    phase('seed apps and users');
    const apps: App[] = [];
    for (let i = 0; i < 3; i++) apps.push(await seedApp(pg, `chaos ${runId}`));
    const users: SeededUser[] = [];
    for (const app of apps) {
      const clientIds = Array.from({ length: 4 }, () => `chaos-${randomId(10)}`);
      for (const user of await seedUsers(pg, clientIds, { appId: app.appId })) users.push({ appPid: app.appPid, user });
    }
    const unknownAppPid = randomId(12);
    recorder = new BroadcastRecorder(config, runId);
    await recorder.setup([...apps.map((a) => a.appPid), unknownAppPid]);

    const rng = new Rng(opts.seed);
    const c: ChaosContext = {
      temporal,
      connection,
      sessions,
      // set right below (it needs the context)
      forgetful: undefined as unknown as HarnessGateway,
      gateways: [],
      redis,
      pg,
      apps,
      users,
      unknownAppPid,
      idleMs: opts.idleMs,
      pongEveryMs: Math.floor(opts.idleMs / 2),
      taskQueue,
      rng,
      tracked: [],
      violations: [],
      counters: {},
      signal: aborter.signal,
      log: stamp,
    };
    c.forgetful = new HarnessGateway(c, `chaos-${taskQueue}-forgetful`, {
      forgetful: true,
      heartbeatForwardIntervalMs: SILENT_FORWARD_MS(opts.idleMs),
    });
    c.forgetful.start();
    ctx = c;
    const sup = supervisor;
    const srv = server;

    phase('long-lived sessions');
    const live: Tracked[] = [];
    for (let i = 0; i < opts.longLived; i++) {
      const user = i % 2 === 0 ? users[i % users.length] : undefined;
      const t = newTracked(c, 'long-lived', user ? { appPid: user.appPid, user: user.user } : {});
      live.push(t);
    }
    await mapLimit(live, 8, (t) => runScenario(c, 'long-lived', t));

    const fuzzBase: FuzzBase = {
      appPid: apps[0]!.appPid,
      otherAppPid: apps[1]!.appPid,
      user: { id: users[0]!.user.id, clientId: users[0]!.user.clientId, username: 'fuzz' },
    };

    // ---- churn, fuzz and faults, concurrently
    phase('churn + faults');
    let faultsDone = false;
    const stopChurn = () =>
      aborter.signal.aborted || opts.sessions === 0 || (faultsDone && churnLaunched >= opts.sessions);
    const churn = (async () => {
      const running = new Set<Promise<unknown>>();
      while (!stopChurn()) {
        while (running.size < opts.concurrency && !stopChurn()) {
          const scenario = rng.weighted(CHURN_WEIGHTS as Record<Scenario, number>);
          churnLaunched++;
          const p = sleep(rng.int(0, 300)).then(() => runScenario(c, scenario));
          running.add(p);
          void p.finally(() => running.delete(p));
          if (churnLaunched % 100 === 0)
            stamp(`${churnLaunched} sessions started, ${c.violations.length} violations so far`);
        }
        await Promise.race([...running, sleep(250)]);
      }
      await Promise.all(running);
    })();

    const fuzz = (async () => {
      clientFuzz = await fuzzClient(c, fuzzBase, opts.clientFuzzRuns, opts.seed);
      stamp(
        `client fuzz: ${clientFuzz.rejectedTyped}/${clientFuzz.calls} rejected with a typed error naming the field`,
      );
    })().catch((err: unknown) => {
      violate(c, 'malformed-rejected-typed', 'client fuzz', `could not run: ${errorText(err)}`.slice(0, 500));
    });
    const targets = live.slice(0, Math.min(4, live.length));
    const expectedFaultTime = opts.faults.length * (opts.faultGapMs + 20_000);
    const raw = (async () => {
      rawFuzz = await fuzzRawSignals(c, targets, fuzzBase, opts.rawFuzzRuns, opts.seed + 1, expectedFaultTime);
      stamp(`raw signals: ${rawFuzz.sent} malformed sent, ${rawFuzz.observedDrops} dropped by the workflows`);
    })().catch((err: unknown) => {
      // No worker to answer the baseline query (--no-worker), say: recorded, not an unhandled rejection.
      violate(c, 'raw-signals-dropped', 'raw signal fuzz', `could not run: ${errorText(err)}`.slice(0, 500));
    });

    for (const kind of opts.faults) {
      if (aborter.signal.aborted) break;
      await sleep(opts.faultGapMs, aborter.signal);
      const record = await injectFault(kind, {
        c,
        sup,
        srv,
        services,
        opts,
        stamp,
        rng,
        outagesRun,
        signal: aborter.signal,
        gatewayKills: faults.filter((f) => f.kind === 'gateway-kill').length,
        onMoved: (conns) => {
          for (const conn of conns) {
            live.push(conn.t);
            longLived.set(conn.t, conn);
          }
        },
      });
      faults.push(record);
      const recovery = await measureRecovery(c, record, kind);
      Object.assign(record, recovery);
      stamp(
        `${kind}: down ${record.downMs} ms; probe session effective after ${record.probeMs ?? '—'} ms; ` +
          `${record.backlog} overdue destroys drained after ${record.drainMs ?? 'NOT DRAINED'} ms`,
      );
    }
    faultsDone = true;
    phase('finish churn');
    await churn;
    await Promise.all([fuzz, raw]);

    // ---- long-lived sessions: everything kept through every fault; then they close too
    phase('check long-lived sessions');
    await mapLimit(live, 4, (t) => verifyLive(c, t, 'connected through every fault', 120_000));
    for (const t of live) {
      const conn = longLived.get(t);
      if (conn) await conn.close();
    }
    // Every gateway process shuts down cleanly: the leases are released (their runs then complete).
    await c.forgetful.close();
    for (const g of [...c.gateways, sessions]) await gw(c, 'close', () => g.close());

    phase('settle');
    stillRunning = await settle(c, 4 * opts.idleMs + 120_000);
    stamp(`settled: ${stillRunning} workflows still running`);
    await sleep(1_000);

    phase('invariants');
    broadcasts = await recorder.drain(
      (b) =>
        apps.some((a) => b.nspRoomId.startsWith(`${a.appPid}:`)) ||
        users.some((u) => b.nspRoomId === `users:${u.user.clientId}`),
    );
    stamp(`${broadcasts.length} broadcasts of the run read from RabbitMQ`);
    // A leave is sent again when a worker dies between the broker's confirm and the write that
    // records it, or when a service outage loses or fails that write (Redis keeps its last second
    // only through its append-only file): the same messageId, allowed across such a disruption.
    await checkFinalSessions(c, broadcasts, [
      ...sup.exits.map((e) => e.at),
      ...outagesRun.flatMap((o) => [Date.parse(o.from), Date.parse(o.to)]),
    ]);
    const h = await checkHistories(c);
    history = h.stats;
    userTotals = await checkUsers(
      c,
      broadcasts,
      h.userRuns,
      sup.exits.map((e) => e.at),
    );
    // One subject per worker process the run started (none: nothing checked, and the verdict says so).
    count(c, 'checked:worker-no-crash', sup.starts);
    for (const exit of sup.unexpectedExits()) {
      violate(
        c,
        'worker-no-crash',
        `worker exit at +${((exit.at - started) / 1000).toFixed(1)}s`,
        `code ${exit.code} signal ${exit.signal}: ${exit.stderrTail.slice(-6).join(' | ')}`.slice(0, 1500),
      );
    }
    count(c, 'checked:run-completed');
  } catch (err) {
    const why = errorText(err);
    stamp(`run failed: ${why}`);
    if (ctx) violate(ctx, 'run-completed', 'harness', why);
    else notes.push(`run failed before the churn: ${why}`);
  } finally {
    clearTimeout(runTimer);
    outer?.removeEventListener('abort', onOuterAbort);
    aborter.abort();
    await ctx?.forgetful?.kill().catch(() => undefined);
    for (const g of [...(ctx?.gateways ?? []), ...(ctx ? [ctx.sessions] : [])]) await g.close().catch(() => undefined);
    const restored = await services.restoreAll();
    if (restored.length) notes.push(`services restored at the end: ${restored.join(', ')}`);
    await supervisor?.stop().catch(() => undefined);
    await recorder?.remove();
    await connection?.close().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    redis?.disconnect();
    await pg?.end().catch(() => undefined);
    process.off('exit', killChildren);
  }

  const report = buildReport({
    runId,
    opts,
    started,
    ctx,
    faults,
    clientFuzz,
    rawFuzz,
    history,
    userTotals,
    broadcasts: broadcasts.length,
    churnLaunched,
    stillRunning,
    phases,
    notes,
    outagesRun,
    workerStarts: supervisor?.starts ?? 0,
    workerExits: supervisor?.exits.length ?? 0,
    logs: { dir: temp, worker: path.join(temp, 'worker.log'), temporal: path.join(temp, 'temporal.log') },
  });
  mkdirSync(opts.resultsDir, { recursive: true });
  const file = path.join(opts.resultsDir, `chaos-${runId}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  report.file = file;
  return report;
}

/** A fault the system has not recovered from this long after the restore is a violation. */
const RECOVERY_CAP_MS = 120_000;

interface FaultDeps {
  c: ChaosContext;
  sup: WorkerSupervisor;
  srv: TemporalDevServer;
  services: Services;
  opts: ChaosOptions;
  stamp: (m: string) => void;
  rng: Rng;
  outagesRun: { kind: string; from: string; to: string }[];
  signal: AbortSignal;
  /** gateway-kill faults run before this one (each kills a gateway of its own). */
  gatewayKills: number;
  /** The sessions a gateway-kill reconnected: kept open, checked and closed at the end of the run. */
  onMoved: (conns: Conn[]) => void;
}

function pendingDestroys(c: ChaosContext): number {
  const now = Date.now();
  return c.tracked.filter((t) => t.destroyDueAt !== null && t.destroyDueAt > now).length;
}

async function injectFault(kind: FaultKind, d: FaultDeps): Promise<FaultRecord> {
  const { c, sup, srv, services, opts, stamp, rng } = d;
  const rec: FaultRecord = {
    kind,
    at: Date.now(),
    downMs: 0,
    restoredAt: null,
    pendingDestroysAtFault: 0,
    detail: '',
    probeMs: null,
    drainMs: null,
    backlog: 0,
  };
  stamp(`fault ${kind} …`);
  count(c, 'checked:fault-injected');
  if (opts.noWorker && (kind.startsWith('worker-kill') || kind === 'gateway-kill')) {
    rec.detail = 'skipped: --no-worker';
    violate(c, 'fault-injected', kind, 'no worker to kill (--no-worker)');
    return rec;
  }
  switch (kind) {
    case 'worker-kill': {
      await sleep(rng.int(0, 3_000), d.signal);
      rec.pendingDestroysAtFault = pendingDestroys(c);
      const { killedAt, readyAt } = await sup.kill();
      rec.at = killedAt;
      rec.downMs = readyAt - killedAt;
      rec.restoredAt = readyAt;
      rec.detail = `SIGKILL at a random moment; restarted (ready after ${rec.downMs} ms)`;
      break;
    }
    case 'worker-kill-mid-destroy': {
      // SIGKILL the moment the worker logs a finished destroy: its completion is not reported yet,
      // and the destroys due at the same time are in flight.
      let victim = '';
      const fired = new Promise<boolean>((resolve) => {
        const off = sup.onLine((line) => {
          if (line.msg !== 'session destroyed') return;
          off();
          victim = typeof line.connectionId === 'string' ? line.connectionId : '';
          const pid = sup.pid;
          if (pid) process.kill(pid, 'SIGKILL');
          resolve(true);
        });
        setTimeout(() => {
          off();
          resolve(false);
        }, 60_000);
      });
      rec.pendingDestroysAtFault = pendingDestroys(c);
      const hit = await fired;
      const { killedAt, readyAt } = await sup.kill();
      rec.at = killedAt;
      rec.downMs = readyAt - killedAt;
      rec.restoredAt = readyAt;
      rec.detail = hit
        ? `SIGKILL right after the worker logged the destroy of ${victim}, before reporting it`
        : 'no destroy seen within 60 s: killed anyway';
      if (victim) rec.victim = victim;
      break;
    }
    case 'redis-outage':
    case 'postgres-outage':
    case 'rabbitmq-outage': {
      const service = serviceOf(kind)!;
      const refused = await services.preflight(service);
      if (refused) {
        rec.detail = `skipped: ${refused}`;
        violate(c, 'fault-injected', kind, refused);
        break;
      }
      rec.pendingDestroysAtFault = pendingDestroys(c);
      const o = await services.outage(service, opts.outageMs, d.signal);
      rec.at = o.stoppedAt;
      rec.downMs = o.upAt - o.stoppedAt;
      rec.restoredAt = o.upAt;
      rec.detail = `stopped ${service}, held ${opts.outageMs} ms, started again (back ${o.upAt - o.startedAt} ms after the start command)`;
      d.outagesRun.push({
        kind: service,
        from: new Date(o.stoppedAt).toISOString(),
        to: new Date(o.upAt).toISOString(),
      });
      break;
    }
    case 'gateway-kill': {
      rec.pendingDestroysAtFault = pendingDestroys(c);
      const r = await gatewayKill(c, d.gatewayKills, opts.gatewayKillSessions);
      d.onMoved(r.movedConns);
      rec.at = r.killedAt;
      rec.restoredAt = r.restoredAt;
      rec.downMs = r.restoredAt - r.killedAt;
      rec.detail = `${r.detail}; last lost session destroyed ${r.allDestroyedMs ?? 'NOT'} ms after the kill (bound ${4 * opts.idleMs + GATEWAY_LOST_SLACK_MS} ms)`;
      rec.gateway = { lost: r.lost, moved: r.moved, allDestroyedMs: r.allDestroyedMs, lastRenewalAt: r.lastRenewalAt };
      break;
    }
    case 'temporal-restart': {
      // While sessions are pending destroy (their timers are in the server's SQLite file).
      for (let i = 0; i < 40 && pendingDestroys(c) < 3; i++) await sleep(250, d.signal);
      rec.pendingDestroysAtFault = pendingDestroys(c);
      const killedAt = Date.now();
      await srv.kill();
      await sleep(opts.temporalDownMs, d.signal);
      await srv.start();
      rec.at = killedAt;
      rec.restoredAt = Date.now();
      rec.downMs = rec.restoredAt - killedAt;
      rec.detail = `SIGKILL of the dev server with ${rec.pendingDestroysAtFault} sessions pending destroy; restarted on the same db file`;
      // The worker rides through the outage (or, if it died, the supervisor restarted it).
      if (!opts.noWorker) await sup.ensureRunning();
      break;
    }
  }
  return rec;
}

/**
 * Time to recover from a fault: how long after the restore a new session is effective again (marker
 * in Redis, row in Postgres), and how long until every destroy that fell due before the restore is
 * done.
 */
async function measureRecovery(
  c: ChaosContext,
  fault: FaultRecord,
  kind: FaultKind,
): Promise<Pick<FaultRecord, 'probeMs' | 'drainMs' | 'backlog'>> {
  count(c, 'checked:recovered');
  const restoredAt = fault.restoredAt ?? Date.now();
  // Destroys that fell due from shortly before the fault until the restore.
  const from = fault.at - 8 * c.idleMs;
  const backlog = c.tracked.filter(
    (t) =>
      t.expect !== 'live' &&
      t.destroyDueAt !== null &&
      t.destroyDueAt >= from &&
      t.destroyDueAt + 1_000 <= restoredAt &&
      t.error === null,
  );
  let probeCid = '';
  let probeSeen = 'nothing polled';
  const probe = (async () => {
    const t = newTracked(c, 'probe');
    probeCid = t.session.connectionId;
    t.notes.push(`probe after ${kind}`);
    const done = runScenario(c, 'probe', t);
    const deadline = Date.now() + RECOVERY_CAP_MS;
    while (Date.now() < deadline && !c.signal.aborted) {
      try {
        const [marker, row] = await Promise.all([
          c.redis.exists(keys.active(t.session.connectionId)),
          c.pg.query('SELECT 1 FROM sessions WHERE "connectionId" = $1', [t.session.connectionId]),
        ]);
        if (marker === 1 && (row.rowCount ?? 0) > 0) break;
        probeSeen = `marker ${marker === 1 ? 'present' : 'absent'}, sessions row ${(row.rowCount ?? 0) > 0 ? 'present' : 'absent'}`;
      } catch {
        // still recovering
      }
      await sleep(100);
    }
    const ms = Date.now() < deadline ? Date.now() - restoredAt : null;
    await done;
    return ms;
  })();
  const socketAtFault = new Map(backlog.map((t) => [t, t.session.socketId]));
  const drain = (async () => {
    let open = backlog;
    const deadline = Date.now() + RECOVERY_CAP_MS;
    const last = new Map<Tracked, string>();
    while (open.length > 0 && Date.now() < deadline && !c.signal.aborted) {
      const states = await mapLimit(open, 8, async (t) => {
        try {
          const d = await describeStatus(c, t.session.connectionId);
          last.set(t, d ? `${d.status}, ${d.pendingActivities} activities pending` : 'no workflow');
          return d !== null && d.status !== 'RUNNING';
        } catch (err) {
          last.set(t, errorText(err));
          return false;
        }
      });
      // Reconnected since (a race scenario's next step): no longer a destroy that is owed.
      open = open.filter((t, i) => !states[i] && t.session.socketId === socketAtFault.get(t));
      if (open.length > 0) await sleep(1_000);
    }
    if (open.length > 0) {
      const sample = open
        .slice(0, 5)
        .map((t) => `${t.session.connectionId} (${t.scenario}: ${last.get(t)})`)
        .join('; ');
      violate(
        c,
        'recovered',
        kind,
        `${open.length} of ${backlog.length} overdue destroys not done ${RECOVERY_CAP_MS / 1000} s after the restore: ${sample}`,
      );
    }
    return open.length === 0 ? Math.max(0, Date.now() - restoredAt) : null;
  })();
  const [probeMs, drainMs] = await Promise.all([probe, drain]);
  if (probeMs === null)
    violate(
      c,
      'recovered',
      kind,
      `a new session (${probeCid}) was not effective ${RECOVERY_CAP_MS / 1000} s after the restore: last seen ${probeSeen}`,
      await sessionTrace(c, probeCid),
    );
  return { probeMs, drainMs, backlog: backlog.length };
}
