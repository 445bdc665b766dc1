import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { ConnectionOwnershipError, InvalidSessionInputError } from '../src/client';
import type { Session } from '../src/contracts/session';
import { sessionWorkflowId, stateQuery } from '../src/contracts/session';
import { userStateQuery, userWorkflowId } from '../src/contracts/user';
import { count, violate, type ChaosContext, type Tracked } from './context';
import { gw } from './driver';
import { randomId } from '../harness/random-id';
import { sleep } from '../harness/sleep';
import { errorText } from './error-text';

/**
 * Property-based malformed input. Through the client every case must throw InvalidSessionInputError
 * naming the broken field. Straight to the workflows (raw Temporal client, around the client's
 * checks) every payload must be dropped and counted, with no workflow task failing.
 *
 * The raw-signal oracle is the generator itself: every raw case is built invalid by construction
 * (a required field removed or replaced by a value the contract forbids, or a valid message about
 * another connection), with `broken` saying how. Nothing here asks src's validators whether a
 * payload is malformed, so a validator that wrongly accepts a value shows up as a missing drop.
 */

type ClientCall =
  | { op: 'connected'; session: unknown; at: unknown; expect: string[]; what: string }
  | { op: 'heartbeat'; connectionId: unknown; at: unknown; expect: string[]; what: string }
  | { op: 'disconnected'; session: unknown; at: unknown; expect: string[]; what: string }
  | { op: 'invalidate'; connectionId: unknown; reason: unknown; expect: string[]; what: string };

const APP_PID = /^[A-Za-z0-9_-]{12}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const unicode = (min = 1, max = 40) => fc.string({ unit: 'grapheme', minLength: min, maxLength: max });
const binary = (min = 1, max = 40) => fc.string({ unit: 'binary', minLength: min, maxLength: max });
const huge = fc
  .tuple(fc.integer({ min: 256, max: 200_000 }), fc.constantFrom('x', 'é', '😀', '\u0000', '鍵'))
  .map(([n, c]) => c.repeat(Math.ceil(n / c.length)));
const wrongType = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant({}),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.constant([]),
  fc.object({ maxDepth: 1 }),
);
const badNumber = fc.oneof(
  fc.constant(Number.NaN),
  fc.constant(Number.POSITIVE_INFINITY),
  fc.constant(Number.NEGATIVE_INFINITY),
  fc.integer({ max: -1 }),
  fc.double({ max: -0.001, noNaN: true }),
  unicode(),
  fc.constant(null),
  fc.constant({}),
  fc.constant('1700000000000'),
);
const notAnObject = fc.oneof(
  fc.constant(null),
  fc.constant(undefined),
  unicode(),
  fc.integer(),
  fc.array(fc.integer()),
  fc.boolean(),
);

function circular(): Record<string, unknown> {
  const o: Record<string, unknown> = { id: randomUUID(), clientId: 'circle' };
  o.self = o;
  return o;
}

/** Valid base values for the run (one of its apps; a connectionId no workflow uses). */
export interface FuzzBase {
  appPid: string;
  otherAppPid: string;
  user: { id: string; clientId: string; username: string };
}

function baseSession(b: FuzzBase): Session {
  const connectionId = `${b.appPid}:${randomId(12)}`;
  return { uid: connectionId, appPid: b.appPid, keyId: 'k1', connectionId, socketId: randomUUID() };
}

