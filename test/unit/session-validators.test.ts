import {
  LIMITS,
  checkActive,
  checkConnectionId,
  checkDisconnected,
  checkGatewayLost,
  checkHeartbeat,
  checkInvalidate,
  checkSession,
} from '../../src/contracts/session';
import { checkGateway } from '../../src/contracts/gateway';
import { checkConnectionDown, DownSource } from '../../src/contracts/user';
import type { Check } from '../../src/contracts/check';

/**
 * The validators, pure (no server): every rejection names its field and its reason exactly, every
 * boundary is tried on both sides. Part of `npm run mutate` (stryker.config.json): a mutant of the
 * validators that no test here kills is a hole in the contract's input checks.
 */

const APP = 'Fef8GnS7C5zN';
const CID = `${APP}:abcDEF123_-`;
const SOCKET = '0b7c6c2e-9f5e-4c3a-8d7b-1a2b3c4d5e6f';
const USER_ID = '6f1d2b9a-3c4e-4f5a-9b8c-7d6e5f4a3b2c';

const base = () => ({ uid: 'u1', appPid: APP, keyId: 'k1', connectionId: CID, socketId: SOCKET });

function rejected<T>(c: Check<T>): { field: string; reason: string } {
  if (c.ok) throw new Error(`accepted: ${JSON.stringify(c.value)}`);
  return { field: c.field, reason: c.reason };
}
function accepted<T>(c: Check<T>): T {
  if (!c.ok) throw new Error(`rejected: ${c.field} ${c.reason}`);
  return c.value;
}

const NON_EMPTY = 'must be a non-empty string';

describe('LIMITS', () => {
  it('are the contract limits', () => {
    expect(LIMITS).toEqual({ idLength: 255, userJsonBytes: 16 * 1024, reasonLength: 1024 });
  });
});

