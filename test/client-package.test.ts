import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { packClient } from '../scripts/pack-client';
import { devServerEnv } from './helpers/temporal';
import { makeSession, seedApp, startStack, testConfig } from './helpers/stack';

const ROOT = path.resolve(__dirname, '..');
const exec = promisify(execFile);
const IDLE = 1_000;
const rootManifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
};

/**
 * What a gateway does with the package, in plain Node (no tsx, no TypeScript): CommonJS requiring
 * `tether/client`. Prints one JSON line per step. Kept small: the session API's own tests are elsewhere.
 */
const DRIVE = `
const { Client, Connection } = require('@temporalio/client');
const { SessionClient, SessionStatus, sessionWorkflowId } = require('tether/client');
const [address, taskQueue, idle, sessionJson] = process.argv.slice(2);
const session = JSON.parse(sessionJson);
const print = (step, value) => console.log(JSON.stringify({ step, value }));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, fn) {
  for (let i = 0; i < 120; i++) { const v = await fn(); if (v) return v; await sleep(250); }
  throw new Error('timed out waiting for ' + what);
}
(async () => {
  const connection = await Connection.connect({ address });
  const sessions = new SessionClient(new Client({ connection }), {
    taskQueue, idleTimeoutMs: Number(idle), gatewayId: 'gw-package-test',
  });
  await sessions.connected(session);
  print('workflowId', sessionWorkflowId(session.connectionId));
  print('connected', (await until('connected', async () => {
    const s = await sessions.describe(session.connectionId);
    return s && s.status === SessionStatus.connected && s;
  })).status);
  print('heartbeat', await sessions.heartbeat(session.connectionId));
  print('disconnected', await sessions.disconnected(session));
  const destroyed = await until('destroyed', async () => {
    const s = await sessions.describe(session.connectionId);
    return s && s.status === SessionStatus.destroyed && s;
  });
  print('destroyed', { status: destroyed.status, destroyReason: destroyed.destroyReason });
  await sessions.close();
  await connection.close();
})().catch((err) => { console.error(err && err.stack || String(err)); process.exit(1); });
`;

/** Type-checks like a gateway in TypeScript would; a wrong call must be an error (types are not `any`). */
const CHECK_TS = `
import { Client } from '@temporalio/client';
import { HeartbeatOutcome, InvalidSessionInputError, SessionClient, type Session, type SessionView } from 'tether/client';

export async function gateway(client: Client, session: Session): Promise<SessionView | null> {
  const sessions = new SessionClient(client, { taskQueue: 'tether-sessions', idleTimeoutMs: 30_000, gatewayId: 'gw-1' });
  await sessions.connected(session);
  const outcome: HeartbeatOutcome = await sessions.heartbeat(session.connectionId);
  if (outcome === HeartbeatOutcome.unknownSession) await sessions.connected(session);
  // @ts-expect-error a connection id is a string
  await sessions.heartbeat(42);
  try {
    return await sessions.describe(session.connectionId);
  } catch (err) {
    if (err instanceof InvalidSessionInputError) return null;
    throw err;
  }
}
`;

