/**
 * What a trace drives: the three calls a gateway makes (socket open, pong, socket close). Any
 * implementation of the session service can be benchmarked by writing one of these.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { HeartbeatOutcome, SessionClient, sessionWorkflowId, type SessionClientOptions } from '../../src/client';
import type { Session } from '../../src/session';
import { userWorkflowId } from '../../src/workflows/user-messages';

export interface HeartbeatResult {
  /** The pong was passed on and should change shared state (the heartbeat score); false: coalesced. */
  effectExpected: boolean;
  /** The implementation no longer knows the session: the gateway registers the socket again. */
  unknownSession: boolean;
}

export interface SessionTarget {
  readonly name: string;
  connected(session: Session, at: number): Promise<void>;
  heartbeat(connectionId: string, at: number): Promise<HeartbeatResult>;
  disconnected(socket: { connectionId: string; socketId: string }, at: number): Promise<void>;
  /** Messages sent to the implementation so far (for signals/s). */
  messagesSent(): number;
  /**
   * Implementation-side leftovers for these sessions and users once they should all be gone
   * (e.g. workflows still running); the Redis/Postgres side is the observer's audit.
   */
  leftovers?(connectionIds: string[], users: { appPid: string; clientId: string }[]): Promise<string[]>;
}

/** tether: the gateway's SessionClient, exactly as a gateway would use it. */
export class TetherTarget implements SessionTarget {
  readonly name = 'tether';
  private readonly sessions: SessionClient;
  private sent = 0;

  constructor(
    private readonly temporal: Client,
    options: SessionClientOptions,
  ) {
    this.sessions = new SessionClient(temporal, options);
  }

  async connected(session: Session, at: number): Promise<void> {
    await this.sessions.connected(session, at);
    this.sent++;
  }

  async heartbeat(connectionId: string, at: number): Promise<HeartbeatResult> {
    const outcome = await this.sessions.heartbeat(connectionId, at);
    if (outcome === HeartbeatOutcome.forwarded) this.sent++;
    return {
      effectExpected: outcome === HeartbeatOutcome.forwarded,
      unknownSession: outcome === HeartbeatOutcome.unknownSession,
    };
  }

  async disconnected(socket: { connectionId: string; socketId: string }, at: number): Promise<void> {
    await this.sessions.disconnected(socket, at);
    this.sent++;
  }

  messagesSent(): number {
    return this.sent;
  }

  /** Every session and user workflow must have completed (a destroyed session ends its workflow). */
  async leftovers(connectionIds: string[], users: { appPid: string; clientId: string }[]): Promise<string[]> {
    const ids = [...connectionIds.map(sessionWorkflowId), ...users.map((u) => userWorkflowId(u.appPid, u.clientId))];
    const problems: string[] = [];
    await forEachLimit(ids, 32, async (workflowId) => {
      try {
        const d = await this.temporal.workflow.getHandle(workflowId).describe();
        if (d.status.name !== 'COMPLETED') problems.push(`workflow ${workflowId} is ${d.status.name}`);
      } catch (err) {
        // A user whose connections all ended before its workflow started has none: fine.
        if (!(err instanceof WorkflowNotFoundError && workflowId.startsWith('user:')))
          problems.push(`workflow ${workflowId}: ${err instanceof Error ? err.message : String(err)}`);
      }
    });
    return problems;
  }
}

export async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>) {
  let i = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (i < items.length) await fn(items[i++]!);
  });
  await Promise.all(workers);
}
