import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { SessionClient } from '../src/client';
import { openResources, type Resources } from '../src/service/resources';
import { devServerEnv } from './helpers/temporal';
import { makeSession, nanoid, seedApp, testConfig } from './helpers/stack';
import { waitUntil } from './helpers/wait';

/**
 * `npm run build` and what runs from it: the compiled worker (`npm run worker`, the image's CMD)
 * loads the prebuilt workflow bundle instead of bundling, runs sessions, drains on SIGTERM; the
 * compiled CLI runs without tsx.
 */
const ROOT = path.resolve(__dirname, '..');
const DIST = path.join(ROOT, 'dist');
const exec = promisify(execFile);

async function freePort(): Promise<number> {
  for (;;) {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    await new Promise((resolve) => server.close(resolve));
    // The runtime's Prometheus exporter takes port + 1 (src/service/runtime.ts).
    const next = net.createServer();
    const free = await new Promise<boolean>((resolve) => {
      next.once('error', () => resolve(false));
      next.listen(port + 1, '127.0.0.1', () => resolve(true));
    });
    if (free) await new Promise((resolve) => next.close(resolve));
    if (free && port < 65534) return port;
  }
}

describe('npm run build, and the compiled worker and CLI', () => {
  let env: TestWorkflowEnvironment;
  let worker: ChildProcess | undefined;
  let resources: Resources;
  const logs: string[] = [];

  beforeAll(async () => {
    await exec('npm', ['run', 'build'], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
    env = await devServerEnv();
    resources = openResources(testConfig());
  }, 180_000);
  afterAll(async () => {
    worker?.kill('SIGKILL');
    await resources?.close();
    await env?.teardown();
  });

  test('dist/ holds the compiled entry points and the workflow bundle', () => {
    for (const file of [
      'service/worker-main.js',
      'service/main.js',
      'cli.js',
      'workflows.bundle.js',
      'workflows/index.js',
    ]) {
      expect({ file, exists: existsSync(path.join(DIST, file)) }).toEqual({ file, exists: true });
    }
  });

  test('the compiled worker loads the prebuilt bundle, runs a session and drains on SIGTERM', async () => {
    const taskQueue = `tq-build-${nanoid(6)}`;
    const port = await freePort();
    const child = spawn(process.execPath, [path.join(DIST, 'service', 'worker-main.js')], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        TEMPORAL_ADDRESS: env.address,
        TEMPORAL_TASK_QUEUE: taskQueue,
        WS_IDLE_TIMEOUT_MS: '1000',
        METRICS_PORT: String(port),
        LOG_LEVEL: 'debug',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    worker = child;
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      logs.push(...lines);
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const records = () =>
      logs.flatMap((l) => {
        try {
          return [JSON.parse(l) as { msg?: string; [field: string]: unknown }];
        } catch {
          return [];
        }
      });
    const logged = (msg: string) => records().find((r) => r.msg === msg);

    await waitUntil('worker running', () => Promise.resolve(logged('worker running')), 60_000).catch((err) => {
      throw new Error(`${String(err)}\n${logs.join('\n')}\n${stderr}`);
    });
    expect(logged('workflow bundle: prebuilt')).toMatchObject({ codePath: path.join(DIST, 'workflows.bundle.js') });
    expect(logs.some((l) => l.includes('Workflow bundle created'))).toBe(false); // no bundling at start
    const ready = await waitUntil('readyz', async () => {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null);
      return res?.ok ? res : null;
    });
    expect(ready.status).toBe(200);

    const { appPid } = await seedApp(resources);
    const session = makeSession(appPid);
    const sessions = new SessionClient(new Client({ connection: env.connection }), {
      taskQueue,
      idleTimeoutMs: 1000,
      gatewayId: `gw-build-${nanoid(6)}`,
    });
    await sessions.connected(session);
    const state = await waitUntil('session connected', async () => {
      const st = await sessions.describe(session.connectionId);
      return st?.status === 'connected' ? st : null;
    });
    expect(state.connectionId).toBe(session.connectionId);

    // The compiled CLI (no tsx) sees it, describes it with ISO times, and invalidates it.
    const cli = (...args: string[]) =>
      exec(process.execPath, [path.join(DIST, 'cli.js'), 'sessions', ...args], {
        env: { PATH: process.env.PATH, TEMPORAL_ADDRESS: env.address, TEMPORAL_TASK_QUEUE: taskQueue },
      });
    expect((await cli('stats', '--app', appPid)).stdout).toMatch(/^connected\t[01]\n/); // visibility may lag a moment
    const described = (await cli('describe', session.connectionId)).stdout;
    expect(described).toMatch(/^status +connected/);
    expect(described).toMatch(/^connected at +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \((now|.* ago)\)$/m);
    expect(described).not.toMatch(/\b\d{13}\b/); // no epoch milliseconds
    const json = JSON.parse((await cli('describe', session.connectionId, '--json')).stdout) as Record<string, unknown>;
    expect(json).toMatchObject({ connectionId: session.connectionId, status: 'connected' });
    expect(json.connectedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect((await cli('invalidate', session.connectionId, '--reason', 'build test')).stdout).toBe('invalidated\n');
    await waitUntil(
      'session destroyed',
      async () => (await sessions.describe(session.connectionId))?.status === 'destroyed',
    );

    await sessions.close();
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    worker = undefined;
    expect(logged('stopped')).toMatchObject({ exitCode: 0 });
  });
});
