import { randomUUID } from 'node:crypto';
import { DestroyReason, SessionStatus } from '../../src/contracts/session';
import { EffectKind, SessionMachine, SOFT_DESTROY_DELAY_MS, type Step } from '../../src/workflows/session/machine';
import { sessionView } from '../../src/workflows/session/view';
import type { Session } from '../../src/contracts/session';

/** Every row of the lifecycle table in docs/design.md, on the pure machine: no server. */
const IDLE = 30_000;
const LIVENESS = 2_700_000;
const OPTIONS = { idleTimeoutMs: IDLE, livenessTimeoutMs: LIVENESS };
const T0 = 1_800_000_000_000;
const GW = { gatewayId: 'gw-1', incarnation: 'inc-1' };
const OTHER_GW = { gatewayId: 'gw-2', incarnation: 'inc-9' };
const APP = 'Fef8GnS7C5zN';

function session(over: Partial<Session> = {}): Session {
  const connectionId = `${APP}:abcdefghijkl`;
  return { uid: connectionId, appPid: APP, keyId: 'key-1', connectionId, socketId: randomUUID(), ...over };
}

/** A machine whose connect effect has landed. */
function connected(s = session(), at = T0 - 50) {
  const m = SessionMachine.start({ session: s, at, gateway: GW }, T0, OPTIONS);
  const step = m.next(T0);
  done(m, step);
  return { m, s };
}

function effectOf(step: Step) {
  if (step.kind !== 'effect') throw new Error(`expected an effect, got ${JSON.stringify(step)}`);
  return step.effect;
}
function done(m: SessionMachine, step: Step, outcome = {}) {
  const e = effectOf(step);
  m.done(e, outcome);
  return e;
}
const close = (m: SessionMachine, s: Session, now: number, at = now - 10) =>
  m.disconnected({ connectionId: s.connectionId, socketId: s.socketId, at }, now);

/** Runs the owed effects at `now` until the machine waits or is done. */
function settle(m: SessionMachine, now: number): Step {
  for (let i = 0; i < 10; i++) {
    const step = m.next(now);
    if (step.kind !== 'effect') return step;
    m.done(step.effect);
  }
  throw new Error('no settling');
}

describe('session machine: start and connect', () => {
  it('starts connected, owing the connect effect with the gateway time, holder and no previous holder', () => {
    const s = session();
    const m = SessionMachine.start({ session: s, at: T0 - 50, gateway: GW }, T0, OPTIONS);
    expect(m.state.status).toBe(SessionStatus.connected);
    expect(m.state.connectedAt).toBe(T0);
    const e = effectOf(m.next(T0));
    expect(e).toEqual({
      kind: EffectKind.connect,
      lifetime: 0,
      session: s,
      holder: GW,
      previousHolder: null,
      at: T0 - 50,
      userUp: true,
    });
  });

  it('refuses a start without a gateway or with a malformed session', () => {
    expect(() => SessionMachine.start({ session: session(), at: T0 }, T0, OPTIONS)).toThrow(/gateway is required/);
    expect(() =>
      SessionMachine.start({ session: { ...session(), socketId: 'x' }, at: T0, gateway: GW }, T0, OPTIONS),
    ).toThrow(/session.socketId/);
  });

  it('once connected waits for the liveness deadline only, quietly (continue-as-new is safe)', () => {
    const { m } = connected();
    expect(m.next(T0 + 1)).toEqual({ kind: 'wait', until: T0 + LIVENESS, quiet: true });
  });

  it('an active for the same socket only moves lastSeen: no effect', () => {
    const { m, s } = connected();
    m.active({ session: s, at: T0 + 5, gateway: GW }, T0 + 1_000);
    expect(m.state.lastSeenAt).toBe(T0 + 1_000);
    expect(m.state.counts.reconnects).toBe(0);
    expect(m.next(T0 + 1_000)).toEqual({ kind: 'wait', until: T0 + 1_000 + LIVENESS, quiet: true });
  });
});

