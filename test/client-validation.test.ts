import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { InvalidSessionInputError, SessionClient } from '../src/client';
import { makeSession } from './helpers/stack';

/**
 * The client talks to an address where nothing listens: a call that passed validation would fail
 * with a connection error, so an InvalidSessionInputError proves nothing was sent.
 */
describe('SessionClient input validation', () => {
  let connection: Connection;
  let client: SessionClient;
  beforeAll(() => {
    // No retry interceptor: the one valid call fails at once instead of retrying for a minute.
    connection = Connection.lazy({ address: '127.0.0.1:1', connectTimeout: 200, interceptors: [] });
    client = new SessionClient(new Client({ connection }), {
      taskQueue: 'tq',
      idleTimeoutMs: 30_000,
      gatewayId: 'gw',
      autoTick: false,
    });
  });
  afterAll(async () => {
    await connection.close();
  });

  const APP = 'Fef8GnS7C5zN';
  const good = () => makeSession(APP);

  async function rejectedField(call: Promise<unknown>): Promise<string> {
    try {
      await call;
    } catch (err) {
      if (err instanceof InvalidSessionInputError) return err.field;
      throw err;
    }
    throw new Error('call was accepted');
  }

  it.each([
    ['session', () => null],
    ['session.appPid', () => ({ ...good(), appPid: 42 })],
    ['session.appPid', () => ({ ...good(), appPid: 'short' })],
    ['session.connectionId', () => ({ ...good(), connectionId: undefined })],
    ['session.connectionId', () => ({ ...good(), connectionId: 'OtherApp1234:abcdefabcdef' })],
    ['session.socketId', () => ({ ...good(), socketId: 'not-a-uuid' })],
    ['session.uid', () => ({ ...good(), uid: '' })],
    ['session.keyId', () => ({ ...good(), keyId: 'k'.repeat(300) })],
    ['session.keyId', () => ({ ...good(), keyId: 'key\u0000nul' })],
    ['session.user.id', () => ({ ...good(), user: { id: 'nope', clientId: 'c' } })],
    ['session.user.clientId', () => ({ ...good(), user: { id: randomUUID() } })],
    ['session.user', () => ({ ...good(), user: { id: randomUUID(), clientId: 'c', blob: 'x'.repeat(20_000) } })],
    ['session.user', () => ({ ...good(), user: { id: randomUUID(), clientId: 'c', n: 10n } })],
  ])('connected() rejects a bad %s before Temporal', async (field, make) => {
    expect(await rejectedField(client.connected(make() as never))).toBe(field);
  });

  it('connected() rejects a non-numeric event time', async () => {
    expect(await rejectedField(client.connected(good(), Number.NaN))).toBe('at');
  });

  it('heartbeat(), disconnected(), invalidate() and describe() name the bad field', async () => {
    expect(await rejectedField(client.heartbeat('no-colon'))).toBe('connectionId');
    expect(await rejectedField(client.heartbeat(good().connectionId, -1))).toBe('at');
    expect(await rejectedField(client.disconnected({ connectionId: good().connectionId, socketId: 'x' }))).toBe(
      'socketId',
    );
    expect(await rejectedField(client.disconnected(undefined as never))).toBe('session');
    expect(await rejectedField(client.disconnected({ socketId: randomUUID() } as never))).toBe('connectionId');
    expect(await rejectedField(client.invalidate(good().connectionId, ''))).toBe('reason');
    expect(await rejectedField(client.describe(''))).toBe('connectionId');
  });

  it('a valid call does go to Temporal (here: fails to connect), so the rejections above are real', async () => {
    await expect(client.connected(good())).rejects.not.toBeInstanceOf(InvalidSessionInputError);
  });
});
