/**
 * `npm run demo`: what `npm start` brings up (src/dev/local-stack.ts, then the worker), plus the
 * example gateway (examples/gateway.ts, a child process) and a simulated population of websocket
 * clients (demo/population.ts), so that within a minute the Web UI, `npx tether sessions list|stats`,
 * `/metrics` and Redis show sessions connected, disconnected and destroyed, `gateway-lost` among
 * them. Ctrl-C stops the population, the gateway, the worker and the dev server it started.
 *
 * Dev tool only: nothing in src/ imports it. Defaults it sets unless the variable is set:
 * WS_IDLE_TIMEOUT_MS=5000, TEMPORAL_TASK_QUEUE=tether-demo, LOG_LEVEL=error (the demo narrates);
 * DEMO_DATA_DIR (default .data/demo: the dev server's database, fresh every run, and the logs),
 * GATEWAY_PORT (default 8080).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type Redis from 'ioredis';
import type { Pool } from 'pg';
import { configFromEnvOrExit } from '../src/config';
import type { Lifecycle } from '../src/service/process';
import type { SessionUser } from '../src/contracts/session';
import type { DemoClient } from './population';

const ROOT = path.resolve(__dirname, '..');
const defaults: Record<string, string> = {
  WS_IDLE_TIMEOUT_MS: '5000',
  TEMPORAL_TASK_QUEUE: 'tether-demo',
  LOG_LEVEL: 'error',
};
for (const [key, value] of Object.entries(defaults)) if (!process.env[key]) process.env[key] = value;

// Read after the defaults above are in place.
const config = configFromEnvOrExit();
const dataDir = path.resolve(process.env.DEMO_DATA_DIR || path.join(ROOT, '.data', 'demo'));
const gatewayPort = Number(process.env.GATEWAY_PORT || 8080);
const GATEWAY_ID = 'demo-gateway';
/** Heartbeats forwarded every 2 × idle (default 30 ×), so that they show within the minute. */
const HEARTBEAT_MS = 2 * config.idleTimeoutMs;
const started = Date.now();
const since = () => `t+${String(Math.round((Date.now() - started) / 1000)).padStart(3)}s`;
const say = (line: string) => process.stdout.write(`[demo] ${line}\n`);
const note = (line: string) => say(`${since()}  ${line}`);

/** The example gateway as a child process in its own process group (Ctrl-C reaches only us). */
class GatewayProcess {
  private child?: ChildProcess;
  private exited?: Promise<void>;
  incarnations = 0;

  async start(signal: AbortSignal): Promise<void> {
    const log = openSync(path.join(dataDir, 'gateway.log'), 'a');
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/gateway.ts', String(gatewayPort)], {
      cwd: ROOT,
      detached: true,
      env: { ...process.env, GATEWAY_ID, HEARTBEAT_FORWARD_INTERVAL_MS: String(HEARTBEAT_MS) },
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    this.incarnations++;
    note(`gateway started (pid ${child.pid}, gatewayId ${GATEWAY_ID}, incarnation #${this.incarnations})`);
    const { answers } = await import('../src/dev/dev-server');
    const deadline = Date.now() + 30_000;
    while (!(await answers('127.0.0.1', gatewayPort))) {
      signal.throwIfAborted();
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`the gateway exited (${child.exitCode ?? child.signalCode}): see ${dataDir}/gateway.log`);
      if (Date.now() > deadline) throw new Error(`the gateway did not listen on ${gatewayPort} within 30 s`);
      await sleep(200);
    }
  }

  /** A crash: no close frames, no `disconnected`, no lease release. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    note(`gateway SIGKILLed (pid ${child.pid}): its sockets drop, its lease is not released`);
    child.kill('SIGKILL');
    await this.exited;
  }

  /** A clean shutdown: SIGTERM (closes its sockets, releases the lease), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const cut = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(cut);
  }

  forceKill(): void {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

async function seed(pg: Pool): Promise<{ appPid: string; appId: string; users: SessionUser[] }> {
  const { randomId } = await import('../harness/random-id');
  const appPid = randomId(12);
  const app = await pg.query<{ id: string }>('INSERT INTO applications (pid) VALUES ($1) RETURNING id', [appPid]);
  const appId = app.rows[0]!.id;
  const users: SessionUser[] = [];
  for (const name of ['ada', 'grace', 'linus', 'margaret']) {
    const clientId = `${name}-${randomId(4)}`;
    const { rows } = await pg.query<{ id: string; createdAt: Date; updatedAt: Date }>(
      'INSERT INTO authentication_users ("clientId", username, "appId") VALUES ($1, $2, $3) RETURNING id, "createdAt", "updatedAt"',
      [clientId, name, appId],
    );
    const row = rows[0]!;
    users.push({
      id: row.id,
      clientId,
      username: name,
      createdAt: row.createdAt.toISOString(),
      updatedAt: row.updatedAt.toISOString(),
      isOnline: false,
      lastOnline: null,
    });
  }
  return { appPid, appId, users };
}

async function waitReady(signal: AbortSignal): Promise<void> {
  const url = `http://127.0.0.1:${config.metricsPort}/readyz`;
  for (;;) {
    signal.throwIfAborted();
    const ok = await fetch(url, { signal: AbortSignal.timeout(2000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    await sleep(500, undefined, { signal });
  }
}

/** The ops CLI's own `sessions stats`, in-process: one status line. */
async function statsLine(appPid: string): Promise<string> {
  const { main: cli } = await import('../src/cli');
  const lines: string[] = [];
  const code = await cli(['sessions', 'stats', '--app', appPid], {
    out: (l) => lines.push(l),
    err: (l) => lines.push(l),
    env: process.env,
    now: () => Date.now(),
  });
  if (code !== 0) return `stats failed: ${lines.join(' ')}`;
  return lines.map((l) => l.replace('\t', ' ')).join(' · ');
}