describe('session machine: heartbeats and liveness', () => {
  it('a heartbeat moves the liveness deadline and counts; no effect, no new step but the wait', () => {
    const { m } = connected();
    m.heartbeat({ at: T0 + 900_000 }, T0 + 900_000);
    expect(m.state.counts.heartbeats).toBe(1);
    expect(m.next(T0 + 900_000)).toEqual({ kind: 'wait', until: T0 + 900_000 + LIVENESS, quiet: true });
  });

  it('no heartbeat until lastSeen + liveness closes the session at lastSeen with reason liveness-expired', () => {
    const { m } = connected();
    expect(m.next(T0 + LIVENESS - 1).kind).toBe('wait');
    const e = effectOf(m.next(T0 + LIVENESS));
    expect(e.kind).toBe(EffectKind.close);
    expect(e.at).toBe(T0);
    expect(m.state.disconnectedAt).toBe(T0);
    expect(m.state.closeReason).toBe(DestroyReason.liveness);
    expect(m.state.hardDestroyAt).toBe(T0 + 4 * IDLE);
  });

  it('a heartbeat after the close is ignored', () => {
    const { m, s } = connected();
    close(m, s, T0 + 10);
    m.heartbeat({ at: T0 + 20 }, T0 + 20);
    expect(m.state.counts.heartbeats).toBe(0);
    expect(m.state.lastSeenAt).toBe(T0);
  });
});

describe('session machine: close, soft and hard destroy', () => {
  it('a close of the current socket: disconnected now, soft at +5 s, hard at +4 × idle, close effect with the gateway time', () => {
    const { m, s } = connected();
    close(m, s, T0 + 1_000, T0 + 990);
    expect(m.state).toMatchObject({
      status: SessionStatus.disconnected,
      disconnectedAt: T0 + 1_000,
      softDestroyAt: T0 + 1_000 + SOFT_DESTROY_DELAY_MS,
      hardDestroyAt: T0 + 1_000 + 4 * IDLE,
      closeReason: DestroyReason.closed,
    });
    const e = done(m, m.next(T0 + 1_000));
    expect(e).toEqual({ kind: EffectKind.close, at: T0 + 990, holder: GW, lifetime: 0, session: s });
    expect(m.next(T0 + 1_001)).toEqual({ kind: 'wait', until: T0 + 6_000, quiet: false });
  });

  it('the soft destroy runs at its deadline, then the hard destroy at its own, then the run is done', () => {
    const { m, s } = connected();
    close(m, s, T0);
    done(m, m.next(T0));
    expect(m.next(T0 + 4_999).kind).toBe('wait');
    const soft = done(m, m.next(T0 + 5_000));
    expect(soft).toEqual({
      kind: EffectKind.softDestroy,
      lifetime: 0,
      session: s,
      holder: GW,
      userSocketId: s.socketId,
    });
    expect(m.state.presenceRemoved).toBe(true);
    expect(m.state.counts.presenceRemovals).toBe(1);
    expect(m.next(T0 + 5_001)).toEqual({ kind: 'wait', until: T0 + 4 * IDLE, quiet: false });
    const hard = done(m, m.next(T0 + 4 * IDLE));
    expect(hard.kind).toBe(EffectKind.hardDestroy);
    expect(m.state.status).toBe(SessionStatus.destroyed);
    expect(m.state.destroyReason).toBe(DestroyReason.closed);
    expect(m.next(T0 + 4 * IDLE)).toEqual({ kind: 'done' });
  });

  it('past both deadlines, the soft destroy still comes first', () => {
    const { m, s } = connected();
    close(m, s, T0);
    done(m, m.next(T0));
    expect(effectOf(m.next(T0 + 10 * IDLE)).kind).toBe(EffectKind.softDestroy);
  });

  it('a close while the connect effect runs is recorded after it', () => {
    const s = session();
    const m = SessionMachine.start({ session: s, at: T0, gateway: GW }, T0, OPTIONS);
    const connect = effectOf(m.next(T0));
    close(m, s, T0 + 5);
    m.done(connect);
    expect(effectOf(m.next(T0 + 6))).toMatchObject({ kind: EffectKind.close, lifetime: 0 });
  });

  it('a close before the connect effect ran: the connect runs first, then the close (one row each)', () => {
    const s = session();
    const m = SessionMachine.start({ session: s, at: T0, gateway: GW }, T0, OPTIONS);
    close(m, s, T0 + 1);
    expect(done(m, m.next(T0 + 1)).kind).toBe(EffectKind.connect);
    expect(done(m, m.next(T0 + 2)).kind).toBe(EffectKind.close);
    expect(m.next(T0 + 3)).toEqual({ kind: 'wait', until: T0 + 1 + SOFT_DESTROY_DELAY_MS, quiet: false });
  });

  it('a close of an older socket is stale: counted, nothing changes', () => {
    const { m, s } = connected();
    close(m, { ...s, socketId: randomUUID() }, T0 + 10);
    expect(m.state.status).toBe(SessionStatus.connected);
    expect(m.state.counts.staleDisconnects).toBe(1);
  });

  it('a second close of the same socket changes nothing', () => {
    const { m, s } = connected();
    close(m, s, T0 + 10);
    done(m, m.next(T0 + 10));
    close(m, s, T0 + 2_000);
    expect(m.state.disconnectedAt).toBe(T0 + 10);
    expect(m.next(T0 + 2_000).kind).toBe('wait');
  });
});

