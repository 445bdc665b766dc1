/**
 * How the ops CLI shows times to a person: ISO-8601 UTC instants, durations in words, and the
 * session's pending deadlines next to its status. Pure functions of their arguments (`now` is
 * passed in), on the `…At` fields of the `state` query, as ISO strings or epoch milliseconds;
 * nothing here knows more of the state's shape than those fields, so a state that gains or loses
 * fields still prints.
 */

/** A time as the state carries it: an ISO-8601 string or epoch milliseconds; null for none. */
export type Time = string | number | null | undefined;

/** The `state` query's fields this module reads by name; all others are printed as they are. */
export interface StateTimes {
  status?: string;
  connectedAt?: Time;
  lastSeenAt?: Time;
  disconnectedAt?: Time;
  softDestroyAt?: Time;
  hardDestroyAt?: Time;
  livenessExpiresAt?: Time;
}

/** The times of the state's history, in the order a person reads them (deadlines: {@link DEADLINES}). */
export const TIME_FIELDS = ['connectedAt', 'lastSeenAt', 'disconnectedAt'] as const;
/** The pending deadlines, shown on the status line. */
export const DEADLINES = ['softDestroyAt', 'hardDestroyAt', 'livenessExpiresAt'] as const;

const LABELS: Record<(typeof TIME_FIELDS)[number] | (typeof DEADLINES)[number], string> = {
  connectedAt: 'connected at',
  lastSeenAt: 'last seen at',
  disconnectedAt: 'disconnected at',
  softDestroyAt: 'soft destroy at',
  hardDestroyAt: 'hard destroy at',
  livenessExpiresAt: 'liveness expires at',
};

const ISO_LIKE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/;

/** Epoch ms of a time, or undefined when it is none (or not a time). */
export function toEpochMs(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && Math.abs(v) <= 8.64e15 ? v : undefined;
  if (typeof v === 'string' && ISO_LIKE.test(v)) {
    const ms = Date.parse(v);
    return Number.isNaN(ms) ? undefined : ms;
  }
  return undefined;
}

/** `2026-12-01T12:00:00.000Z` (UTC, whatever offset it came with); `-` for no time. */
export function isoTime(time: Time): string {
  const ms = toEpochMs(time);
  return ms === undefined ? '-' : new Date(ms).toISOString();
}

const UNITS: [name: string, ms: number][] = [
  ['day', 86_400_000],
  ['hour', 3_600_000],
  ['minute', 60_000],
  ['second', 1_000],
];

/**
 * A length of time in words, the two largest units, rounded down: `1 hour 5 minutes`,
 * `3 minutes 20 seconds`, `45 seconds`; under a second, `less than a second`.
 */
export function durationInWords(ms: number): string {
  const total = Math.floor(Math.abs(ms));
  const first = UNITS.findIndex(([, size]) => total >= size);
  if (first < 0) return 'less than a second';
  const words = (n: number, name: string) => `${n} ${name}${n === 1 ? '' : 's'}`;
  const [name, size] = UNITS[first]!;
  const n = Math.floor(total / size);
  const next = UNITS[first + 1];
  const m = next ? Math.floor((total - n * size) / next[1]) : 0;
  return next && m > 0 ? `${words(n, name)} ${words(m, next[0])}` : words(n, name);
}

/** `in 4 seconds`, `2 minutes ago`, `now` (under a second either way). */
export function relativeToNow(ms: number, now: number): string {
  const delta = ms - now;
  if (Math.abs(delta) < 1_000) return 'now';
  return delta > 0 ? `in ${durationInWords(delta)}` : `${durationInWords(delta)} ago`;
}

/** `2026-12-01T12:00:05.000Z (in 4 seconds)`, or `-`. */
export function timeWithRelative(time: Time, now: number): string {
  const ms = toEpochMs(time);
  return ms === undefined ? '-' : `${isoTime(ms)} (${relativeToNow(ms, now)})`;
}

/** The status with the pending deadlines beside it: `disconnected, soft destroy at … (in 4 seconds), hard destroy at …`. */
export function statusLine(state: StateTimes, now: number): string {
  const parts = [state.status ?? 'unknown'];
  for (const field of DEADLINES) {
    if (toEpochMs(state[field]) !== undefined) parts.push(`${LABELS[field]} ${timeWithRelative(state[field], now)}`);
  }
  return parts.join(', ');
}

/**
 * The state for a terminal, one `label  value` line each: the status line first, then the times
 * (ISO, and how long ago or until), then every other field (objects as compact JSON).
 */
export function formatState(state: StateTimes & Record<string, unknown>, now: number): string {
  const rows: [string, string][] = [['status', statusLine(state, now)]];
  for (const field of TIME_FIELDS) {
    if (field in state) rows.push([LABELS[field], timeWithRelative(state[field], now)]);
  }
  const shown = new Set<string>(['status', ...TIME_FIELDS, ...DEADLINES]);
  for (const [key, value] of Object.entries(state)) {
    if (shown.has(key)) continue;
    const text =
      /At$/.test(key) && (toEpochMs(value) !== undefined || value === null)
        ? timeWithRelative(value as Time, now)
        : value !== null && typeof value === 'object'
          ? JSON.stringify(value)
          : String(value);
    rows.push([key, text]);
  }
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n');
}

/** The state as JSON for a person or a script: every `…At` time as an ISO-8601 UTC string. */
export function stateWithIsoTimes<T extends Record<string, unknown>>(state: T): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(state).map(([key, value]) => [
      key,
      /At$/.test(key) && toEpochMs(value) !== undefined ? isoTime(value as Time) : value,
    ]),
  );
}
