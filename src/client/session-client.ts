import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { WorkflowIdReusePolicy } from '@temporalio/common';
import {
  checkActive,
  checkConnectionId,
  checkDisconnected,
  checkHeartbeat,
  checkInvalidate,
  type Check,
  type Session,
} from '../session';
import {
  activeSignal,
  disconnectedSignal,
  heartbeatSignal,
  invalidateSignal,
  sessionWorkflowId,
  stateQuery,
  SessionStatus,
  type SessionState,
} from '../workflows/messages';
import { sessionMemo, sessionSearchAttributes } from '../workflows/search-attributes';
import type { sessionWorkflow } from '../workflows/session-workflow';
import { ConnectionOwnershipError, InvalidSessionInputError } from './errors';

export interface SessionClientOptions {
  taskQueue: string;
  /** WS_IDLE_TIMEOUT_MS; must be the gateway's. */
  idleTimeoutMs: number;
  /**
   * A pong is forwarded to the workflow only when this long has passed since the last one forwarded
   * for the connection (default 1.5 × idle: every other pong). Must stay well below 3 × idle, the
   * active marker's lifetime.
   */
  heartbeatForwardIntervalMs?: number;
  /** Continue-as-new threshold passed to new session workflows. */
  maxHistoryEvents?: number;
  now?: () => number;
}

export const HeartbeatOutcome = {
  forwarded: 'forwarded',
  coalesced: 'coalesced',
  /** No running session: the gateway should call `connected` again if the socket is open. */
  unknownSession: 'unknown-session',
} as const;
export type HeartbeatOutcome = (typeof HeartbeatOutcome)[keyof typeof HeartbeatOutcome];

function valid<T>(check: Check<T>): T {
  if (!check.ok) throw new InvalidSessionInputError(check.field, check.reason);
  return check.value;
}

/** What the gateway calls on socket open, pong and close. Validates everything before Temporal. */
export class SessionClient {
  private readonly lastForwarded = new Map<string, number>();
  private readonly forwardInterval: number;
  private readonly now: () => number;

  constructor(
    private readonly client: Client,
    private readonly options: SessionClientOptions,
  ) {
    this.forwardInterval = options.heartbeatForwardIntervalMs ?? Math.round(options.idleTimeoutMs * 1.5);
    if (!(this.forwardInterval >= 0 && this.forwardInterval < options.idleTimeoutMs * 3)) {
      throw new InvalidSessionInputError('heartbeatForwardIntervalMs', 'must be below 3 × idleTimeoutMs');
    }
    this.now = options.now ?? Date.now;
  }

  /** Socket opened or reconnected: starts the session workflow if needed and marks it live. */
  async connected(session: Session, at: number = this.now()): Promise<void> {
    const msg = valid(checkActive({ session, at }));
    const s = msg.session;
    const workflowId = sessionWorkflowId(s.connectionId);
    await this.assertOwnership(s);
    await this.client.workflow.signalWithStart<typeof sessionWorkflow, [typeof msg]>('sessionWorkflow', {
      workflowId,
      taskQueue: this.options.taskQueue,
      args: [
        { active: msg, idleTimeoutMs: this.options.idleTimeoutMs, maxHistoryEvents: this.options.maxHistoryEvents },
      ],
      signal: activeSignal,
      signalArgs: [msg],
      // A closed (destroyed) session may start again; a running one is signalled.
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
      typedSearchAttributes: sessionSearchAttributes(s, SessionStatus.connected),
      memo: sessionMemo(s),
      staticSummary: `session ${s.connectionId}`,
      staticDetails: `appPid: ${s.appPid}\nconnectionId: ${s.connectionId}\nuid: ${s.uid}`,
    });
    this.lastForwarded.set(s.connectionId, this.now());
  }

  /** Pong. Coalesced: at most one signal per forward interval per connection. */
  async heartbeat(connectionId: string, at: number = this.now()): Promise<HeartbeatOutcome> {
    const id = valid(checkConnectionId(connectionId));
    const msg = valid(checkHeartbeat({ at }));
    const last = this.lastForwarded.get(id);
    if (last !== undefined && at - last < this.forwardInterval) return HeartbeatOutcome.coalesced;
    try {
      await this.client.workflow.getHandle(sessionWorkflowId(id)).signal(heartbeatSignal, msg);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        this.lastForwarded.delete(id);
        return HeartbeatOutcome.unknownSession;
      }
      throw err;
    }
    this.lastForwarded.set(id, at);
    return HeartbeatOutcome.forwarded;
  }

  /** Socket closed. Returns false when no session was running for it. */
  async disconnected(session: Pick<Session, 'connectionId' | 'socketId'>, at: number = this.now()): Promise<boolean> {
    if (typeof session !== 'object' || session === null)
      throw new InvalidSessionInputError('session', 'must be an object');
    const msg = valid(checkDisconnected({ connectionId: session.connectionId, socketId: session.socketId, at }));
    this.lastForwarded.delete(msg.connectionId);
    return this.signalIfRunning(msg.connectionId, () =>
      this.client.workflow.getHandle(sessionWorkflowId(msg.connectionId)).signal(disconnectedSignal, msg),
    );
  }

  /** Operator: destroy the session now. Returns false when no session was running. */
  async invalidate(connectionId: string, reason: string): Promise<boolean> {
    const id = valid(checkConnectionId(connectionId));
    const msg = valid(checkInvalidate({ reason }));
    return this.signalIfRunning(id, () =>
      this.client.workflow.getHandle(sessionWorkflowId(id)).signal(invalidateSignal, msg),
    );
  }

  /** The session's state (also of a finished run), or null when there never was one. */
  async describe(connectionId: string): Promise<SessionState | null> {
    const id = valid(checkConnectionId(connectionId));
    try {
      return await this.client.workflow.getHandle(sessionWorkflowId(id)).query(stateQuery);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return null;
      throw err;
    }
  }

  /** A connectionId live for another uid/appPid is refused (upstream let any client claim it). */
  // Read from the server (memo), not by query: it answers while no worker is up. The workflow
  // refuses a foreign `active` signal as well, for two claims racing past this check.
  private async assertOwnership(session: Session): Promise<void> {
    let owner: Record<string, unknown> | undefined;
    try {
      const description = await this.client.workflow.getHandle(sessionWorkflowId(session.connectionId)).describe();
      if (description.status.name !== 'RUNNING') return;
      owner = description.memo;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return;
      throw err;
    }
    // A run without the memo (the time-skipping server drops it on continue-as-new) is left to the
    // workflow's own check.
    if (typeof owner?.appPid !== 'string' || typeof owner.uid !== 'string') return;
    if (owner.appPid !== session.appPid) throw new ConnectionOwnershipError(session.connectionId, 'appPid');
    if (owner.uid !== session.uid) throw new ConnectionOwnershipError(session.connectionId, 'uid');
  }

  private async signalIfRunning(connectionId: string, send: () => Promise<void>): Promise<boolean> {
    try {
      await send();
      return true;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return false;
      throw err;
    }
  }
}