describe('the client as a package (npm pack, installed into a scratch project)', () => {
  let scratch: string;
  let tarball: string;
  let manifest: Record<string, unknown>;

  beforeAll(async () => {
    ({ tarball, manifest } = packClient());
    scratch = mkdtempSync(path.join(tmpdir(), 'tether-gateway-'));
    writeFileSync(path.join(scratch, 'package.json'), JSON.stringify({ name: 'gateway', private: true }));
    await exec(
      'npm',
      [
        'install',
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
        '--ignore-scripts',
        tarball,
        `@temporalio/client@${rootManifest.dependencies['@temporalio/client']}`,
      ],
      { cwd: scratch, maxBuffer: 16 * 1024 * 1024 },
    );
  }, 300_000);
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  test('exports tether/client as JavaScript with declarations, depending only on the SDK packages it calls', () => {
    const installed = JSON.parse(readFileSync(path.join(scratch, 'node_modules/tether/package.json'), 'utf8')) as {
      exports: Record<string, unknown>;
      dependencies: Record<string, string>;
    };
    expect(installed).toEqual(manifest);
    expect(installed.exports['./client']).toEqual({
      types: './lib/client/index.d.ts',
      default: './lib/client/index.js',
    });
    // The packages the compiled client requires, no more: @temporalio/workflow only while
    // src/contracts/ takes defineSignal/defineQuery from it.
    const dependencies = Object.keys(installed.dependencies);
    expect(dependencies).toEqual(expect.arrayContaining(['@temporalio/client', '@temporalio/common']));
    expect(dependencies.filter((d) => !/^@temporalio\/(client|common|workflow)$/.test(d))).toEqual([]);
    for (const [name, version] of Object.entries(installed.dependencies)) {
      expect({ name, version }).toEqual({ name, version: rootManifest.dependencies[name] });
    }

    const lib = path.join(scratch, 'node_modules/tether/lib');
    for (const file of ['client/index.js', 'client/index.d.ts', 'contracts/session.js', 'contracts/gateway.js']) {
      expect(existsSync(path.join(lib, file))).toBe(true);
    }
    const sources = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? sources(path.join(dir, e.name)) : [e.name],
      );
    expect(sources(lib).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);

    // Nothing of the worker side came along.
    const modules = path.join(scratch, 'node_modules');
    for (const absent of [
      '@temporalio/worker',
      '@temporalio/core-bridge',
      '@temporalio/activity',
      'pg',
      'ioredis',
      'amqplib',
      'tsx',
      'typescript',
    ]) {
      expect({ absent, present: existsSync(path.join(modules, absent)) }).toEqual({ absent, present: false });
    }
  });

  test('a TypeScript gateway type-checks against the declarations (node16 and node10 resolution)', async () => {
    writeFileSync(path.join(scratch, 'check.ts'), CHECK_TS);
    for (const moduleResolution of ['node16', 'node10']) {
      writeFileSync(
        path.join(scratch, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            noEmit: true,
            module: moduleResolution === 'node16' ? 'node16' : 'commonjs',
            moduleResolution,
            target: 'ES2022',
            typeRoots: [path.join(ROOT, 'node_modules/@types')],
            types: ['node'],
            // The SDK's own declarations name packages without types (ms, source-map), as in this repo;
            // the @ts-expect-error in check.ts fails if ours degrade to any.
            skipLibCheck: true,
          },
          files: ['check.ts'],
        }),
      );
      const tsc = exec(path.join(ROOT, 'node_modules/.bin/tsc'), ['-p', scratch], { cwd: scratch });
      await expect(
        tsc.catch((err: { stdout?: string }) => Promise.reject(new Error(err.stdout))),
      ).resolves.toBeDefined();
    }
  });

  describe('drives a session (dev server, a worker from this repo)', () => {
    let env: TestWorkflowEnvironment;
    let stack: Awaited<ReturnType<typeof startStack>>;

    beforeAll(async () => {
      env = await devServerEnv();
      stack = await startStack(env, testConfig({ WS_IDLE_TIMEOUT_MS: String(IDLE) }));
    });
    afterAll(async () => {
      await stack?.stop();
      await env?.teardown();
    });

    test('connected, heartbeat, disconnected, destroyed through tether/client in plain node', async () => {
      const { appPid } = await seedApp(stack.resources);
      const session = makeSession(appPid);
      writeFileSync(path.join(scratch, 'drive.cjs'), DRIVE);
      // Plain node from the scratch project: no tsx, no loader, only what the package installed.
      const { stdout } = await exec(
        process.execPath,
        ['drive.cjs', env.address, stack.taskQueue, String(IDLE), JSON.stringify(session)],
        { cwd: scratch, env: { PATH: process.env.PATH }, timeout: 90_000 },
      );
      const steps = Object.fromEntries(
        stdout
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line) as { step: string; value: unknown })
          .map(({ step, value }) => [step, value]),
      );
      expect(steps).toEqual({
        workflowId: `session:${session.connectionId}`,
        connected: 'connected',
        heartbeat: expect.stringMatching(/^(forwarded|coalesced)$/),
        disconnected: true,
        destroyed: { status: 'destroyed', destroyReason: 'closed' },
      });
      // The same workflow, seen from this repo's side.
      const state = await stack.client.describe(session.connectionId);
      expect(state?.status).toBe('destroyed');
    });
  });
});