describe('session machine: reconnects', () => {
  it('a new socket while connected is a new lifetime owing a connect; a move to another gateway names the previous holder', () => {
    const { m, s } = connected();
    const again = { ...s, socketId: randomUUID() };
    m.active({ session: again, at: T0 + 90, gateway: OTHER_GW }, T0 + 100);
    expect(m.state.counts.reconnects).toBe(1);
    expect(m.state.lifetime).toBe(1);
    expect(m.state.socketId).toBe(again.socketId);
    expect(effectOf(m.next(T0 + 100))).toMatchObject({
      kind: EffectKind.connect,
      lifetime: 1,
      holder: OTHER_GW,
      previousHolder: GW,
      at: T0 + 90,
    });
  });

  it('a restarted gateway (same id, new incarnation) is a previous holder too', () => {
    const { m, s } = connected();
    m.active({ session: { ...s, socketId: randomUUID() }, at: T0, gateway: { ...GW, incarnation: 'inc-2' } }, T0 + 1);
    expect(effectOf(m.next(T0 + 1)).previousHolder).toEqual(GW);
    done(m, m.next(T0 + 1));
    // Another gateway that happens to reuse the incarnation string is still another holder.
    const next = { gatewayId: 'gw-9', incarnation: 'inc-2' };
    m.active({ session: { ...s, socketId: randomUUID() }, at: T0, gateway: next }, T0 + 2);
    expect(effectOf(m.next(T0 + 2)).previousHolder).toEqual({ ...GW, incarnation: 'inc-2' });
  });

  it('an active of the socket that just closed (a late retry) opens a new lifetime', () => {
    const { m, s } = connected();
    close(m, s, T0 + 10);
    m.active({ session: s, at: T0 + 20, gateway: GW }, T0 + 20);
    expect(m.state).toMatchObject({ status: SessionStatus.connected, lifetime: 1, disconnectedAt: null });
  });

  it('a reconnect through the same gateway incarnation names no previous holder', () => {
    const { m, s } = connected();
    m.active({ session: { ...s, socketId: randomUUID() }, at: T0, gateway: GW }, T0 + 100);
    expect(effectOf(m.next(T0 + 100)).previousHolder).toBeNull();
  });

  it('a reconnect before the soft destroy cancels both deadlines', () => {
    const { m, s } = connected();
    close(m, s, T0);
    done(m, m.next(T0));
    m.active({ session: { ...s, socketId: randomUUID() }, at: T0 + 4_900, gateway: GW }, T0 + 4_900);
    done(m, m.next(T0 + 4_900));
    expect(m.state).toMatchObject({ status: SessionStatus.connected, softDestroyAt: null, hardDestroyAt: null });
    expect(m.next(T0 + 5 * IDLE)).toEqual({ kind: 'wait', until: T0 + 4_900 + LIVENESS, quiet: true });
  });

  it('a reconnect while the soft destroy effect runs: its result is not applied to the new lifetime, so the next close removes presence again', () => {
    const { m, s } = connected();
    close(m, s, T0);
    done(m, m.next(T0));
    const soft = effectOf(m.next(T0 + 5_000));
    const again = { ...s, socketId: randomUUID() };
    m.active({ session: again, at: T0 + 5_001, gateway: GW }, T0 + 5_001);
    m.done(soft);
    expect(m.state.presenceRemoved).toBe(false);
    expect(m.state.counts.presenceRemovals).toBe(0);
    done(m, m.next(T0 + 5_002)); // the new lifetime's connect
    close(m, again, T0 + 10_000);
    settle(m, T0 + 10_000);
    expect(effectOf(m.next(T0 + 15_000))).toMatchObject({ kind: EffectKind.softDestroy, lifetime: 1 });
  });

  it('a reconnect while the hard destroy effect runs: the session is not destroyed, the new lifetime connects', () => {
    const { m, s } = connected();
    close(m, s, T0);
    settle(m, T0 + 5_000);
    const hard = effectOf(m.next(T0 + 4 * IDLE));
    expect(hard.kind).toBe(EffectKind.hardDestroy);
    m.active({ session: { ...s, socketId: randomUUID() }, at: T0, gateway: GW }, T0 + 4 * IDLE + 1);
    m.done(hard);
    expect(m.state.status).toBe(SessionStatus.connected);
    expect(m.state.destroyReason).toBeNull();
    expect(effectOf(m.next(T0 + 4 * IDLE + 2))).toMatchObject({ kind: EffectKind.connect, lifetime: 1 });
  });

  it('a reconnect after the destroy (same run) starts a new lifetime without counting a reconnect', () => {
    const { m, s } = connected();
    close(m, s, T0);
    settle(m, T0 + 4 * IDLE);
    expect(m.state.status).toBe(SessionStatus.destroyed);
    m.active({ session: { ...s, socketId: randomUUID() }, at: T0, gateway: GW }, T0 + 5 * IDLE);
    expect(m.state.status).toBe(SessionStatus.connected);
    expect(m.state.counts.reconnects).toBe(0);
    expect(m.state.destroyReason).toBeNull();
    expect(m.next(T0 + 5 * IDLE).kind).toBe('effect');
  });
});

