import fc from 'fast-check';
import { ROOMS_EXCHANGE, javaStringHash, roomRoutingKey, userRoutingKey } from '../../src/stores/amqp/routing';
import { expectedRoomRoutingKey, expectedUserRoutingKey, javaHashCode } from '../helpers/routing';

/**
 * Routing (contract §6) against literal values from Java and against test/helpers/routing.ts, an
 * independent BigInt implementation of String.hashCode. Pure; part of `npm run mutate`.
 */
describe('routing (§6)', () => {
  it('publishes to the durable rooms exchange', () => {
    expect(ROOMS_EXCHANGE).toBe('ds.rooms.durable');
  });

  it('javaStringHash is Java String.hashCode, with 32-bit overflow', () => {
    // Values of "…".hashCode() in Java.
    expect(javaStringHash('')).toBe(0);
    expect(javaStringHash('a')).toBe(97);
    expect(javaStringHash('ab')).toBe(3105);
    expect(javaStringHash('room1')).toBe(108_698_294);
    expect(javaStringHash('chat:general')).toBe(-1_179_717_946);
    expect(javaStringHash('game:lobby:eu')).toBe(-1_366_516_388);
    expect(javaStringHash('polygenelubricants')).toBe(-2_147_483_648);
    expect(javaStringHash('😀')).toBe(1_772_899); // UTF-16 code units: 0xd83d · 31 + 0xde00;
  });

  it('javaStringHash agrees with the independent implementation on any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 64 }), (s) => javaStringHash(s) === javaHashCode(s)),
      { numRuns: 500 },
    );
  });

  it('routes a user by the bucket of its clientId', () => {
    expect(userRoutingKey('room1', 20)).toBe('$$:users:14');
    expect(userRoutingKey('a', 20)).toBe('$$:users:17');
    expect(userRoutingKey('', 20)).toBe('$$:users:0');
    expect(userRoutingKey('room1', 1)).toBe('$$:users:0');
  });

  it('a negative hash still gives a non-negative bucket, ((h % n) + n) % n', () => {
    // -1179717946 % 20 = -6: Math.abs would give 6, h % n alone -6; the gateway's bucket is 14.
    expect(userRoutingKey('chat:general', 20)).toBe('$$:users:14');
    expect(userRoutingKey('game:lobby:eu', 20)).toBe('$$:users:12');
    expect(userRoutingKey('polygenelubricants', 7)).toBe(`$$:users:${((-2_147_483_648 % 7) + 7) % 7}`);
  });

  it('routes a room by the id after the first ":" (the id may contain ":")', () => {
    expect(roomRoutingKey('Fef8GnS7C5zN:room1', 20)).toBe('$$:Fef8GnS7C5zN:14');
    expect(roomRoutingKey('Fef8GnS7C5zN:chat:general', 20)).toBe('$$:Fef8GnS7C5zN:14');
    expect(roomRoutingKey('Fef8GnS7C5zN:game:lobby:eu', 20)).toBe('$$:Fef8GnS7C5zN:12');
    expect(roomRoutingKey('Fef8GnS7C5zN:a', 20)).toBe('$$:Fef8GnS7C5zN:17');
    expect(roomRoutingKey('Fef8GnS7C5zN:', 20)).toBe('$$:Fef8GnS7C5zN:0');
  });

  it('agrees with the independent routing on any id and queue count', () => {
    const id = fc.string({ unit: 'grapheme', maxLength: 40 });
    const app = fc.stringMatching(/^[A-Za-z0-9_-]{12}$/);
    const n = fc.integer({ min: 1, max: 64 });
    fc.assert(
      fc.property(app, id, n, (a, r, q) => {
        expect(roomRoutingKey(`${a}:${r}`, q)).toBe(expectedRoomRoutingKey(`${a}:${r}`, q));
        expect(userRoutingKey(r, q)).toBe(expectedUserRoutingKey(r, q));
      }),
      { numRuns: 300 },
    );
  });
});
