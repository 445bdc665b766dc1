import { SessionStatus, type SessionState, type SessionView } from '../../contracts/session';

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The `state` query's answer: the machine's state with times a person reads (ISO-8601, UTC). */
export function sessionView(s: SessionState, livenessTimeoutMs: number): SessionView {
  return {
    connectionId: s.connectionId,
    status: s.status,
    session: s.session,
    socketId: s.socketId,
    holder: s.holder,
    connectedAt: iso(s.connectedAt)!,
    lastSeenAt: iso(s.lastSeenAt)!,
    disconnectedAt: iso(s.disconnectedAt),
    softDestroyAt: s.presenceRemoved ? null : iso(s.softDestroyAt),
    hardDestroyAt: s.status === SessionStatus.destroyed ? null : iso(s.hardDestroyAt),
    livenessExpiresAt: s.status === SessionStatus.connected ? iso(s.lastSeenAt + livenessTimeoutMs) : null,
    presenceRemoved: s.presenceRemoved,
    destroyReason: s.destroyReason,
    invalidateReason: s.invalidateReason,
    counts: s.counts,
  };
}