describe('checkSession', () => {
  it('accepts the minimal session and returns exactly its fields', () => {
    expect(accepted(checkSession(base()))).toStrictEqual(base());
  });

  it('keeps the optional fields and drops everything else (permissions never stored)', () => {
    const user = { id: USER_ID, clientId: 'c1', username: 'ann' };
    const v = accepted(
      checkSession({
        ...base(),
        appId: 'app-1',
        clientId: 'c1',
        exp: 0,
        timestamp: '2026-01-01T00:00:00Z',
        user,
        permissions: { '*': ['*'] },
        extra: 1,
      }),
    );
    expect(v).toStrictEqual({
      ...base(),
      appId: 'app-1',
      clientId: 'c1',
      exp: 0,
      timestamp: '2026-01-01T00:00:00Z',
      user,
    });
  });

  it('treats null optional fields as absent', () => {
    const v = accepted(checkSession({ ...base(), appId: null, clientId: null, timestamp: null, user: null }));
    expect(v).toStrictEqual(base());
  });

  it.each([null, undefined, 'x', 42, true, [], [base()]])('rejects a session that is not an object: %p', (v) => {
    expect(rejected(checkSession(v))).toEqual({ field: 'session', reason: 'must be an object' });
  });

  it.each(['uid', 'appPid', 'keyId', 'connectionId', 'socketId'])('%s is required and a non-empty string', (f) => {
    for (const bad of [undefined, null, '', 42, {}, ['x']]) {
      expect(rejected(checkSession({ ...base(), [f]: bad }))).toEqual({ field: `session.${f}`, reason: NON_EMPTY });
    }
  });

  it('ids are at most 255 characters', () => {
    expect(accepted(checkSession({ ...base(), uid: 'u'.repeat(255) })).uid).toHaveLength(255);
    expect(rejected(checkSession({ ...base(), uid: 'u'.repeat(256) }))).toEqual({
      field: 'session.uid',
      reason: 'must be at most 255 characters',
    });
    expect(rejected(checkSession({ ...base(), keyId: 'k'.repeat(256) })).field).toBe('session.keyId');
  });

  it('ids must not contain NUL', () => {
    for (const f of ['uid', 'keyId']) {
      expect(rejected(checkSession({ ...base(), [f]: 'a\u0000b' }))).toEqual({
        field: `session.${f}`,
        reason: 'must not contain a NUL character',
      });
    }
  });

  describe('appPid', () => {
    it('is exactly 12 characters of [A-Za-z0-9_-]', () => {
      for (const appPid of [
        'ABCDEFGHIJKL',
        'abcdefghijkl',
        '012345678901',
        '____________',
        '------------',
        'aB3_-aB3_-aB',
      ]) {
        expect(accepted(checkSession({ ...base(), appPid, connectionId: `${appPid}:x` })).appPid).toBe(appPid);
      }
      for (const appPid of [
        'ABCDEFGHIJK',
        'ABCDEFGHIJKLM',
        'ABCDEFGHIJK!',
        '!ABCDEFGHIJK',
        'ABCDE GHIJKL',
        'ABCDEFGHIJK\n',
      ]) {
        expect(rejected(checkSession({ ...base(), appPid, connectionId: `${appPid}:x` }))).toEqual({
          field: 'session.appPid',
          reason: 'must be a 12-character app pid',
        });
      }
    });
    it('is checked before the connectionId', () => {
      expect(rejected(checkSession({ ...base(), appPid: 'short', connectionId: 'nope' })).field).toBe('session.appPid');
    });
  });

  describe('connectionId', () => {
    it('is {appPid}:{id} with the id of [A-Za-z0-9_:.-]', () => {
      for (const id of ['a', 'Z', '9', '_', '-', '.', ':', 'aZ9_-.:x', 'room:with:colons']) {
        expect(accepted(checkSession({ ...base(), connectionId: `${APP}:${id}` })).connectionId).toBe(`${APP}:${id}`);
      }
    });
    it.each([
      ['no id', `${APP}:`],
      ['no colon', `${APP}abc`],
      ['a space in the id', `${APP}:a b`],
      ['a trailing bad character', `${APP}:abc!`],
      ['a trailing newline', `${APP}:abc\n`],
      ['a leading bad character', `!${APP}:abc`],
      ['an 11-character prefix', `${APP.slice(1)}:abc`],
      ['a 13-character prefix', `x${APP}:abc`],
      ['a bad prefix character', `${APP.slice(0, 11)}!:abc`],
    ])('rejects %s', (_what, connectionId) => {
      const r = rejected(checkSession({ ...base(), connectionId }));
      expect(r).toEqual({ field: 'session.connectionId', reason: 'must look like {appPid}:{id}' });
    });
    it('must start with the session appPid', () => {
      const other = 'OtherAppPid1';
      expect(rejected(checkSession({ ...base(), connectionId: `${other}:abc` }))).toEqual({
        field: 'session.connectionId',
        reason: `must start with "${APP}:"`,
      });
    });
    it('is at most 255 characters', () => {
      const long = `${APP}:${'x'.repeat(255 - APP.length - 1)}`;
      expect(accepted(checkSession({ ...base(), connectionId: long })).connectionId).toBe(long);
      expect(rejected(checkSession({ ...base(), connectionId: `${long}x` }))).toEqual({
        field: 'session.connectionId',
        reason: 'must be at most 255 characters',
      });
    });
  });

  describe('socketId', () => {
    it('is a uuid, any case', () => {
      expect(accepted(checkSession({ ...base(), socketId: SOCKET.toUpperCase() })).socketId).toBe(SOCKET.toUpperCase());
      expect(accepted(checkSession({ ...base(), socketId: '00000000-0000-0000-0000-000000000000' })).socketId).toBe(
        '00000000-0000-0000-0000-000000000000',
      );
    });
    it.each([
      'not-a-uuid',
      `x${SOCKET}`,
      `${SOCKET}x`,
      `${SOCKET}\n`,
      SOCKET.replace(/-/g, ''),
      SOCKET.replace('0b7c6c2e', '0b7c6c2'),
      SOCKET.replace('0b7c6c2e', '0b7c6c2ee'),
      SOCKET.replace('-9f5e-', '-9f5-'),
      SOCKET.replace('-9f5e-', '-9f5ee-'),
      SOCKET.replace('-4c3a-', '-4c3-'),
      SOCKET.replace('-4c3a-', '-4c3aa-'),
      SOCKET.replace('-8d7b-', '-8d7-'),
      SOCKET.replace('-8d7b-', '-8d7bb-'),
      SOCKET.replace('1a2b3c4d5e6f', '1a2b3c4d5e6'),
      SOCKET.replace('1a2b3c4d5e6f', '1a2b3c4d5e6ff'),
      SOCKET.replace('0b7c6c2e', '0b7c6c2g'),
      SOCKET.replace('9f5e', '9f5g'),
      SOCKET.replace('4c3a', '4c3g'),
      SOCKET.replace('8d7b', '8d7g'),
      SOCKET.replace('1a2b3c4d5e6f', '1a2b3c4d5e6g'),
    ])('rejects %p', (socketId) => {
      expect(rejected(checkSession({ ...base(), socketId }))).toEqual({
        field: 'session.socketId',
        reason: 'must be a uuid',
      });
    });
  });

  describe('optional strings', () => {
    it.each(['appId', 'clientId', 'timestamp'])('%s: a non-empty string of at most 255, without NUL', (f) => {
      expect(accepted(checkSession({ ...base(), [f]: 'x'.repeat(255) }))).toHaveProperty(f, 'x'.repeat(255));
      expect(rejected(checkSession({ ...base(), [f]: '' }))).toEqual({ field: `session.${f}`, reason: NON_EMPTY });
      expect(rejected(checkSession({ ...base(), [f]: 7 }))).toEqual({ field: `session.${f}`, reason: NON_EMPTY });
      expect(rejected(checkSession({ ...base(), [f]: 'x'.repeat(256) }))).toEqual({
        field: `session.${f}`,
        reason: 'must be at most 255 characters',
      });
      expect(rejected(checkSession({ ...base(), [f]: '\u0000' })).field).toBe(`session.${f}`);
    });
  });

  describe('exp', () => {
    it('is epoch milliseconds: 0 and up, finite', () => {
      expect(accepted(checkSession({ ...base(), exp: 0 })).exp).toBe(0);
      expect(accepted(checkSession({ ...base(), exp: 1.5 })).exp).toBe(1.5);
      expect(accepted(checkSession({ ...base(), exp: 1_700_000_000_000 })).exp).toBe(1_700_000_000_000);
      for (const exp of [-1, -0.001, Number.NaN, Infinity, -Infinity, '1700000000000', null, {}]) {
        expect(rejected(checkSession({ ...base(), exp }))).toEqual({
          field: 'session.exp',
          reason: 'must be epoch milliseconds',
        });
      }
    });
  });

  describe('user', () => {
    const user = () => ({ id: USER_ID, clientId: 'client-1' });
    it('is an object with a uuid id and a clientId; returned as a JSON copy', () => {
      const u = { ...user(), createdAt: new Date(0), gone: undefined };
      const v = accepted(checkSession({ ...base(), user: u })).user!;
      expect(v).toStrictEqual({ id: USER_ID, clientId: 'client-1', createdAt: '1970-01-01T00:00:00.000Z' });
      expect(v).not.toBe(u);
      expect(accepted(checkSession({ ...base(), user: { ...user(), id: USER_ID.toUpperCase() } })).user!.id).toBe(
        USER_ID.toUpperCase(),
      );
    });
    it.each([['a string'], [1], [true], [[]], [Object.assign([], { id: USER_ID, clientId: 'c' })]])(
      'rejects a user that is not an object: %p',
      (u) => {
        expect(rejected(checkSession({ ...base(), user: u }))).toEqual({
          field: 'session.user',
          reason: 'must be an object',
        });
      },
    );
    it('rejects a user without a uuid id', () => {
      for (const id of [undefined, 1, '', 'not-a-uuid', `${USER_ID}x`, `x${USER_ID}`]) {
        expect(rejected(checkSession({ ...base(), user: { ...user(), id } }))).toEqual({
          field: 'session.user.id',
          reason: 'must be a uuid',
        });
      }
    });
    it('rejects an id that is not a string, even one that prints as a uuid', () => {
      const id = { toString: () => USER_ID };
      expect(rejected(checkSession({ ...base(), user: { ...user(), id } }))).toEqual({
        field: 'session.user.id',
        reason: 'must be a uuid',
      });
    });
    it('rejects a user without a clientId', () => {
      for (const clientId of [undefined, '', 3, 'c'.repeat(256)]) {
        expect(rejected(checkSession({ ...base(), user: { ...user(), clientId } })).field).toBe(
          'session.user.clientId',
        );
      }
      expect(rejected(checkSession({ ...base(), user: { ...user(), clientId: '' } })).reason).toBe(NON_EMPTY);
    });
    it('serialises to at most 16 KiB, counted in UTF-8 bytes', () => {
      const size = (u: object) => new TextEncoder().encode(JSON.stringify(u)).length;
      const padded = (bytes: number, unit: string) => {
        const u = { ...user(), bio: '' };
        const room = bytes - size(u);
        u.bio = unit.repeat(Math.floor(room / new TextEncoder().encode(unit).length));
        return u;
      };
      const exact = padded(16 * 1024, 'b');
      expect(size(exact)).toBe(16 * 1024);
      expect(accepted(checkSession({ ...base(), user: exact })).user).toEqual(exact);
      const over = { ...exact, bio: `${exact.bio}b` };
      expect(rejected(checkSession({ ...base(), user: over }))).toEqual({
        field: 'session.user',
        reason: 'must serialise to at most 16384 bytes',
      });
      // 'é' is 2 bytes: fewer than 16 Ki characters, more than 16 KiB.
      const wide = padded(16 * 1024 + 2, 'é');
      expect(JSON.stringify(wide).length).toBeLessThan(16 * 1024);
      expect(rejected(checkSession({ ...base(), user: wide })).field).toBe('session.user');
    });
    it('must be JSON-serialisable', () => {
      const cyclic: Record<string, unknown> = user();
      cyclic.self = cyclic;
      for (const u of [cyclic, { ...user(), n: 1n }, { ...user(), toJSON: () => undefined }]) {
        expect(rejected(checkSession({ ...base(), user: u }))).toEqual({
          field: 'session.user',
          reason: 'must be JSON-serialisable',
        });
      }
    });
  });

  it('lets an error that is not a validation failure through', () => {
    const v = {
      ...base(),
      get uid(): string {
        throw new TypeError('boom');
      },
    };
    expect(() => checkSession(v)).toThrow(new TypeError('boom'));
  });
});