describe('session machine: gateway lost', () => {
  it('closes a session held by the lost incarnation as if at the last renewal', () => {
    const { m } = connected();
    m.gatewayLost({ ...GW, at: T0 + 60_000 }, T0 + 180_000);
    expect(m.state).toMatchObject({
      status: SessionStatus.disconnected,
      disconnectedAt: T0 + 60_000,
      hardDestroyAt: T0 + 60_000 + 4 * IDLE,
      closeReason: DestroyReason.gatewayLost,
    });
    settle(m, T0 + 180_000);
    expect(m.state.destroyReason).toBe(DestroyReason.gatewayLost);
  });

  it('owes no close effect for the socket whose close the fan-out recorded, and still owes it for another socket', () => {
    const { m, s } = connected();
    m.gatewayLost({ ...GW, at: T0 + 60_000, closedSocketId: s.socketId }, T0 + 180_000);
    expect(m.state).toMatchObject({ status: SessionStatus.disconnected, closeOwed: false });
    expect(effectOf(m.next(T0 + 180_000)).kind).toBe(EffectKind.softDestroy);

    const other = connected().m;
    other.gatewayLost({ ...GW, at: T0 + 60_000, closedSocketId: randomUUID() }, T0 + 180_000);
    expect(effectOf(other.next(T0 + 180_000))).toMatchObject({ kind: EffectKind.close, at: T0 + 60_000 });
  });

  it('never closes before now, whatever time the signal claims', () => {
    const { m } = connected();
    m.gatewayLost({ ...GW, at: T0 + 999_999 }, T0 + 5);
    expect(m.state.disconnectedAt).toBe(T0 + 5);
  });

  it('ignores another incarnation (the session moved) and a session already closed', () => {
    const { m, s } = connected();
    m.gatewayLost({ ...GW, incarnation: 'inc-0', at: T0 }, T0 + 1);
    m.gatewayLost({ ...OTHER_GW, incarnation: GW.incarnation, at: T0 }, T0 + 1);
    expect(m.state.status).toBe(SessionStatus.connected);
    close(m, s, T0 + 2);
    m.gatewayLost({ ...GW, at: T0 }, T0 + 3);
    expect(m.state.closeReason).toBe(DestroyReason.closed);
    expect(m.state.counts.ignoredGatewayLost).toBe(3);
  });
});

