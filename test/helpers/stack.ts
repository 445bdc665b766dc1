import { randomUUID } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { SessionClient, type SessionClientOptions } from '../../src/client';
import { loadConfig, type Config } from '../../src/config';
import { createLogger } from '../../src/logger';
import { openResources, type Resources } from '../../src/service/resources';
import type { Session } from '../../src/contracts/session';
import { createWorker } from '../../src/worker';
import { randomId } from '../../harness/random-id';
import { seedApp as insertApp, seedUsers } from '../../harness/seed';
import { workflowBundle } from './temporal';

export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ LOG_LEVEL: 'error', ...env });
}

export const testLogger = createLogger({ level: 'error' });

/** The tests' name for the harness's random ids. */
export const nanoid = randomId;

/** Inserts an application row and returns its pid (the platform owns `applications`). */
export function seedApp(resources: Pick<Resources, 'pg'>): Promise<{ appPid: string; appId: string }> {
  return insertApp(resources.pg);
}

/** Inserts a user row (the platform owns `authentication_users`) and returns it as the gateway sends it. */
export async function seedUser(resources: Pick<Resources, 'pg'>, clientId = nanoid(), appId: string | null = null) {
  const [user] = await seedUsers(resources.pg, [clientId], { appId });
  return user!;
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
