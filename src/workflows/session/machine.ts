import {
  checkActive,
  checkDisconnected,
  checkGatewayLost,
  checkHeartbeat,
  checkInvalidate,
  type OwedClose,
  type Session,
  DestroyReason,
  SessionStatus,
  type SessionState,
} from '../../contracts/session';
import type { Check } from '../../contracts/check';
import type { GatewayHolder } from '../../contracts/gateway';

/**
 * The session lifecycle as a pure state machine (docs/design.md, "Session lifecycle"): the
 * workflow feeds it signals and effect results with the workflow clock, and acts on `next(now)`.
 * No Temporal import, so every transition is unit-tested without a server.
 */

/** Presence is removed this long after a close (upstream `session:user:inactive`). */
export const SOFT_DESTROY_DELAY_MS = 5_000;

export const EffectKind = {
  connect: 'connect',
  close: 'close',
  softDestroy: 'softDestroy',
  hardDestroy: 'hardDestroy',
} as const;
export type EffectKind = (typeof EffectKind)[keyof typeof EffectKind];

export interface Effect {
  kind: EffectKind;
  /** The lifetime (socket) the effect is for: a result for an older one is not applied. */
  lifetime: number;
  session: Session;
  holder: GatewayHolder | null;
  /** connect: the holder the session moves away from; close: the gateway's event time. */
  previousHolder?: GatewayHolder | null;
  at?: number;
  /** connect and soft destroy of a run that defers its closes: the owed close to record first. */
  close?: OwedClose | null;
  /** connect: whether to signal the user workflow up (it does not count this connection yet). */
  userUp?: boolean;
  /** soft destroy: the socket the user workflow was told of, which its down names. */
  userSocketId?: string | null;
}

export type Step =
  | { kind: 'effect'; effect: Effect }
  /** Nothing owed before `until` (null: nothing timed); continue-as-new is safe while `quiet`. */
  | { kind: 'wait'; until: number | null; quiet: boolean }
  | { kind: 'done' };

export interface MachineOptions {
  idleTimeoutMs: number;
  /** A connected session with no heartbeat for this long is closed (`liveness-expired`). */
  livenessTimeoutMs: number;
  /**
   * Record a close with the next step that comes anyway (the soft destroy, or a reconnect's
   * connect) instead of an effect of its own: runs started since 0.6 (input version 4).
   */
  deferClose?: boolean;
  /**
   * A reconnect within the grace sends the user workflow no up: it still counts the connection
   * (runs since 0.7, input version 5). Earlier runs signal every connect, as they did.
   */
  quietReconnect?: boolean;
}

export class SessionMachine {
  constructor(
    readonly state: SessionState,
    private readonly options: MachineOptions,
  ) {}

  /** A first contact; throws on bad input (the workflow's start input, checked by the client). */
  static start(raw: unknown, now: number, options: MachineOptions): SessionMachine {
    const msg = checkActive(raw);
    if (!msg.ok) throw new Error(`invalid start input: ${msg.field} ${msg.reason}`);
    if (!msg.value.gateway) throw new Error('invalid start input: gateway is required');
    const m = new SessionMachine(fresh(msg.value.session, msg.value.gateway, now, msg.value.at, null), options);
    return m;
  }

  active(raw: unknown, now: number): void {
    const msg = checkActive(raw);
    if (!msg.ok) return this.drop('active', msg);
    const { session, at, gateway } = msg.value;
    const s = this.state;
    if (!gateway) return this.drop('active', { ok: false, field: 'gateway', reason: 'is required' });
    if (session.connectionId !== s.connectionId)
      return this.drop('active', { ok: false, field: 'session.connectionId', reason: 'belongs to another workflow' });
    // (appPid needs no check: a valid connectionId starts with its appPid.)
    if (session.uid !== s.session.uid)
      return this.drop('active', { ok: false, field: 'session.uid', reason: 'connection owned by another uid' });
    if (s.status === SessionStatus.connected && session.socketId === s.socketId) {
      s.lastSeenAt = now;
      return;
    }
    if (s.status !== SessionStatus.destroyed) s.counts.reconnects++;
    const counts = s.counts;
    const lifetime = s.lifetime + 1;
    // A close still owed goes with the new socket's connect: the latest socket, the earliest time
    // (the disconnect row keeps its first createdAt and takes the latest socketId).
    const owed = this.owedClose();
    const earlier = s.closedSocket ?? null;
    const closedSocket = owed && earlier ? { ...owed, at: Math.min(owed.at, earlier.at) } : (owed ?? earlier);
    const userSocketId = s.userSocketId ?? null;
    Object.assign(s, fresh(session, gateway, now, at, s.holder), { counts, lifetime, userSocketId });
    if (this.options.deferClose) s.closedSocket = closedSocket;
  }