describe('session machine: invalidate and rejection', () => {
  it('invalidate while connected: close, soft and hard destroy at once, reason invalidated', () => {
    const { m } = connected();
    m.invalidate({ reason: 'abuse' });
    const kinds = [];
    for (let step = m.next(T0 + 1); step.kind === 'effect'; step = m.next(T0 + 1)) {
      kinds.push(step.effect.kind);
      m.done(step.effect);
    }
    expect(kinds).toEqual([EffectKind.close, EffectKind.softDestroy, EffectKind.hardDestroy]);
    expect(m.state.destroyReason).toBe(DestroyReason.invalidated);
    expect(m.state.disconnectedAt).toBe(T0 + 1);
  });

  it('invalidate while disconnected destroys now; after the destroy it is ignored', () => {
    const { m, s } = connected();
    close(m, s, T0);
    done(m, m.next(T0));
    m.invalidate({ reason: 'abuse' });
    expect(settle(m, T0 + 1)).toEqual({ kind: 'done' });
    expect(m.state.destroyReason).toBe(DestroyReason.invalidated);
    m.invalidate({ reason: 'again' });
    expect(m.state.invalidateReason).toBe('abuse');
  });

  it('a rejected connect (unknown app) records no close and is destroyed at once', () => {
    const m = SessionMachine.start({ session: session(), at: T0, gateway: GW }, T0, OPTIONS);
    m.done(effectOf(m.next(T0)), { rejected: 'unknown appPid' });
    expect(m.state.invalidateReason).toBe('rejected: unknown appPid');
    expect(m.state.status).toBe(SessionStatus.disconnected);
    const kinds = [];
    for (let step = m.next(T0 + 1); step.kind === 'effect'; step = m.next(T0 + 1)) {
      kinds.push(step.effect.kind);
      m.done(step.effect);
    }
    expect(kinds).toEqual([EffectKind.softDestroy, EffectKind.hardDestroy]);
    expect(m.state.destroyReason).toBe(DestroyReason.invalidated);
  });

  it('a connect whose gateway was already lost stored nothing: closed as gateway-lost with no close row, destroyed at once', () => {
    const m = SessionMachine.start({ session: session(), at: T0, gateway: GW }, T0, OPTIONS);
    m.done(effectOf(m.next(T0)), { holderLost: true });
    expect(m.state).toMatchObject({
      status: SessionStatus.disconnected,
      closeReason: DestroyReason.gatewayLost,
      connectOwed: false,
      closeOwed: false,
    });
    expect(effectOf(m.next(T0 + 5_000)).kind).toBe(EffectKind.softDestroy);
    settle(m, T0 + 4 * IDLE);
    expect(m.state.destroyReason).toBe(DestroyReason.gatewayLost);
  });

  it('a rejected close destroys at once, keeping the first rejection reason', () => {
    const { m, s } = connected();
    close(m, s, T0);
    m.done(effectOf(m.next(T0)), { rejected: 'bad data' });
    expect(m.state.invalidateReason).toBe('rejected: bad data');
    expect(effectOf(m.next(T0 + 1)).kind).toBe(EffectKind.softDestroy);
  });
});