describe('checkConnectionId', () => {
  it('accepts {appPid}:{id}', () => {
    expect(accepted(checkConnectionId(CID))).toBe(CID);
  });
  it('names the field connectionId', () => {
    expect(rejected(checkConnectionId(''))).toEqual({ field: 'connectionId', reason: NON_EMPTY });
    expect(rejected(checkConnectionId(5))).toEqual({ field: 'connectionId', reason: NON_EMPTY });
    expect(rejected(checkConnectionId('no-colon-here'))).toEqual({
      field: 'connectionId',
      reason: 'must look like {appPid}:{id}',
    });
  });
});

describe('checkActive', () => {
  it('accepts a session and an event time', () => {
    expect(accepted(checkActive({ session: base(), at: 0 }))).toStrictEqual({ session: base(), at: 0 });
  });
  it.each([null, 'x', [], 1])('rejects a message that is not an object: %p', (m) => {
    expect(rejected(checkActive(m))).toEqual({ field: 'message', reason: 'must be an object' });
  });
  it('passes the session failure through', () => {
    expect(rejected(checkActive({ session: { ...base(), socketId: 'x' }, at: 1 }))).toEqual({
      field: 'session.socketId',
      reason: 'must be a uuid',
    });
    expect(rejected(checkActive({ at: 1 }))).toEqual({ field: 'session', reason: 'must be an object' });
  });
  it('requires at', () => {
    expect(rejected(checkActive({ session: base() }))).toEqual({ field: 'at', reason: 'is required' });
    expect(rejected(checkActive({ session: base(), at: -1 }))).toEqual({
      field: 'at',
      reason: 'must be epoch milliseconds',
    });
  });
});

