export { SessionClient, HeartbeatOutcome, type SessionClientOptions } from './session-client';
export { InvalidSessionInputError, ConnectionOwnershipError } from './errors';
export type { Session, SessionUser } from '../session';
export { SessionStatus, DestroyReason, sessionWorkflowId, type SessionState } from '../workflows/messages';
