import { createActivities } from '../src/activities';
import { keys, legacyKeys } from '../src/stores/redis/keys';
import { openResources, type Resources } from '../src/service/resources';
import { captureUserBroadcasts, waitFor } from './helpers/broadcasts';
import { makeSession, seedApp, seedUser, testConfig, testLogger } from './helpers/stack';

/**
 * A user edge's broadcasts (connection:status, then connect or disconnect) on real Redis, Postgres
 * and RabbitMQ, when its activity is retried (an outage or a crash between the two publishes).
 */
describe('user edge broadcasts under retry', () => {
  const config = testConfig();
  let resources: Resources;
  let activities: ReturnType<typeof createActivities>;
  beforeAll(() => {
    resources = openResources(config);
    activities = createActivities({ ...resources, config, logger: testLogger });
  });
  afterAll(async () => {
    await resources.close();
  });

  async function seededEdge(preset: (edgeKey: string, edge: string) => Promise<unknown>) {
    const { appPid } = await seedApp(resources);
    const user = await seedUser(resources);
    const session = makeSession(appPid, { clientId: user.clientId, user });
    const capture = await captureUserBroadcasts(config, user.clientId);
    const edge = `run-${session.connectionId}:0`;
    await preset(keys.edgeProgress(appPid, user.clientId), edge);
    const input = { appPid, clientId: user.clientId, user, session, connections: { [session.connectionId]: 1 }, edge };
    return { capture, input, appPid, user };
  }

  /** Runs the edge's online effect and waits for its first broadcast. */
  async function onlineUntilBroadcast(
    input: Awaited<ReturnType<typeof seededEdge>>['input'],
    capture: Awaited<ReturnType<typeof seededEdge>>['capture'],
  ) {
    await activities.userOnline(input);
    await waitFor(
      'the connect broadcast',
      () => capture.events(),
      (e) => e.length >= 1,
    );
  }

  it('a retry resumes after the last confirmed message: connection:status is not sent twice', async () => {
    // The first attempt confirmed connection:status, then failed before connect.
    const { capture, input, appPid, user } = await seededEdge((key, edge) => resources.redis.set(key, `${edge}|1`));
    try {
      await onlineUntilBroadcast(input, capture);
      // A second retry of the same edge (the activity's completion was lost) sends nothing.
      await activities.userOnline(input);
      await capture.drain();
      expect(capture.events()).toEqual(['connect']);
      expect(await resources.redis.hget(keys.usersOnline(appPid), user.clientId)).not.toBeNull();
    } finally {
      await capture.close();
      await resources.redis.del(keys.usersOnline(appPid), keys.clientConnections(appPid, user.clientId));
    }
  });

  it('a retry resumes from progress a 0.2 worker left under the old key name; new progress is under tether:', async () => {
    // 0.2 kept the progress in the platform's client: space; this edge's first message went out then.
    const { capture, input, appPid, user } = await seededEdge((key) => resources.redis.del(key));
    const legacy = legacyKeys.edgeProgress(appPid, user.clientId);
    await resources.redis.set(legacy, `${input.edge}|1`, 'EX', 60);
    try {
      await onlineUntilBroadcast(input, capture);
      await capture.drain();
      expect(capture.events()).toEqual(['connect']);
      expect(keys.edgeProgress(appPid, user.clientId)).toBe(`tether:client:${appPid}:${user.clientId}:edge-published`);
      expect(await resources.redis.get(keys.edgeProgress(appPid, user.clientId))).toBe(`${input.edge}|2`);
    } finally {
      await capture.close();
      await resources.redis.del(
        legacy,
        keys.edgeProgress(appPid, user.clientId),
        keys.usersOnline(appPid),
        keys.clientConnections(appPid, user.clientId),
      );
    }
  });

  it('a repeat after a lost progress write carries the same messageIds, so a consumer can drop it', async () => {
    const { capture, input, appPid, user } = await seededEdge((key) => resources.redis.del(key));
    try {
      await activities.userOnline(input);
      // A crash after the broker's confirms and before the progress writes: the retry sends both again.
      await resources.redis.del(keys.edgeProgress(appPid, user.clientId));
      await activities.userOnline(input);
      await waitFor(
        'both messages twice',
        () => capture.events(),
        (e) => e.length >= 4,
      );
      const ids = capture.messages.map((m) => m.messageId);
      expect(ids).toEqual([`${input.edge}:0`, `${input.edge}:1`, `${input.edge}:0`, `${input.edge}:1`]);
    } finally {
      await capture.close();
      await resources.redis.del(
        keys.edgeProgress(appPid, user.clientId),
        keys.usersOnline(appPid),
        keys.clientConnections(appPid, user.clientId),
      );
    }
  });

  it('the next edge of the user sends both messages again', async () => {
    const { capture, input, appPid, user } = await seededEdge((key) => resources.redis.set(key, 'an-older-edge|2'));
    try {
      await activities.userOnline(input);
      await activities.userOffline({ ...input, edge: `${input.edge}-next` });
      await waitFor(
        'four broadcasts',
        () => capture.events(),
        (e) => e.length >= 4,
      );
      await capture.drain();
      expect(capture.events()).toEqual(['connection:status', 'connect', 'connection:status', 'disconnect']);
    } finally {
      await capture.close();
      await resources.redis.del(keys.edgeProgress(appPid, user.clientId));
    }
  });
});
