import { durationInWords, formatState, isoTime, relativeToNow, stateWithIsoTimes, statusLine } from '../src/cli/format';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const NOW = Date.UTC(2026, 11, 1, 12, 0, 0);

describe('CLI time formatting (pure)', () => {
  test('instants are ISO-8601 UTC, from epoch ms or an ISO string; no time is -', () => {
    expect(isoTime(NOW)).toBe('2026-12-01T12:00:00.000Z');
    expect(isoTime('2026-12-01T12:00:00.000Z')).toBe('2026-12-01T12:00:00.000Z');
    expect(isoTime('2026-12-01T13:00:00+01:00')).toBe('2026-12-01T12:00:00.000Z');
    expect(isoTime('not a time')).toBe('-');
    expect(isoTime(NOW)).toMatch(ISO);
    expect(isoTime(null)).toBe('-');
    expect(isoTime(undefined)).toBe('-');
    expect(isoTime(Number.NaN)).toBe('-');
  });

  test.each([
    [0, 'less than a second'],
    [999, 'less than a second'],
    [1_000, '1 second'],
    [45_500, '45 seconds'],
    [60_000, '1 minute'],
    [200_000, '3 minutes 20 seconds'],
    [3_600_000 + 5 * 60_000 + 7_000, '1 hour 5 minutes'],
    [2 * 86_400_000 + 3_600_000, '2 days 1 hour'],
    // No gap: the second unit is the next smaller one or nothing.
    [86_400_000 + 5_000, '1 day'],
    [-90_000, '1 minute 30 seconds'],
  ])('%d ms is "%s"', (ms, words) => {
    expect(durationInWords(ms)).toBe(words);
  });

  test('relative times say which way', () => {
    expect(relativeToNow(NOW + 4_000, NOW)).toBe('in 4 seconds');
    expect(relativeToNow(NOW - 120_000, NOW)).toBe('2 minutes ago');
    expect(relativeToNow(NOW + 300, NOW)).toBe('now');
  });

  test('the status line carries the soft and hard destroy deadlines', () => {
    expect(statusLine({ status: 'connected', softDestroyAt: null, hardDestroyAt: null }, NOW)).toBe('connected');
    expect(statusLine({ status: 'disconnected', softDestroyAt: NOW + 5_000, hardDestroyAt: NOW + 65_000 }, NOW)).toBe(
      'disconnected, soft destroy at 2026-12-01T12:00:05.000Z (in 5 seconds), ' +
        'hard destroy at 2026-12-01T12:01:05.000Z (in 1 minute 5 seconds)',
    );
    expect(statusLine({ status: 'connected', livenessExpiresAt: '2026-12-01T12:15:00.000Z' }, NOW)).toBe(
      'connected, liveness expires at 2026-12-01T12:15:00.000Z (in 15 minutes)',
    );
  });

  test('a state of ISO strings (the state query) prints the same way', () => {
    const state = {
      connectionId: 'app:abc',
      status: 'disconnected',
      connectedAt: '2026-12-01T11:57:00.000Z',
      lastSeenAt: '2026-12-01T11:59:50.000Z',
      disconnectedAt: '2026-12-01T11:59:58.000Z',
      softDestroyAt: '2026-12-01T12:00:03.000Z',
      hardDestroyAt: '2026-12-01T12:00:33.000Z',
      livenessExpiresAt: null,
      holder: { gatewayId: 'gw-1', incarnation: 'i-1' },
    };
    expect(formatState(state, NOW).split('\n')).toEqual([
      'status           disconnected, soft destroy at 2026-12-01T12:00:03.000Z (in 3 seconds), hard destroy at 2026-12-01T12:00:33.000Z (in 33 seconds)',
      'connected at     2026-12-01T11:57:00.000Z (3 minutes ago)',
      'last seen at     2026-12-01T11:59:50.000Z (10 seconds ago)',
      'disconnected at  2026-12-01T11:59:58.000Z (2 seconds ago)',
      'connectionId     app:abc',
      'holder           {"gatewayId":"gw-1","incarnation":"i-1"}',
    ]);
  });

  test('a state of epoch ms prints with ISO times, deadlines beside the status, other fields as they are', () => {
    const state = {
      connectionId: 'app:abc',
      status: 'disconnected',
      socketId: 's-1',
      connectedAt: NOW - 3 * 60_000,
      lastSeenAt: NOW - 10_000,
      disconnectedAt: NOW - 2_000,
      softDestroyAt: NOW + 3_000,
      hardDestroyAt: null,
      closeEventAt: NOW - 2_500, // a time field this module does not name
      destroyReason: null,
      counts: { reconnects: 1, heartbeats: 4 },
    };
    const lines = formatState(state, NOW).split('\n');
    expect(lines[0]).toMatch(/^status +disconnected, soft destroy at 2026-12-01T12:00:03\.000Z \(in 3 seconds\)$/);
    expect(lines).toContainEqual(expect.stringMatching(/^connected at +2026-12-01T11:57:00\.000Z \(3 minutes ago\)$/));
    expect(lines).toContainEqual(expect.stringMatching(/^last seen at +2026-12-01T11:59:50\.000Z \(10 seconds ago\)$/));
    expect(lines).toContainEqual(
      expect.stringMatching(/^disconnected at +2026-12-01T11:59:58\.000Z \(2 seconds ago\)$/),
    );
    expect(lines).toContainEqual(expect.stringMatching(/^closeEventAt +2026-12-01T11:59:57\.500Z \(2 seconds ago\)$/));
    expect(lines).toContainEqual(expect.stringMatching(/^counts +\{"reconnects":1,"heartbeats":4\}$/));
    expect(lines).toContainEqual(expect.stringMatching(/^destroyReason +null$/));
    // No epoch milliseconds anywhere a person reads.
    expect(formatState(state, NOW)).not.toMatch(/\d{13}/);
  });

  test('JSON output: every epoch-ms ...At field becomes an ISO string, the rest is kept', () => {
    const out = stateWithIsoTimes({
      connectedAt: NOW,
      lastSeenAt: '2026-12-01T13:00:00+01:00',
      softDestroyAt: null,
      status: 'connected',
      counts: { a: 1 },
    });
    expect(out).toEqual({
      lastSeenAt: '2026-12-01T12:00:00.000Z',
      connectedAt: '2026-12-01T12:00:00.000Z',
      softDestroyAt: null,
      status: 'connected',
      counts: { a: 1 },
    });
  });
});