describe('checkHeartbeat', () => {
  it('accepts an event time and nothing else', () => {
    expect(accepted(checkHeartbeat({ at: 5, other: 1 }))).toStrictEqual({ at: 5 });
  });
  it('rejects the rest', () => {
    expect(rejected(checkHeartbeat(null))).toEqual({ field: 'message', reason: 'must be an object' });
    expect(rejected(checkHeartbeat([]))).toEqual({ field: 'message', reason: 'must be an object' });
    expect(rejected(checkHeartbeat({}))).toEqual({ field: 'at', reason: 'is required' });
    expect(rejected(checkHeartbeat({ at: Number.NaN }))).toEqual({ field: 'at', reason: 'must be epoch milliseconds' });
  });
});

describe('checkDisconnected', () => {
  const msg = () => ({ connectionId: CID, socketId: SOCKET, at: 3 });
  it('accepts connectionId, socketId and at', () => {
    expect(accepted(checkDisconnected({ ...msg(), extra: true }))).toStrictEqual(msg());
  });
  it('rejects the rest, naming the field', () => {
    expect(rejected(checkDisconnected('x'))).toEqual({ field: 'message', reason: 'must be an object' });
    expect(rejected(checkDisconnected({ ...msg(), connectionId: 'bad' }))).toEqual({
      field: 'connectionId',
      reason: 'must look like {appPid}:{id}',
    });
    expect(rejected(checkDisconnected({ ...msg(), socketId: '' }))).toEqual({ field: 'socketId', reason: NON_EMPTY });
    expect(rejected(checkDisconnected({ ...msg(), socketId: 'abc' }))).toEqual({
      field: 'socketId',
      reason: 'must be a uuid',
    });
    expect(rejected(checkDisconnected({ ...msg(), at: undefined }))).toEqual({ field: 'at', reason: 'is required' });
    expect(rejected(checkDisconnected({ ...msg(), at: 'now' }))).toEqual({
      field: 'at',
      reason: 'must be epoch milliseconds',
    });
  });
});

