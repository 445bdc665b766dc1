import { randomBytes, randomUUID } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { SessionClient, type SessionClientOptions } from '../../src/client';
import { loadConfig, type Config } from '../../src/config';
import { createLogger } from '../../src/logger';
import { openResources, type Resources } from '../../src/resources';
import type { Session } from '../../src/session';
import { createWorker } from '../../src/worker';
import { workflowBundle } from './temporal';

export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ LOG_LEVEL: 'error', ...env });
}

export const testLogger = createLogger({ level: 'error' });

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
export function nanoid(n = 12): string {
  return Array.from(randomBytes(n), (b) => ALPHABET[b % ALPHABET.length]).join('');
}

/** Inserts an application row and returns its pid (the platform owns `applications`). */
export async function seedApp(resources: Resources): Promise<{ appPid: string; appId: string }> {
  const appPid = nanoid();
  const { rows } = await resources.pg.query<{ id: string }>('INSERT INTO applications (pid) VALUES ($1) RETURNING id', [
    appPid,
  ]);
  return { appPid, appId: rows[0]!.id };
}

/** Inserts a user row (the platform owns `authentication_users`) and returns it as the gateway sends it. */
export async function seedUser(resources: Pick<Resources, 'pg'>, clientId = nanoid(), appId: string | null = null) {
  const { rows } = await resources.pg.query<{ id: string; createdAt: Date; updatedAt: Date }>(
    'INSERT INTO authentication_users ("clientId", username, "appId") VALUES ($1, $2, $3) RETURNING id, "createdAt", "updatedAt"',
    [clientId, `user-${clientId}`, appId],
  );
  const row = rows[0]!;
  return {
    id: row.id,
    clientId,
    username: `user-${clientId}`,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    isOnline: false,
    lastOnline: null,
  };
}

export function makeSession(appPid: string, over: Partial<Session> = {}): Session {
  const connectionId = `${appPid}:${nanoid()}`;
  return { uid: connectionId, appPid, keyId: nanoid(), connectionId, socketId: randomUUID(), ...over };
}

/** Worker + client + resources against a given Temporal environment, for one test file. */
export async function startStack(env: TestWorkflowEnvironment, config: Config = testConfig()) {
  const taskQueue = `tq-${nanoid(8)}`;
  const resources = openResources(config);
  const worker: Worker = await createWorker({
    connection: env.nativeConnection,
    namespace: env.namespace ?? 'default',
    taskQueue,
    config,
    resources,
    logger: testLogger,
    workflowBundle: await workflowBundle(),
  });
  const running = worker.run();
  // Time-skipping tests renew the lease themselves (`client.tick()`): a timer in wall-clock time
  // says nothing about the server's skipped time.
  const clients: SessionClient[] = [];
  const newClient = (options: Partial<SessionClientOptions> = {}) => {
    const c = new SessionClient(env.client, {
      taskQueue,
      idleTimeoutMs: config.idleTimeoutMs,
      gatewayId: `gw-${nanoid(6)}`,
      autoTick: false,
      ...options,
    });
    clients.push(c);
    return c;
  };
  const client = newClient();
  return {
    taskQueue,
    config,
    resources,
    worker,
    client,
    /** Another gateway process (its own gatewayId unless given). */
    newClient,
    async stop() {
      await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
      worker.shutdown();
      await running;
      await resources.close();
    },
  };
}