  heartbeat(raw: unknown, now: number): void {
    const msg = checkHeartbeat(raw);
    if (!msg.ok) return this.drop('heartbeat', msg);
    if (this.state.status !== SessionStatus.connected) return; // a late one: the close already won
    this.state.lastSeenAt = now;
    this.state.counts.heartbeats++;
  }

  disconnected(raw: unknown, now: number): void {
    const msg = checkDisconnected(raw);
    if (!msg.ok) return this.drop('disconnected', msg);
    const s = this.state;
    if (msg.value.connectionId !== s.connectionId)
      return this.drop('disconnected', { ok: false, field: 'connectionId', reason: 'belongs to another workflow' });
    if (msg.value.socketId !== s.socketId) {
      s.counts.staleDisconnects++;
      return;
    }
    if (s.status !== SessionStatus.connected) return; // a second close of the same socket
    this.close(now, msg.value.at, DestroyReason.closed);
  }

  gatewayLost(raw: unknown, now: number): void {
    const msg = checkGatewayLost(raw);
    if (!msg.ok) return this.drop('gatewayLost', msg);
    const s = this.state;
    const { gatewayId, incarnation, at, closedSocketId } = msg.value;
    const held = s.holder.gatewayId === gatewayId && s.holder.incarnation === incarnation;
    if (s.status !== SessionStatus.connected || !held) {
      s.counts.ignoredGatewayLost++; // moved to another gateway, or already closed
      return;
    }
    // As if the socket closed at the gateway's last renewal: its deadlines may already be due.
    const closedAt = Math.min(at, now);
    // The fan-out wrote this socket's disconnect row in bulk (and drops the index): nothing to record.
    this.close(closedAt, closedAt, DestroyReason.gatewayLost, closedSocketId !== s.socketId);
  }

  invalidate(raw: unknown): void {
    const msg = checkInvalidate(raw);
    if (!msg.ok) return this.drop('invalidate', msg);
    if (this.state.status !== SessionStatus.destroyed) this.state.invalidateReason = msg.value.reason;
  }

  /** What to do now. Applies the transitions that time alone causes (liveness, invalidation). */
  next(now: number): Step {
    const s = this.state;
    if (s.status === SessionStatus.destroyed) return { kind: 'done' };
    if (s.connectOwed) return this.effect(EffectKind.connect);
    if (s.status === SessionStatus.connected) {
      if (s.invalidateReason !== null) {
        this.close(now, now, DestroyReason.invalidated);
      } else {
        const expiry = s.lastSeenAt + this.options.livenessTimeoutMs;
        if (now < expiry) return { kind: 'wait', until: expiry, quiet: true };
        this.close(s.lastSeenAt, s.lastSeenAt, DestroyReason.liveness);
      }
    }
    if (s.closeOwed && !this.options.deferClose) return this.effect(EffectKind.close);
    const destroyNow = s.invalidateReason !== null;
    if (!s.presenceRemoved) {
      if (destroyNow || now >= s.softDestroyAt!) return this.effect(EffectKind.softDestroy);
      return { kind: 'wait', until: s.softDestroyAt!, quiet: false };
    }
    if (destroyNow || now >= s.hardDestroyAt!) return this.effect(EffectKind.hardDestroy);
    return { kind: 'wait', until: s.hardDestroyAt!, quiet: false };
  }