function intro(appPid: string, webUi: string | undefined, users: SessionUser[]): void {
  const idle = config.idleTimeoutMs / 1000;
  const { namespace } = config.temporal;
  const query = encodeURIComponent(`WorkflowType = "sessionWorkflow" AND AppPid = "${appPid}"`);
  const exported = Object.keys(defaults)
    .filter((k) => k !== 'LOG_LEVEL')
    .map((k) => `${k}=${process.env[k]}`)
    .join(' ');
  const lines = [
    '',
    `demo app: ${appPid}   (idle ${idle} s: soft destroy 5 s after a close, hard destroy ${4 * idle} s after;`,
    `          heartbeats every ${HEARTBEAT_MS / 1000} s here instead of 30 × idle, so that they show)`,
    `  Web UI   ${webUi ?? '(none here)'}/namespaces/${namespace}/workflows?query=${query}`,
    `           a session: session:{connectionId}; the gateway: gateway:${GATEWAY_ID}; a user: user:${appPid}:${users[0]!.clientId}`,
    `  CLI      npx tether sessions stats --app ${appPid}`,
    `           npx tether sessions list --app ${appPid} --status disconnected`,
    `           npx tether sessions list --app ${appPid} --status destroyed`,
    `  metrics  curl -s http://127.0.0.1:${config.metricsPort}/metrics | grep '^tether_'`,
    `  Redis    redis-cli -p ${config.redis.port} zcard heartbeat:keepalive`,
    `           redis-cli -p ${config.redis.port} hgetall presence:${appPid}:lobby:members`,
    `           redis-cli -p ${config.redis.port} smembers auth:${appPid}:online`,
    `  (the CLI needs the demo's settings if you changed them; defaults: ${exported})`,
    '  Ctrl-C stops everything.',
    '',
  ];
  for (const l of lines) say(l);
}

const example = (c: DemoClient) => `e.g. session:${c.connectionId}`;