describe('checkInvalidate', () => {
  it('accepts a reason of up to 1024 characters', () => {
    expect(accepted(checkInvalidate({ reason: 'r'.repeat(1024), x: 1 }))).toStrictEqual({ reason: 'r'.repeat(1024) });
  });
  it('rejects the rest', () => {
    expect(rejected(checkInvalidate(undefined))).toEqual({ field: 'message', reason: 'must be an object' });
    expect(rejected(checkInvalidate({ reason: '' }))).toEqual({ field: 'reason', reason: NON_EMPTY });
    expect(rejected(checkInvalidate({ reason: 'r'.repeat(1025) }))).toEqual({
      field: 'reason',
      reason: 'must be at most 1024 characters',
    });
    expect(rejected(checkInvalidate({ reason: 'a\u0000' }))).toEqual({
      field: 'reason',
      reason: 'must not contain a NUL character',
    });
  });
});

describe('checkGateway / checkGatewayLost / checkActive gateway', () => {
  const GW = { gatewayId: 'gw-1', incarnation: 'inc-1' };
  it('accepts a gatewayId and an incarnation of up to 255 characters, keeping nothing else', () => {
    expect(accepted(checkGateway({ ...GW, extra: 1 }))).toEqual(GW);
    const long = { gatewayId: 'g'.repeat(255), incarnation: 'i'.repeat(255) };
    expect(accepted(checkGateway(long))).toEqual(long);
    expect(accepted(checkGatewayLost({ ...GW, at: 5 }))).toEqual({ ...GW, at: 5 });
    expect(accepted(checkActive({ session: base(), at: 1, gateway: GW })).gateway).toEqual(GW);
    expect(accepted(checkActive({ session: base(), at: 1 }))).not.toHaveProperty('gateway');
  });
  it('rejects the rest, naming the field', () => {
    expect(rejected(checkGateway(null))).toEqual({ field: 'message', reason: 'must be an object' });
    expect(rejected(checkGateway({ ...GW, gatewayId: '' }))).toEqual({ field: 'gatewayId', reason: NON_EMPTY });
    expect(rejected(checkGateway({ ...GW, gatewayId: 'g'.repeat(256) }))).toEqual({
      field: 'gatewayId',
      reason: 'must be at most 255 characters',
    });
    expect(rejected(checkGateway({ ...GW, incarnation: 'a\u0000b' }))).toEqual({
      field: 'incarnation',
      reason: 'must not contain a NUL character',
    });
    expect(rejected(checkGatewayLost({ ...GW }))).toEqual({ field: 'at', reason: 'is required' });
    expect(rejected(checkGatewayLost({ ...GW, at: -1 }))).toEqual({
      field: 'at',
      reason: 'must be epoch milliseconds',
    });
    expect(rejected(checkGatewayLost('x'))).toEqual({ field: 'message', reason: 'must be an object' });
    expect(rejected(checkActive({ session: base(), at: 1, gateway: 'gw' }))).toEqual({
      field: 'gateway',
      reason: 'must be an object',
    });
    expect(rejected(checkActive({ session: base(), at: 1, gateway: { gatewayId: 'g' } }))).toEqual({
      field: 'gateway.incarnation',
      reason: NON_EMPTY,
    });
  });
});

describe('checkConnectionDown (user workflow)', () => {
  const down = { connectionId: CID, socketId: SOCKET, source: DownSource.session };

  it('accepts a down without a session, and one with the connection’s session (as it closed)', () => {
    expect(accepted(checkConnectionDown(down))).toEqual(down);
    const session = { ...base(), socketId: '1b7c6c2e-9f5e-4c3a-8d7b-1a2b3c4d5e6f' };
    expect(accepted(checkConnectionDown({ ...down, session }))).toEqual({ ...down, session });
  });

  it('rejects a malformed session, naming its field, and a session of another connection', () => {
    expect(rejected(checkConnectionDown({ ...down, session: { ...base(), socketId: 'nope' } }))).toEqual({
      field: 'session.socketId',
      reason: 'must be a uuid',
    });
    expect(rejected(checkConnectionDown({ ...down, session: { ...base(), connectionId: `${APP}:other` } }))).toEqual({
      field: 'session.connectionId',
      reason: 'does not match connectionId',
    });
  });

  it('rejects a down without a connectionId, socketId or known source', () => {
    expect(rejected(checkConnectionDown({ ...down, connectionId: '' })).field).toBe('connectionId');
    expect(rejected(checkConnectionDown({ ...down, socketId: 7 })).field).toBe('socketId');
    expect(rejected(checkConnectionDown({ ...down, source: 'gateway' })).field).toBe('source');
  });
});