describe('session machine: closes recorded with the next step (runs since 0.6)', () => {
  const DEFER = { ...OPTIONS, deferClose: true };
  function connectedDeferring(s = session()) {
    const m = SessionMachine.start({ session: s, at: T0 - 50, gateway: GW }, T0, DEFER);
    done(m, m.next(T0));
    return { m, s };
  }

  it('a close owes no effect of its own: the soft destroy records it first, at its deadline', () => {
    const { m, s } = connectedDeferring();
    close(m, s, T0 + 1_000, T0 + 990);
    expect(m.state).toMatchObject({ status: SessionStatus.disconnected, closeOwed: true });
    expect(m.next(T0 + 1_000)).toEqual({ kind: 'wait', until: T0 + 6_000, quiet: false });
    const soft = done(m, m.next(T0 + 6_000));
    expect(soft).toMatchObject({
      kind: EffectKind.softDestroy,
      close: { socketId: s.socketId, at: T0 + 990, holder: GW },
    });
    expect(m.state).toMatchObject({ closeOwed: false, presenceRemoved: true });
    expect(effectOf(m.next(T0 + 1_000 + 4 * IDLE))).toMatchObject({ kind: EffectKind.hardDestroy });
  });

  it('a reconnect within the grace: its connect records the old socket’s close, then connects; no soft destroy', () => {
    const { m, s } = connectedDeferring();
    close(m, s, T0 + 1_000, T0 + 990);
    const again = { ...s, socketId: randomUUID() };
    m.active({ session: again, at: T0 + 1_500, gateway: OTHER_GW }, T0 + 1_500);
    const connect = done(m, m.next(T0 + 1_500));
    expect(connect).toMatchObject({
      kind: EffectKind.connect,
      lifetime: 1,
      session: again,
      previousHolder: GW,
      close: { socketId: s.socketId, at: T0 + 990, holder: GW },
    });
    expect(m.state).toMatchObject({ status: SessionStatus.connected, closeOwed: false, closedSocket: null });
    expect(m.next(T0 + 10_000)).toEqual({ kind: 'wait', until: T0 + 1_500 + LIVENESS, quiet: true });
  });

  it('a reconnect after the soft destroy owes no close: the soft destroy recorded it', () => {
    const { m, s } = connectedDeferring();
    close(m, s, T0);
    done(m, m.next(T0 + 5_000));
    m.active({ session: { ...s, socketId: randomUUID() }, at: T0 + 9_000, gateway: GW }, T0 + 9_000);
    expect(effectOf(m.next(T0 + 9_000))).toMatchObject({ kind: EffectKind.connect, close: null });
  });

  it('two reconnects before a connect ran: one close owed, the latest socket at the earliest time', () => {
    const { m, s } = connectedDeferring();
    close(m, s, T0 + 100, T0 + 100);
    const second = { ...s, socketId: randomUUID() };
    m.active({ session: second, at: T0 + 200, gateway: GW }, T0 + 200);
    close(m, second, T0 + 300, T0 + 300);
    const third = { ...s, socketId: randomUUID() };
    m.active({ session: third, at: T0 + 400, gateway: OTHER_GW }, T0 + 400);
    expect(effectOf(m.next(T0 + 400))).toMatchObject({
      kind: EffectKind.connect,
      lifetime: 2,
      session: third,
      close: { socketId: second.socketId, at: T0 + 100, holder: GW },
    });
  });

  it('a close the fan-out recorded owes nothing; invalidate records the close in the soft destroy, at once', () => {
    const { m, s } = connectedDeferring();
    m.gatewayLost({ ...GW, at: T0 + 60_000, closedSocketId: s.socketId }, T0 + 180_000);
    expect(effectOf(m.next(T0 + 180_000))).toMatchObject({ kind: EffectKind.softDestroy, close: null });

    const other = connectedDeferring().m;
    other.invalidate({ reason: 'abuse' });
    const kinds = [];
    for (let step = other.next(T0 + 1); step.kind === 'effect'; step = other.next(T0 + 1)) {
      kinds.push([step.effect.kind, step.effect.close?.socketId ?? null]);
      other.done(step.effect);
    }
    expect(kinds).toEqual([
      [EffectKind.softDestroy, other.state.socketId],
      [EffectKind.hardDestroy, null],
    ]);
  });

  it('a reconnect while the soft destroy runs owes its close again to the connect (recorded twice, the same row)', () => {
    const { m, s } = connectedDeferring();
    close(m, s, T0);
    const soft = effectOf(m.next(T0 + 5_000));
    m.active({ session: { ...s, socketId: randomUUID() }, at: T0 + 5_001, gateway: GW }, T0 + 5_001);
    m.done(soft);
    expect(effectOf(m.next(T0 + 5_002))).toMatchObject({ kind: EffectKind.connect, close: { socketId: s.socketId } });
  });
});