/** The scripted minute, then churn until Ctrl-C. */
async function runDemo(life: Lifecycle, webUi: string | undefined, pg: Pool, redis: Redis): Promise<void> {
  const { answers } = await import('../src/dev/dev-server');
  if (await answers('127.0.0.1', gatewayPort)) throw new Error(`GATEWAY_PORT ${gatewayPort} is already in use`);
  const { Population } = await import('./population');
  const gateway = new GatewayProcess();
  life.onForcedExit(() => gateway.forceKill());
  let population: InstanceType<typeof Population> | undefined;
  let status: NodeJS.Timeout | undefined;
  try {
    const { appPid, users } = await seed(pg);
    intro(appPid, webUi, users);
    // The gateway starts while the worker bundles its workflows; sessions wait for the worker.
    await Promise.all([gateway.start(life.signal), waitReady(life.signal)]);
    let reconnected = 0;
    const pop = new Population({
      gatewayUrl: `ws://127.0.0.1:${gatewayPort}`,
      appPid,
      redis,
      signal: life.signal,
      onReconnect: () => reconnected++,
    });
    population = pop;
    const idle = config.idleTimeoutMs;
    const allIds = users.map((u) => u.clientId);
    const anon = Array.from({ length: 24 }, (_, i) => pop.add(`anon-${i + 1}`, undefined, allIds.slice(0, i % 3)));
    const tabs = users.flatMap((u) => [pop.add(`${u.username}/tab-1`, u, allIds), pop.add(`${u.username}/tab-2`, u)]);
    await Promise.all([...anon, ...tabs].map((c, i) => sleep(i * 50).then(() => pop.join(c))));
    note(`${anon.length} anonymous clients and ${users.length} users with two tabs each connected (rooms, presence)`);
    const t0 = Date.now();
    const at = (ms: number, fn: () => void) => pop.later(Math.max(0, t0 + ms - Date.now()), fn);

    status = setInterval(() => {
      statsLine(appPid).then(
        (line) => note(line),
        () => undefined,
      );
    }, 5_000);

    at(1_000, () => {
      for (const c of anon.slice(0, 4)) pop.close(c);
      note(`anon-1..4 closed for good: disconnected now, destroyed in ${(4 * idle) / 1000} s (${example(anon[0]!)})`);
    });
    at(2_000, () => {
      for (const c of anon.slice(4, 7)) {
        pop.close(c);
        pop.later(2_000, () => void pop.join(c).then((ok) => ok && note(`${c.name} reconnected within the grace`)));
      }
      note(`anon-5..7 closed; they reconnect 2 s later, within the 5 s grace (${example(anon[4]!)})`);
    });
    at(3_000, () => {
      for (const c of anon.slice(7, 10)) {
        pop.close(c);
        pop.later(9_000, () => void pop.join(c).then((ok) => ok && note(`${c.name} reconnected after the grace`)));
      }
      note(
        `anon-8..10 closed; they reconnect 9 s later, after the soft destroy: presence removed, then re-joined (${example(anon[7]!)})`,
      );
    });
    at(4_000, () => {
      pop.close(tabs[1]!);
      pop.close(tabs[2]!);
      pop.close(tabs[3]!);
      note(`${tabs[1]!.name} closed (ada stays online on tab-1); grace closed both tabs (offline after 5 s)`);
    });
    at(6_000, () => {
      // These clients leave with the gateway: their sessions are closed as gateway-lost.
      for (const c of anon.slice(19, 24)) c.reconnects = false;
      void gateway
        .kill()
        .then(() => sleep(1_000))
        .then(() => gateway.start(life.signal))
        .then(() => {
          note(
            `gateway restarted: a new incarnation; anon-20..24 do not come back: closed as gateway-lost, then destroyed (${example(anon[19]!)})`,
          );
          pop.later(3_000, () => note(`${reconnected} clients of the killed gateway reconnected through the new one`));
        })
        .catch((err: unknown) => life.fail(err instanceof Error ? err : new Error(String(err))));
    });
    // Churn until Ctrl-C: a client leaves and a new one joins, now and then one comes back. The
    // clients the narration names as examples stay out of it, so their histories stay as told.
    const featured = new Set([anon[0], anon[4], anon[7], anon[19]]);
    let n = anon.length;
    const churn = () => {
      const open = pop.clients.filter((c) => c.open && !c.user && !featured.has(c));
      const leaving = open[Math.floor(Math.random() * open.length)];
      if (leaving) pop.close(leaving);
      const c = pop.add(`anon-${++n}`);
      void pop.join(c).then((ok) => ok && note(`${leaving ? `${leaving.name} left, ` : ''}${c.name} joined`));
      pop.later(4_000, churn);
    };
    at(12_000, churn);
    at(28_000, () => {
      const c = pop.add('grace/tab-3', users[1]);
      void pop.join(c).then((ok) => ok && note('grace is back on a new tab (online again)'));
    });

    await new Promise<void>((resolve) => life.signal.addEventListener('abort', () => resolve(), { once: true }));
  } finally {
    clearInterval(status);
    await population?.stop();
    await gateway.stop();
  }
}

async function main(): Promise<void> {
  const [{ createLogger }, { runProcess }, { runWorkerService }, { startLocalStack }, { createPgPool, createRedis }] =
    await Promise.all([
      import('../src/logger'),
      import('../src/service/process'),
      import('../src/service/worker-service'),
      import('../src/dev/local-stack'),
      import('../src/service/resources'),
    ]);
  const logger = createLogger({ level: config.logLevel, pretty: config.localhost || Boolean(process.stdout.isTTY) });
  mkdirSync(dataDir, { recursive: true });

  runProcess(logger, async (life) => {
    // Registered first, so it runs last: after the worker, the connections and the dev server.
    life.defer('demo', () => say('stopped'));
    say('starting: local services, a Temporal dev server, the worker (the first run installs what is missing)');
    const local = await startLocalStack(config, logger, life, { dataDir, freshDatabase: true });
    const worker = runWorkerService(config, logger, life, local.prometheusUrl, {
      connection: local.connection,
      announce: local.announce,
      searchAttributesKnown: local.started,
    });
    const pg = createPgPool(config, logger);
    const redis = createRedis(config, logger);
    life.defer('demo connections', async () => {
      await pg.end();
      redis.disconnect();
    });
    const demo = runDemo(life, local.webUi, pg, redis).catch((err: unknown) => {
      if (!life.signal.aborted) life.fail(err instanceof Error ? err : new Error(String(err)));
    });
    try {
      await worker;
    } finally {
      await demo;
    }
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`tether demo: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
