export { SessionClient, HeartbeatOutcome, type SessionClientOptions } from './session-client';
export { InvalidSessionInputError, ConnectionOwnershipError } from './errors';
export {
  SessionStatus,
  DestroyReason,
  sessionWorkflowId,
  type Session,
  type SessionUser,
  type SessionView,
} from '../contracts/session';
export { gatewayWorkflowId, type GatewayHolder, type GatewayState } from '../contracts/gateway';