describe('session machine: what the user workflow was told (runs since 0.7)', () => {
  const DEFER = { ...OPTIONS, deferClose: true, quietReconnect: true };
  const reconnect = (m: SessionMachine, s: Session, now: number) => {
    const again = { ...s, socketId: randomUUID() };
    m.active({ session: again, at: now, gateway: GW }, now);
    return again;
  };

  it('the first connect tells the user; a reconnect within the grace does not, and the soft destroy’s down names the socket the user was told of', () => {
    const s = session();
    const m = SessionMachine.start({ session: s, at: T0 - 50, gateway: GW }, T0, DEFER);
    expect(done(m, m.next(T0))).toMatchObject({ kind: EffectKind.connect, userUp: true });
    expect(m.state.userSocketId).toBe(s.socketId);
    close(m, s, T0 + 1_000);
    const again = reconnect(m, s, T0 + 1_500);
    expect(done(m, m.next(T0 + 1_500))).toMatchObject({ kind: EffectKind.connect, session: again, userUp: false });
    expect(m.state.userSocketId).toBe(s.socketId);
    close(m, again, T0 + 2_000);
    const soft = done(m, m.next(T0 + 7_000));
    expect(soft).toMatchObject({ kind: EffectKind.softDestroy, session: again, userSocketId: s.socketId });
    expect(m.state.userSocketId).toBeNull();
  });

  it('after a soft destroy (a down sent) the next connect tells the user again', () => {
    const s = session();
    const m = SessionMachine.start({ session: s, at: T0 - 50, gateway: GW }, T0, DEFER);
    done(m, m.next(T0));
    close(m, s, T0 + 1_000);
    done(m, m.next(T0 + 6_000));
    const again = reconnect(m, s, T0 + 9_000);
    expect(done(m, m.next(T0 + 9_000))).toMatchObject({ kind: EffectKind.connect, session: again, userUp: true });
    expect(m.state.userSocketId).toBe(again.socketId);
  });

  it('a soft destroy that returns after a reconnect still counts as the down: the reconnect’s connect tells the user', () => {
    const s = session();
    const m = SessionMachine.start({ session: s, at: T0 - 50, gateway: GW }, T0, DEFER);
    done(m, m.next(T0));
    close(m, s, T0);
    const soft = effectOf(m.next(T0 + 5_000));
    reconnect(m, s, T0 + 5_001);
    m.done(soft);
    expect(effectOf(m.next(T0 + 5_002))).toMatchObject({ kind: EffectKind.connect, lifetime: 1, userUp: true });
  });

  it('a connect that returns after a reconnect still told the user: the next connect does not', () => {
    const s = session();
    const m = SessionMachine.start({ session: s, at: T0 - 50, gateway: GW }, T0, DEFER);
    const first = effectOf(m.next(T0));
    reconnect(m, s, T0 + 10);
    m.done(first);
    expect(m.state.userSocketId).toBe(s.socketId);
    expect(effectOf(m.next(T0 + 20))).toMatchObject({ kind: EffectKind.connect, lifetime: 1, userUp: false });
  });

  it('a connect that stored nothing (gateway already lost, or rejected) told the user nothing', () => {
    for (const outcome of [{ holderLost: true }, { rejected: 'unknown app' }]) {
      const m = SessionMachine.start({ session: session(), at: T0 - 50, gateway: GW }, T0, DEFER);
      done(m, m.next(T0), outcome);
      expect(m.state.userSocketId).toBeNull();
    }
  });

  it('a run started before 0.7 (input version 4) tells the user at every connect, as it did; its down names the last socket told', () => {
    const s = session();
    const V4 = { ...OPTIONS, deferClose: true };
    const m = SessionMachine.start({ session: s, at: T0 - 50, gateway: GW }, T0, V4);
    done(m, m.next(T0));
    close(m, s, T0 + 1_000);
    const again = reconnect(m, s, T0 + 1_500);
    expect(done(m, m.next(T0 + 1_500))).toMatchObject({ kind: EffectKind.connect, session: again, userUp: true });
    close(m, again, T0 + 2_000);
    expect(effectOf(m.next(T0 + 7_000))).toMatchObject({ kind: EffectKind.softDestroy, userSocketId: again.socketId });
  });

  it('a state carried over from 0.6 (no userSocketId) tells the user at its next connect; its down names the session’s socket', () => {
    const { m, s } = connected();
    delete m.state.userSocketId;
    close(m, s, T0 + 1_000);
    const carried = new SessionMachine(m.state, DEFER);
    const again = reconnect(carried, s, T0 + 1_500);
    expect(effectOf(carried.next(T0 + 1_500))).toMatchObject({
      kind: EffectKind.connect,
      session: again,
      userUp: true,
    });

    const other = connected();
    delete other.m.state.userSocketId;
    close(other.m, other.s, T0 + 1_000);
    const soft = effectOf(new SessionMachine(other.m.state, DEFER).next(T0 + 6_000));
    expect(soft).toMatchObject({ kind: EffectKind.softDestroy, userSocketId: null });
  });
});