/** One broken field of a valid session, with the field name(s) the error may name. */
function sessionMutation(b: FuzzBase): fc.Arbitrary<{ session: unknown; expect: string[]; what: string }> {
  const set = (field: string, value: fc.Arbitrary<unknown>, expect?: string[]) =>
    value.map((v) => {
      const s: Record<string, unknown> = { ...baseSession(b) };
      if (v === DELETE) delete s[field];
      else s[field] = v;
      return { session: s, expect: expect ?? [`session.${field}`], what: `${field}=${describe(v)}` };
    });
  const required = (field: string) =>
    set(field, fc.oneof(fc.constant(DELETE), fc.constant(''), fc.constant(null), wrongType, huge));
  const user = (mk: fc.Arbitrary<unknown>, expect: string) =>
    mk.map((u) => ({ session: { ...baseSession(b), user: u }, expect: [expect], what: `user=${describe(u)}` }));
  const goodUser = b.user;
  return fc.oneof(
    required('uid'),
    required('appPid'),
    required('keyId'),
    required('connectionId'),
    required('socketId'),
    set(
      'appPid',
      unicode(12, 12).filter((s) => !APP_PID.test(s)),
    ),
    // An id of another app: the connectionId does not belong to the claimed app.
    set('appPid', fc.constant(b.otherAppPid), ['session.connectionId']),
    set('connectionId', fc.constant(`${b.otherAppPid}:${randomId(12)}`)),
    set(
      'connectionId',
      unicode()
        .map((s) => `${b.appPid}:${s}`)
        .filter((s) => !/^[A-Za-z0-9_-]{12}:[A-Za-z0-9_:.-]+$/.test(s)),
    ),
    set(
      'socketId',
      binary().filter((s) => !UUID.test(s)),
    ),
    set('appId', fc.oneof(fc.constant(''), wrongType, huge)),
    set('clientId', fc.oneof(fc.constant(''), wrongType, huge)),
    set('timestamp', fc.oneof(fc.constant(''), wrongType, huge)),
    set(
      'exp',
      badNumber.filter((v) => v !== null && v !== undefined),
    ),
    user(
      notAnObject.filter((v) => v !== null && v !== undefined).map((v) => v) as fc.Arbitrary<unknown>,
      'session.user',
    ),
    user(fc.constant(Object.assign([], { id: 1 })), 'session.user'),
    user(
      fc.oneof(fc.constant('not-a-uuid'), wrongType, binary()).map((id) => ({ ...goodUser, id })),
      'session.user.id',
    ),
    user(fc.constant({ clientId: goodUser.clientId }), 'session.user.id'),
    user(
      fc
        .oneof(fc.constant(DELETE), fc.constant(''), wrongType, huge)
        .map((c) => omit({ ...goodUser, clientId: c }, 'clientId', c)),
      'session.user.clientId',
    ),
    user(
      fc.integer({ min: 17_000, max: 100_000 }).map((n) => ({ ...goodUser, bio: 'b'.repeat(n) })),
      'session.user',
    ),
    // Not JSON: a BigInt, a cycle.
    user(
      fc.bigInt().map((n) => ({ ...goodUser, balance: n })),
      'session.user',
    ),
    user(
      fc.constant(null).map(() => ({ ...circular(), id: goodUser.id, clientId: goodUser.clientId })),
      'session.user',
    ),
    notAnObject.map((s) => ({ session: s, expect: ['session'], what: `session=${describe(s)}` })),
  );
}

const DELETE = Symbol('delete');
function omit<T extends Record<string, unknown>>(o: T, key: string, v: unknown): T {
  if (v === DELETE) {
    const copy = { ...o };
    delete copy[key];
    return copy;
  }
  return o;
}