  /**
   * An effect's outcome. `rejected`: bad input the effect can never store (an unknown app);
   * `holderLost`: the connect found its gateway incarnation already lost and stored nothing.
   */
  done(effect: Effect, outcome: { rejected?: string; holderLost?: boolean } = {}): void {
    const s = this.state;
    // What the user workflow was told holds whichever lifetime the effect was for.
    if (effect.kind === EffectKind.connect && effect.userUp && outcome.rejected === undefined && !outcome.holderLost)
      s.userSocketId = effect.session.socketId;
    if (effect.kind === EffectKind.softDestroy) s.userSocketId = null;
    if (effect.lifetime !== s.lifetime) return; // a reconnect came meanwhile: the new lifetime owes its own
    if (outcome.rejected !== undefined) s.invalidateReason ??= `rejected: ${outcome.rejected}`;
    switch (effect.kind) {
      case EffectKind.connect:
        // A close that came before or while it ran stays owed: it follows now.
        s.connectOwed = false;
        s.closedSocket = null;
        // A rejected connect stored nothing: its close has no row to record.
        if (outcome.rejected !== undefined) this.close(s.connectedAt, s.connectedAt, DestroyReason.invalidated, false);
        else if (outcome.holderLost) this.close(s.connectedAt, s.connectedAt, DestroyReason.gatewayLost, false);
        return;
      case EffectKind.close:
        s.closeOwed = false;
        return;
      case EffectKind.softDestroy:
        if (effect.close) s.closeOwed = false;
        s.presenceRemoved = true;
        s.counts.presenceRemovals++;
        return;
      case EffectKind.hardDestroy:
        s.status = SessionStatus.destroyed;
        s.destroyReason = s.invalidateReason !== null ? DestroyReason.invalidated : s.closeReason;
        return;
    }
  }

  private close(closedAt: number, eventAt: number, reason: DestroyReason, record = true): void {
    Object.assign(this.state, {
      status: SessionStatus.disconnected,
      disconnectedAt: closedAt,
      closeEventAt: eventAt,
      softDestroyAt: closedAt + SOFT_DESTROY_DELAY_MS,
      hardDestroyAt: closedAt + 4 * this.options.idleTimeoutMs,
      closeReason: reason,
      closeOwed: record,
    } satisfies Partial<SessionState>);
  }

  private effect(kind: EffectKind): Step {
    const s = this.state;
    const effect: Effect = { kind, lifetime: s.lifetime, session: s.session, holder: s.holder };
    if (kind === EffectKind.connect) {
      effect.previousHolder = s.previousHolder;
      effect.at = s.connectEventAt;
      if (this.options.deferClose) effect.close = s.closedSocket ?? null;
      effect.userUp = !this.options.quietReconnect || !s.userSocketId;
    }
    if (kind === EffectKind.close) effect.at = s.closeEventAt!;
    if (kind === EffectKind.softDestroy) {
      if (this.options.deferClose) effect.close = this.owedClose();
      effect.userSocketId = s.userSocketId ?? null;
    }
    return { kind: 'effect', effect };
  }

  /** The current socket's close, while it is owed and not yet recorded. */
  private owedClose(): OwedClose | null {
    const s = this.state;
    return s.closeOwed ? { socketId: s.socketId, at: s.closeEventAt!, holder: s.holder } : null;
  }

  private drop(signal: string, check: Check<unknown>): void {
    this.state.counts.droppedSignals++;
    this.dropped = check.ok ? null : { signal, field: check.field, reason: check.reason };
  }

  /** The last signal dropped as malformed, for the workflow to log. */
  dropped: { signal: string; field: string; reason: string } | null = null;
}

function fresh(
  session: Session,
  holder: GatewayHolder,
  now: number,
  at: number,
  previousHolder: GatewayHolder | null,
): SessionState {
  const moved =
    previousHolder !== null &&
    (previousHolder.gatewayId !== holder.gatewayId || previousHolder.incarnation !== holder.incarnation);
  return {
    connectionId: session.connectionId,
    status: SessionStatus.connected,
    session,
    socketId: session.socketId,
    holder,
    previousHolder: moved ? previousHolder : null,
    lifetime: 0,
    connectOwed: true,
    closeOwed: false,
    closedSocket: null,
    userSocketId: null,
    connectedAt: now,
    connectEventAt: at,
    lastSeenAt: now,
    disconnectedAt: null,
    closeEventAt: null,
    softDestroyAt: null,
    hardDestroyAt: null,
    presenceRemoved: false,
    closeReason: null,
    destroyReason: null,
    invalidateReason: null,
    counts: {
      reconnects: 0,
      heartbeats: 0,
      staleDisconnects: 0,
      droppedSignals: 0,
      ignoredGatewayLost: 0,
      presenceRemovals: 0,
      continuedAsNew: 0,
    },
  };
}