describe('session machine: malformed and foreign signals', () => {
  it.each([
    ['active', (m: SessionMachine) => m.active({ at: 1 }, T0), 'session'],
    ['active without gateway', (m: SessionMachine, s: Session) => m.active({ session: s, at: 1 }, T0), 'gateway'],
    [
      'active for another connection',
      (m: SessionMachine, s: Session) =>
        m.active({ session: { ...s, connectionId: `${APP}:zzzzzzzzzzzz`, uid: 'u' }, at: 1, gateway: GW }, T0),
      'session.connectionId',
    ],
    [
      'active of another uid',
      (m: SessionMachine, s: Session) => m.active({ session: { ...s, uid: 'someone' }, at: 1, gateway: GW }, T0),
      'session.uid',
    ],
    ['heartbeat', (m: SessionMachine) => m.heartbeat({ at: 'yesterday' }, T0), 'at'],
    ['disconnected', (m: SessionMachine) => m.disconnected(null, T0), 'message'],
    [
      'disconnected for another connection',
      (m: SessionMachine, s: Session) =>
        m.disconnected({ connectionId: `${APP}:zzzzzzzzzzzz`, socketId: s.socketId, at: 1 }, T0),
      'connectionId',
    ],
    ['gatewayLost', (m: SessionMachine) => m.gatewayLost({ gatewayId: '', incarnation: 'x', at: 1 }, T0), 'gatewayId'],
    ['invalidate', (m: SessionMachine) => m.invalidate({ reason: '' }), 'reason'],
  ])('%s is dropped and counted, naming the signal, the field and why', (what, send, field) => {
    const { m, s } = connected();
    const before = structuredClone(m.state);
    send(m, s);
    expect(m.state.counts.droppedSignals).toBe(1);
    expect(m.dropped).toEqual({ signal: what.split(' ')[0], field, reason: expect.stringMatching(/\w{3}/) });
    expect({ ...m.state, counts: before.counts }).toEqual(before);
  });
});

describe('session view (the state query)', () => {
  it('shows ISO-8601 UTC times, the pending deadlines only, and the liveness deadline while connected', () => {
    const { m, s } = connected();
    expect(sessionView(m.state, LIVENESS)).toMatchObject({
      connectedAt: new Date(T0).toISOString(),
      livenessExpiresAt: new Date(T0 + LIVENESS).toISOString(),
      softDestroyAt: null,
      hardDestroyAt: null,
      holder: GW,
    });
    close(m, s, T0);
    settle(m, T0 + 5_000);
    expect(sessionView(m.state, LIVENESS)).toMatchObject({
      status: SessionStatus.disconnected,
      disconnectedAt: new Date(T0).toISOString(),
      softDestroyAt: null,
      hardDestroyAt: new Date(T0 + 4 * IDLE).toISOString(),
      livenessExpiresAt: null,
      presenceRemoved: true,
    });
    settle(m, T0 + 4 * IDLE);
    expect(sessionView(m.state, LIVENESS).hardDestroyAt).toBeNull();
  });
});