function describe(v: unknown): string {
  if (v === DELETE) return '<missing>';
  if (typeof v === 'string') return v.length > 40 ? `string(${v.length})` : JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  try {
    const s = JSON.stringify(v);
    return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 60)}…` : s;
  } catch {
    return Object.prototype.toString.call(v);
  }
}

const badConnectionId = fc.oneof(
  fc.constant(''),
  fc.constant(null),
  fc.constant(undefined),
  wrongType,
  huge,
  unicode().filter((s) => !/^[A-Za-z0-9_-]{12}:[A-Za-z0-9_:.-]+$/.test(s)),
  fc.constant('no-colon-here'),
  fc.constant(':leading'),
);

export function clientCalls(b: FuzzBase): fc.Arbitrary<ClientCall> {
  const at = fc.integer({ min: 1_600_000_000_000, max: 2_000_000_000_000 });
  return fc.oneof(
    {
      weight: 6,
      arbitrary: sessionMutation(b).map((m) => ({
        op: 'connected' as const,
        session: m.session,
        at: Date.now(),
        expect: m.expect,
        what: m.what,
      })),
    },
    {
      weight: 1,
      arbitrary: badNumber.map((v) => ({
        op: 'connected' as const,
        session: baseSession(b),
        at: v,
        expect: ['at'],
        what: `at=${describe(v)}`,
      })),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(badConnectionId, at).map(([c, a]) => ({
        op: 'heartbeat' as const,
        connectionId: c,
        at: a,
        expect: ['connectionId'],
        what: `connectionId=${describe(c)}`,
      })),
    },
    {
      weight: 1,
      arbitrary: badNumber
        .filter((v) => v !== undefined)
        .map((v) => ({
          op: 'heartbeat' as const,
          connectionId: baseSession(b).connectionId,
          at: v,
          expect: ['at'],
          what: `at=${describe(v)}`,
        })),
    },
    {
      weight: 1,
      arbitrary: notAnObject
        .filter((v) => v !== undefined)
        .map((s) => ({
          op: 'disconnected' as const,
          session: s,
          at: Date.now(),
          expect: Array.isArray(s) ? ['session', 'connectionId'] : ['session'],
          what: `session=${describe(s)}`,
        })),
    },
    {
      weight: 1,
      arbitrary: badConnectionId.map((c) => ({
        op: 'disconnected' as const,
        session: { connectionId: c, socketId: randomUUID() },
        at: Date.now(),
        expect: ['connectionId'],
        what: `connectionId=${describe(c)}`,
      })),
    },
    {
      weight: 1,
      arbitrary: fc
        .oneof(
          fc.constant(''),
          fc.constant(null),
          wrongType,
          binary().filter((s) => !UUID.test(s)),
        )
        .map((s) => ({
          op: 'disconnected' as const,
          session: { connectionId: baseSession(b).connectionId, socketId: s },
          at: Date.now(),
          expect: ['socketId'],
          what: `socketId=${describe(s)}`,
        })),
    },
    {
      weight: 1,
      arbitrary: badNumber
        .filter((v) => v !== undefined)
        .map((v) => ({
          op: 'disconnected' as const,
          session: { connectionId: baseSession(b).connectionId, socketId: randomUUID() },
          at: v,
          expect: ['at'],
          what: `at=${describe(v)}`,
        })),
    },
    {
      weight: 1,
      arbitrary: badConnectionId.map((c) => ({
        op: 'invalidate' as const,
        connectionId: c,
        reason: 'x',
        expect: ['connectionId'],
        what: `connectionId=${describe(c)}`,
      })),
    },
    {
      weight: 1,
      arbitrary: fc
        .oneof(
          fc.constant(''),
          fc.constant(null),
          wrongType,
          fc.integer({ min: 1025, max: 50_000 }).map((n) => 'r'.repeat(n)),
        )
        .map((r) => ({
          op: 'invalidate' as const,
          connectionId: baseSession(b).connectionId,
          reason: r,
          expect: ['reason'],
          what: `reason=${describe(r)}`,
        })),
    },
  );
}

export interface ClientFuzzResult {
  calls: number;
  rejectedTyped: number;
  byOp: Record<string, number>;
  byField: Record<string, number>;
}

export async function fuzzClient(
  ctx: ChaosContext,
  b: FuzzBase,
  runs: number,
  seed: number,
): Promise<ClientFuzzResult> {
  const cases = fc.sample(clientCalls(b), { numRuns: runs, seed });
  const result: ClientFuzzResult = { calls: 0, rejectedTyped: 0, byOp: {}, byField: {} };
  for (const c of cases) {
    if (ctx.signal.aborted) break;
    result.calls++;
    result.byOp[c.op] = (result.byOp[c.op] ?? 0) + 1;
    count(ctx, 'checked:malformed-rejected-typed');
    const s = ctx.sessions as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    try {
      switch (c.op) {
        case 'connected':
          await s.connected!.call(ctx.sessions, c.session, c.at);
          break;
        case 'heartbeat':
          await s.heartbeat!.call(ctx.sessions, c.connectionId, c.at);
          break;
        case 'disconnected':
          await s.disconnected!.call(ctx.sessions, c.session, c.at);
          break;
        case 'invalidate':
          await s.invalidate!.call(ctx.sessions, c.connectionId, c.reason);
          break;
      }
      violate(ctx, 'malformed-rejected-typed', `${c.op}(${c.what})`, 'accepted');
    } catch (err) {
      if (err instanceof InvalidSessionInputError) {
        if (c.expect.includes(err.field) && err.message.includes(err.field)) {
          result.rejectedTyped++;
          result.byField[err.field] = (result.byField[err.field] ?? 0) + 1;
        } else {
          violate(
            ctx,
            'malformed-rejected-typed',
            `${c.op}(${c.what})`,
            `named ${err.field}, expected ${c.expect.join(' or ')}`,
          );
        }
      } else {
        violate(ctx, 'malformed-rejected-typed', `${c.op}(${c.what})`, `untyped error ${errorText(err)}`);
      }
    }
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Raw signals, around the client.

type RawCase = {
  workflow: 'session' | 'user';
  name: string;
  args: unknown[];
  what: string;
  /** What the generator made invalid (the oracle: every case must be dropped). */
  broken: string;
};

/** `v` without the own property `key` (a non-object stays as it is: invalid anyway). */
function without(v: unknown, key: string): unknown {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return v;
  const copy = Object.assign(Object.create(null) as Record<string, unknown>, v);
  delete copy[key];
  return copy;
}
const SESSION_SOURCES = ['session', 'sweep'];

/** What the payload looks like after the JSON payload converter (what the workflow receives). */
function roundTrip(args: unknown[]): unknown[] | null {
  try {
    return args.map((a) => (a === undefined ? undefined : (JSON.parse(JSON.stringify(a)) as unknown)));
  } catch {
    return null;
  }
}

function rawCases(ctx: ChaosContext, target: Tracked, b: FuzzBase): fc.Arbitrary<RawCase> {
  const s = target.session;
  const anything = fc.anything({ maxDepth: 3, stringUnit: 'binary', withNullPrototype: true });
  const one = (
    name: string,
    broken: string,
    payload: fc.Arbitrary<unknown>,
    workflow: 'session' | 'user' = 'session',
  ) => payload.map((p) => ({ workflow, name, args: [p], what: `${name}(${describe(p)})`, broken }));
  const otherApp = (() => {
    const connectionId = `${b.otherAppPid}:${randomId(12)}`;
    return { ...s, appPid: b.otherAppPid, connectionId, uid: connectionId, socketId: randomUUID() };
  })();
  const now = Date.now();
  // The target's real holder: an `active` broken in one field only is dropped for that field.
  const gateway = (target.via ?? ctx.sessions).holder;
  const notUuid = binary().filter((x) => !UUID.test(x));
  const badReason = fc.oneof(
    fc.constant(''),
    wrongType,
    fc.integer({ min: 1025, max: 100_000 }).map((n) => 'r'.repeat(n)),
  );
  const arbs: fc.Arbitrary<RawCase>[] = [
    // Anything, with the one field the message cannot do without taken away.
    one(
      'active',
      'no at',
      anything.map((v) => without(v, 'at')),
    ),
    one(
      'heartbeat',
      'no at',
      anything.map((v) => without(v, 'at')),
    ),
    one(
      'disconnected',
      'no at',
      anything.map((v) => without(v, 'at')),
    ),
    one(
      'invalidate',
      'no reason',
      anything.map((v) => without(v, 'reason')),
    ),
    // One broken field of an otherwise valid session (sessionMutation says which).
    ...[sessionMutation(b)].map((arb) =>
      arb.map((m) => ({
        workflow: 'session' as const,
        name: 'active',
        args: [{ session: m.session, at: now, gateway }],
        what: `active(${m.what})`,
        broken: `session: ${m.what}`,
      })),
    ),
    one(
      'active',
      'at not epoch ms',
      badNumber.map((at) => ({ session: { ...s, socketId: randomUUID() }, at, gateway })),
    ),
    // Valid shapes that are not this workflow's: another app's connection, another uid.
    one(
      'active',
      'another connection',
      fc.constant(null).map(() => ({ session: otherApp, at: now, gateway })),
    ),
    one(
      'active',
      'another uid',
      unicode()
        .filter((uid) => uid !== s.uid)
        .map((uid) => ({ session: { ...s, uid, socketId: randomUUID() }, at: now, gateway })),
    ),
    one(
      'disconnected',
      'another connection',
      fc.constant(null).map(() => ({ connectionId: otherApp.connectionId, socketId: s.socketId, at: now })),
    ),
    // Exactly one field broken, the others any (valid or not).
    one(
      'disconnected',
      'connectionId not {appPid}:{id}',
      fc.record({
        connectionId: badConnectionId,
        socketId: fc.oneof(fc.constant(s.socketId), binary()),
        at: fc.oneof(badNumber, fc.constant(now)),
      }),
    ),
    one(
      'disconnected',
      'socketId not a uuid',
      fc.record({
        connectionId: fc.constant(s.connectionId),
        socketId: notUuid,
        at: fc.oneof(badNumber, fc.constant(now)),
      }),
    ),
    one(
      'disconnected',
      'at not epoch ms',
      fc.record({ connectionId: fc.constant(s.connectionId), socketId: fc.constant(s.socketId), at: badNumber }),
    ),
    one('heartbeat', 'at not epoch ms', fc.record({ at: badNumber })),
    // gatewayLost naming the target's holder with one field broken: dropped, never a close.
    one(
      'gatewayLost',
      'no at',
      fc.constant(null).map(() => ({ ...gateway })),
    ),
    one(
      'gatewayLost',
      'at not epoch ms',
      badNumber.map((at) => ({ ...gateway, at })),
    ),
    one(
      'gatewayLost',
      'incarnation empty, not a string or with NUL',
      fc
        .oneof(fc.constant(''), wrongType, fc.constant(`${gateway.incarnation}\u0000`))
        .map((incarnation) => ({ gatewayId: gateway.gatewayId, incarnation, at: now })),
    ),
    one('invalidate', 'reason empty, not a string or over 1024', fc.record({ reason: badReason })),
    one(
      'active',
      'keyId over 255 or with NUL',
      huge.map((k) => ({ session: { ...s, keyId: k, socketId: randomUUID() }, at: now, gateway })),
    ),
    // Wrong arity.
    fc
      .constantFrom('active', 'heartbeat', 'disconnected', 'invalidate')
      .map((name) => ({ workflow: 'session' as const, name, args: [], what: `${name}()`, broken: 'no argument' })),
  ];
  if (target.session.user) {
    arbs.push(
      one(
        'connectionUp',
        'no session',
        anything.map((v) => without(v, 'session')),
        'user',
      ),
      one(
        'connectionDown',
        'no source',
        anything.map((v) => without(v, 'source')),
        'user',
      ),
      one(
        'connectionUp',
        'session with a broken field',
        sessionMutation(b).map((m) => ({ connectionId: s.connectionId, session: m.session })),
        'user',
      ),
      one(
        'connectionUp',
        'a session of another app',
        fc.constant(null).map(() => ({ connectionId: otherApp.connectionId, session: otherApp })),
        'user',
      ),
      one(
        'connectionDown',
        'connectionId not a non-empty string',
        fc.record({
          connectionId: fc.oneof(fc.constant(''), fc.constant(null), wrongType),
          socketId: fc.oneof(fc.constant(s.socketId), wrongType),
          source: fc.oneof(fc.constant('session'), unicode()),
        }),
        'user',
      ),
      one(
        'connectionDown',
        'socketId not a string',
        fc.record({ connectionId: fc.constant(s.connectionId), socketId: wrongType, source: fc.constant('session') }),
        'user',
      ),
      one(
        'connectionDown',
        'source neither session nor sweep',
        fc.record({
          connectionId: fc.constant(s.connectionId),
          socketId: fc.constant(s.socketId),
          source: unicode().filter((x) => !SESSION_SOURCES.includes(x)),
        }),
        'user',
      ),
    );
  }
  return fc.oneof(...arbs);
}

export interface RawFuzzResult {
  sent: number;
  unsendable: number;
  expectedDrops: number;
  observedDrops: number;
  byName: Record<string, number>;
  /** Sent, by what the generator broke. */
  byBroken: Record<string, number>;
}

/** Sends `runs` malformed raw signals to the targets, spread over `spreadMs`; checks the drop counts. */
export async function fuzzRawSignals(
  ctx: ChaosContext,
  targets: Tracked[],
  b: FuzzBase,
  runs: number,
  seed: number,
  spreadMs: number,
): Promise<RawFuzzResult> {
  const result: RawFuzzResult = {
    sent: 0,
    unsendable: 0,
    expectedDrops: 0,
    observedDrops: 0,
    byName: {},
    byBroken: {},
  };
  if (targets.length === 0) return result;
  const expected = new Map<string, { before: number; sent: number; query: () => Promise<number> }>();
  const counter = (t: Tracked, workflow: 'session' | 'user') => {
    const wid =
      workflow === 'session'
        ? sessionWorkflowId(t.session.connectionId)
        : userWorkflowId(t.session.appPid, t.session.user!.clientId);
    let e = expected.get(wid);
    if (!e) {
      const handle = ctx.temporal.workflow.getHandle(wid);
      const query =
        workflow === 'session'
          ? async () => (await handle.query(stateQuery)).counts.droppedSignals
          : async () => (await handle.query(userStateQuery)).counts.droppedSignals;
      e = { before: -1, sent: 0, query };
      expected.set(wid, e);
    }
    return { wid, e };
  };
  // Baselines first.
  for (const t of targets) {
    for (const wf of t.session.user ? (['session', 'user'] as const) : (['session'] as const)) {
      const { e } = counter(t, wf);
      e.before = await gw(ctx, 'query', () => ctx.connection.withDeadline(Date.now() + 10_000, e.query));
    }
  }
  const perTarget = Math.ceil(runs / targets.length);
  const all: { t: Tracked; c: RawCase }[] = [];
  targets.forEach((t, i) => {
    for (const c of fc.sample(rawCases(ctx, t, b), { numRuns: perTarget, seed: seed + i })) all.push({ t, c });
  });
  const gap = Math.max(0, Math.floor(spreadMs / Math.max(1, all.length)));
  for (const { t, c } of all.slice(0, runs)) {
    if (ctx.signal.aborted) break;
    // Sent only if the JSON payload converter can encode it; whether it must be dropped is known
    // from how it was built (c.broken), not from a validator.
    if (!roundTrip(c.args)) {
      result.unsendable++;
      continue;
    }
    const { wid, e } = counter(t, c.workflow);
    try {
      await gw(ctx, 'raw-signal', () => ctx.temporal.workflow.getHandle(wid).signal(c.name, ...c.args));
      e.sent++;
      result.sent++;
      result.byName[c.name] = (result.byName[c.name] ?? 0) + 1;
      result.byBroken[`${c.name}: ${c.broken}`] = (result.byBroken[`${c.name}: ${c.broken}`] ?? 0) + 1;
    } catch (err) {
      // The client refused to encode or send it (too big for the server, say): never reached the workflow.
      result.unsendable++;
      ctx.log(`raw signal not sent (${c.what.slice(0, 80)}): ${errorText(err).slice(0, 200)}`);
    }
    await sleep(gap, ctx.signal);
  }
  // Every payload sent must be dropped and counted (eventually: the worker may be down).
  for (const [wid, e] of expected) {
    result.expectedDrops += e.sent;
    count(ctx, 'checked:raw-signals-dropped');
    const deadline = Date.now() + 120_000;
    let seen = -1;
    let lastErr = '';
    while (Date.now() < deadline && !ctx.signal.aborted) {
      try {
        seen = (await ctx.connection.withDeadline(Date.now() + 10_000, e.query)) - e.before;
        if (seen >= e.sent) break;
      } catch (err) {
        lastErr = errorText(err);
      }
      await sleep(1_000);
    }
    result.observedDrops += Math.max(0, seen);
    if (seen !== e.sent)
      violate(
        ctx,
        'raw-signals-dropped',
        wid,
        `sent ${e.sent} malformed signals, the workflow dropped ${seen}${lastErr ? ` (${lastErr})` : ''}`,
      );
  }
  return result;
}

/** Connection ownership through the client: also a typed error naming the field. */
export function isOwnershipError(err: unknown): err is ConnectionOwnershipError {
  return err instanceof ConnectionOwnershipError;
}
