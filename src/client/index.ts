export { SessionClient, HeartbeatOutcome, type SessionClientOptions } from './session-client';
export { InvalidSessionInputError, ConnectionOwnershipError } from './errors';
export type { GatewayHolder, Session, SessionUser } from '../session';
export { SessionStatus, DestroyReason, sessionWorkflowId, type SessionView } from '../workflows/messages';
export { gatewayWorkflowId, type GatewayState } from '../workflows/gateway-messages';
