import { randomUUID } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { DestroyReason, SessionStatus, sessionWorkflowId, type SessionClient, type SessionView } from '../src/client';
import { createActivities, type Activities } from '../src/activities';
import { keys } from '../src/stores/redis/keys';
import { userStateQuery, userWorkflowId } from '../src/contracts/user';
import type { Session } from '../src/contracts/session';
import { makeSession, seedApp, seedUser, startStack, testConfig, testLogger } from './helpers/stack';
import { devServerEnv, timeSkippingEnv, workflowBundle } from './helpers/temporal';
import { waitUntil } from './helpers/wait';

const IDLE = 30_000;
const HARD = 4 * IDLE;
// Longer than a local attempt's budget (src/workflows/effect-runner.ts): the held effect runs again
// as a regular activity, so signals that come meanwhile are handled in later workflow tasks before
// the effect returns (as with a slow effect in production, or after a worker crash inside one).
const HOLD_MS = 9_000;

type EffectName = 'connectSession' | 'softDestroySession' | 'hardDestroySession';

/** One effect of the test worker held open, before or after it ran, until the test releases it. */
class Gate {
  name: EffectName | null = null;
  where: 'before' | 'after' = 'before';
  entered = false;
  private release: () => void = () => undefined;
  private released = Promise.resolve();

  hold(name: EffectName, where: 'before' | 'after') {
    Object.assign(this, { name, where, entered: false });
    this.released = new Promise((r) => (this.release = r));
  }
  open() {
    this.name = null;
    this.release();
  }
  wrap(acts: Activities): Activities {
    const wrapped = { ...acts };
    for (const name of ['connectSession', 'softDestroySession', 'hardDestroySession'] as const) {
      const real = acts[name].bind(acts) as (input: never) => Promise<unknown>;
      (wrapped as Record<string, unknown>)[name] = async (input: never) => {
        if (this.name !== name) return real(input);
        if (this.where === 'before') await this.wait();
        const result = await real(input);
        if (this.where === 'after') await this.wait();
        return result;
      };
    }
    return wrapped;
  }
  private async wait() {
    this.entered = true;
    await this.released;
  }
}

/**
 * Races the contract forbids losing: a reconnect (or a close) while an effect of the session is
 * running. Real Redis/Postgres/RabbitMQ; one effect held open by the test. The hard-destroy races
 * skip time (120 s timers); the soft-destroy race runs on the dev server: it ends a user's run at
 * the moment the reconnect's up arrives, and the time-skipping server once accepted that run's
 * completion with the up already in its history (a CI-like run: the up was lost, and a query's
 * replay of the run hit a nondeterminism), where a real server refuses the completion
 * (UnhandledCommand) and the retried task takes the up.
 */
