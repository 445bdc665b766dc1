import { randomUUID } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { ConnectionOwnershipError, SessionStatus, sessionWorkflowId, type SessionView } from '../src/client';
import { keys } from '../src/stores/redis/keys';
import type { Session } from '../src/contracts/session';
import { activeSignal } from '../src/contracts/session';
import { waitFor } from './helpers/broadcasts';
import { makeSession, seedApp, seedUser, startStack, testConfig } from './helpers/stack';
import { devServerEnv } from './helpers/temporal';

/** Contract §7 defect 7: a connectionId live for one uid/appPid cannot be taken over by another. */
describe('connectionId ownership (dev server)', () => {
  let env: TestWorkflowEnvironment;
  let stack: Awaited<ReturnType<typeof startStack>>;
  let appPid: string;

  beforeAll(async () => {
    env = await devServerEnv();
    stack = await startStack(env, testConfig());
    ({ appPid } = await seedApp(stack.resources));
  });
  afterAll(async () => {
    await stack?.stop();
    await env?.teardown();
  });

  const state = async (s: Session): Promise<SessionView> => (await stack.client.describe(s.connectionId))!;

  /** Everything a takeover could touch: workflow state, run, marker, connect row. */
  async function snapshot(s: Session) {
    const st = await state(s);
    const run = (await env.client.workflow.getHandle(sessionWorkflowId(s.connectionId)).describe()).runId;
    const marker = await stack.resources.redis.get(keys.active(s.connectionId));
    const { rows } = await stack.resources.pg.query(
      `SELECT uid, "socketId", "connectionEventType" FROM connections WHERE "connectionId" = $1 ORDER BY "connectionEventType"`,
      [s.connectionId],
    );
    return {
      run,
      status: st.status,
      uid: st.session.uid,
      socketId: st.socketId,
      reconnects: st.counts.reconnects,
      marker: marker ? (JSON.parse(marker) as { uid: string; socketId: string }) : null,
      rows,
    };
  }

  async function connectedOwner() {
    const user = await seedUser(stack.resources);
    const owner = makeSession(appPid, { uid: user.clientId, clientId: user.clientId, user });
    await stack.client.connected(owner);
    await waitFor(
      'connect recorded',
      async () =>
        (await stack.resources.pg.query('SELECT 1 FROM connections WHERE "connectionId" = $1', [owner.connectionId]))
          .rowCount,
      (n) => n === 1,
    );
    return owner;
  }

  it('refuses a takeover by another uid with ConnectionOwnershipError and changes nothing', async () => {
    const owner = await connectedOwner();
    const before = await snapshot(owner);
    const intruder = await seedUser(stack.resources);
    const claim: Session = {
      ...owner,
      uid: intruder.clientId,
      clientId: intruder.clientId,
      user: intruder,
      socketId: randomUUID(),
    };
    const err = await stack.client.connected(claim).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectionOwnershipError);
    expect(err).toMatchObject({ connectionId: owner.connectionId, field: 'uid' });
    // Nothing changed: same run, same socket, no reconnect, marker and DB rows still the owner's.
    await new Promise((r) => setTimeout(r, 500));
    const after = await snapshot(owner);
    expect(after).toEqual(before);
    expect(after.marker).toMatchObject({ uid: owner.uid, socketId: owner.socketId });
    expect(after.rows).toEqual([{ uid: owner.uid, socketId: owner.socketId, connectionEventType: 'connect' }]);
    // The intruder's user was not brought online.
    expect(await stack.resources.redis.hexists(keys.usersOnline(appPid), intruder.clientId)).toBe(0);
  });

  it('after continue-as-new the new run still refuses a takeover (memo carried from state)', async () => {
    // A heartbeat per call (each 10 s later by the gateway's clock) and a short history: the session
    // continues as new within a few calls.
    const chatty = stack.newClient({ maxHistoryEvents: 20, heartbeatForwardIntervalMs: 10_000 });
    let at = Date.now();
    const owner = makeSession(appPid);
    await chatty.connected(owner);
    const first = (await env.client.workflow.getHandle(sessionWorkflowId(owner.connectionId)).describe()).runId;
    await waitFor(
      'continued as new',
      async () => {
        await chatty.heartbeat(owner.connectionId, (at += 10_000));
        return (await env.client.workflow.getHandle(sessionWorkflowId(owner.connectionId)).describe()).runId;
      },
      (run) => run !== first,
    );
    const d = await env.client.workflow.getHandle(sessionWorkflowId(owner.connectionId)).describe();
    expect(d.memo).toEqual({ uid: owner.uid, appPid });
    const err = await stack.client.connected({ ...owner, uid: 'intruder', socketId: randomUUID() }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectionOwnershipError);
    expect((await state(owner)).counts.continuedAsNew).toBeGreaterThanOrEqual(1);
  });

  it('a reconnect by the same uid (new socket) is accepted', async () => {
    const owner = await connectedOwner();
    const before = await snapshot(owner);
    const again = { ...owner, socketId: randomUUID() };
    await stack.client.connected(again);
    const st = await waitFor(
      'reconnect applied',
      () => state(owner),
      (x) => x.socketId === again.socketId,
    );
    expect(st.status).toBe(SessionStatus.connected);
    expect(st.counts.reconnects).toBe(1);
    const after = await waitFor(
      'marker of the new socket',
      () => snapshot(owner),
      (x) => x.marker?.socketId === again.socketId,
    );
    expect(after.run).toBe(before.run);
  });

  it('the workflow itself drops a foreign active signal sent around the client', async () => {
    const owner = await connectedOwner();
    const before = await snapshot(owner);
    const handle = env.client.workflow.getHandle(sessionWorkflowId(owner.connectionId));
    await handle.signal(activeSignal, {
      session: { ...owner, uid: 'someone-else', socketId: randomUUID(), user: undefined },
      at: Date.now(),
    });
    const st = await waitFor(
      'signal dropped',
      () => state(owner),
      (x) => x.counts.droppedSignals === 1,
    );
    expect(st.socketId).toBe(owner.socketId);
    expect(st.session.uid).toBe(owner.uid);
    expect(await snapshot(owner)).toEqual(before);
  });

  it('once the owner’s session is destroyed, the connectionId may be used by another uid', async () => {
    const owner = await connectedOwner();
    await stack.client.invalidate(owner.connectionId, 'test');
    await waitFor(
      'destroyed',
      () => state(owner),
      (x) => x.status === SessionStatus.destroyed,
    );
    await waitFor(
      'run closed',
      async () => (await env.client.workflow.getHandle(sessionWorkflowId(owner.connectionId)).describe()).status.name,
      (s) => s === 'COMPLETED',
    );
    const next = makeSession(appPid, { connectionId: owner.connectionId, uid: 'another-uid' });
    await stack.client.connected(next);
    const st = await waitFor(
      'new run for the new uid',
      () => state(owner),
      (x) => x.session.uid === 'another-uid',
    );
    expect(st.status).toBe(SessionStatus.connected);
  });
});