describe.each([
  { server: 'time-skipping', makeEnv: timeSkippingEnv },
  { server: 'dev server', makeEnv: devServerEnv },
])('session races during effects ($server)', ({ server, makeEnv }) => {
  let env: TestWorkflowEnvironment;
  let stack: Awaited<ReturnType<typeof startStack>>;
  let worker: Worker;
  let running: Promise<void>;
  let appPid: string;
  let client: SessionClient;
  const gate = new Gate();

  beforeAll(async () => {
    env = await makeEnv();
    stack = await startStack(env, testConfig({ WS_IDLE_TIMEOUT_MS: String(IDLE) }));
    const taskQueue = `races-${stack.taskQueue}`;
    worker = await Worker.create({
      connection: env.nativeConnection,
      namespace: env.namespace ?? 'default',
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: gate.wrap(
        createActivities({
          ...stack.resources,
          config: stack.config,
          logger: testLogger,
          temporal: env.client,
          taskQueue,
        }),
      ),
    });
    running = worker.run();
    ({ appPid } = await seedApp(stack.resources));
    client = stack.newClient({ taskQueue });
  });
  afterAll(async () => {
    gate.open();
    worker?.shutdown();
    await running;
    await stack?.stop();
    await env?.teardown();
  });
  afterEach(() => gate.open());
  // A previous test's skipped time may have let the lease lapse: the tick takes a new one.
  beforeEach(() => client.tick());

  const redis = () => stack.resources.redis;
  const now = () => env.currentTimeMs();
  const state = async (s: Session): Promise<SessionView> => (await client.describe(s.connectionId))!;
  const settled = (s: Session, what: string, ok: (st: SessionView) => boolean) =>
    waitUntil(what, async () => ok(await state(s)) && state(s), 30_000);
  async function advance(ms: number) {
    for (let left = ms; left > 0; left -= IDLE) {
      await client.tick();
      await env.sleep(Math.min(IDLE, left));
    }
  }
  async function seedPresence(s: Session) {
    const room = `${appPid}:room-${randomUUID().slice(0, 8)}`;
    await redis()
      .multi()
      .hset(keys.presenceSets(s.connectionId), room, '1')
      .hset(keys.presenceMembers(room), s.connectionId, '{}')
      .rpush(keys.presenceIndex(room), s.connectionId)
      .exec();
    return room;
  }
  /** Holds the effect, waits until the worker is inside it, does `meanwhile`, waits past the task timeout, releases. */
  async function during(
    name: EffectName,
    where: 'before' | 'after',
    start: () => Promise<void>,
    meanwhile: () => Promise<void>,
  ) {
    gate.hold(name, where);
    await start();
    await waitUntil(`${name} entered`, () => Promise.resolve(gate.entered), 30_000);
    await meanwhile();
    await new Promise((r) => setTimeout(r, HOLD_MS));
    gate.open();
  }
  const markerSocket = async (s: Session) => {
    const m = await redis().get(keys.active(s.connectionId));
    return m ? (JSON.parse(m) as Session).socketId : null;
  };

  const onDevServer = server === 'dev server';
  const soft = onDevServer ? it : () => undefined;
  const skipping = onDevServer ? () => undefined : it;

  soft(
    'a reconnect during the soft destroy: the new lifetime keeps its presence owed, so the next close takes the user offline',
    async () => {
      const user = await seedUser(stack.resources);
      const s = makeSession(appPid, { clientId: user.clientId, uid: user.clientId, user });
      await client.connected(s, await now());
      await seedPresence(s);
      const again = { ...s, socketId: randomUUID() };
      await during(
        'softDestroySession',
        'before',
        async () => {
          await client.disconnected(s, await now());
          await env.sleep(5_100);
        },
        () => client.connected(again, Date.now()),
      );
      const live = await settled(
        s,
        'the reconnect live',
        (st) => st.socketId === again.socketId && !st.presenceRemoved,
      );
      expect(live.status).toBe(SessionStatus.connected);
      // The connect effect may land a little later than the state shows the reconnect (as a regular
      // activity when its local attempt ran beside the held soft destroy past its budget).
      await waitUntil('marker of the new socket', async () => (await markerSocket(s)) === again.socketId);
      // The user came back online through the new socket.
      const userHandle = env.client.workflow.getHandle(userWorkflowId(appPid, user.clientId));
      await waitUntil('user online again', async () => (await userHandle.query(userStateQuery)).online);

      await seedPresence(again);
      await client.disconnected(again, await now());
      await env.sleep(5_100);
      const closed = await settled(s, 'the second soft destroy', (st) => st.presenceRemoved);
      expect(closed.counts.presenceRemovals).toBe(1); // the first one's result belonged to the old lifetime
      const u = await waitUntil('user offline', async () => {
        const st = await userHandle.query(userStateQuery).catch(() => null);
        return st && !st.online && st;
      });
      // Whether the user went offline during the held soft destroy depends on when its effect landed
      // (a user's run ends when it goes offline; the reconnect may start the next): the last run saw
      // the user come up and go offline with the second close, and Redis and the DB agree.
      expect(u.counts.offlineEdges).toBe(u.counts.onlineEdges);
      expect(u.counts.offlineEdges).toBeGreaterThanOrEqual(1);
      expect(await redis().hexists(keys.usersOnline(appPid), user.clientId)).toBe(0);
      const { rows } = await stack.resources.pg.query<{ isOnline: boolean }>(
        'SELECT "isOnline" FROM authentication_users WHERE id = $1',
        [user.id],
      );
      expect(rows[0]?.isOnline).toBe(false);
    },
    90_000,
  );

  for (const where of ['before', 'after'] as const) {
    skipping(
      `a reconnect during the hard destroy (${where} its effect) keeps the session: live again, not destroyed`,
      async () => {
        const s = makeSession(appPid);
        await client.connected(s, await now());
        const again = { ...s, socketId: randomUUID() };
        await during(
          'hardDestroySession',
          where,
          async () => {
            await client.disconnected(s, await now());
            await advance(HARD + 1_000);
          },
          () => client.connected(again, Date.now()),
        );
        const live = await settled(s, 'the reconnect live', (st) => st.socketId === again.socketId);
        expect(live.status).toBe(SessionStatus.connected);
        expect(live.destroyReason).toBeNull();
        await waitUntil('marker of the new socket', async () => (await markerSocket(s)) === again.socketId);
        expect(await redis().zscore('heartbeat:keepalive', s.connectionId)).not.toBeNull();
        const d = await env.client.workflow.getHandle(sessionWorkflowId(s.connectionId)).describe();
        expect(d.status.name).toBe('RUNNING');
        expect(live.counts.reconnects).toBe(1);
        // ... and its own close still ends in a destroy.
        await client.disconnected(again, await now());
        const final = (await env.client.workflow.getHandle(sessionWorkflowId(s.connectionId)).result()) as SessionView;
        expect(final.destroyReason).toBe(DestroyReason.closed);
        expect(await redis().exists(keys.active(s.connectionId))).toBe(0);
      },
      90_000,
    );
  }

  skipping(
    'a close during the connect effect is recorded after it: one connect row, one disconnect row, then the destroy',
    async () => {
      const s = makeSession(appPid);
      await during(
        'connectSession',
        'before',
        () => client.connected(s, Date.now()),
        () => client.disconnected(s, Date.now()).then(() => undefined),
      );
      const final = (await env.client.workflow.getHandle(sessionWorkflowId(s.connectionId)).result()) as SessionView;
      expect(final.status).toBe(SessionStatus.destroyed);
      const rows = await stack.resources.pg.query<{ connectionEventType: string }>(
        'SELECT "connectionEventType" FROM connections WHERE "connectionId" = $1 ORDER BY "connectionEventType"',
        [s.connectionId],
      );
      expect(rows.rows.map((r) => r.connectionEventType)).toEqual(['connect', 'disconnect']);
      expect(
        await redis().hexists(keys.gatewayIndex(client.holder.gatewayId, client.holder.incarnation), s.connectionId),
      ).toBe(0);
    },
    90_000,
  );
});
