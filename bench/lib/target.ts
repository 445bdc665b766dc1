/**
 * What a trace drives: the three calls a gateway makes (socket open, pong, socket close). Any
 * implementation of the session service can be benchmarked by writing one of these.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { HeartbeatOutcome, SessionClient, sessionWorkflowId, type SessionClientOptions } from '../../src/client';
import { mapLimit } from '../../harness/map-limit';
import type { Session } from '../../src/contracts/session';
import { gatewayWorkflowId } from '../../src/contracts/gateway';
import { userWorkflowId } from '../../src/contracts/user';

export interface HeartbeatResult {
  /** The pong was passed on and should change shared state (the heartbeat score); false: coalesced. */
  effectExpected: boolean;
  /** The implementation no longer knows the session: the gateway registers the socket again. */
  unknownSession: boolean;
}

export interface SessionTarget {
  readonly name: string;
  /** `gateway`: which simulated gateway process the socket is on (index from 0). */
  connected(session: Session, at: number, gateway: number): Promise<void>;
  heartbeat(connectionId: string, at: number, gateway: number): Promise<HeartbeatResult>;
  disconnected(socket: { connectionId: string; socketId: string }, at: number): Promise<void>;
  /** Messages sent to the implementation so far (for signals/s). */
  messagesSent(): number;
  /** Clean shutdown of every simulated gateway, after their closes went out. */
  close?(): Promise<void>;
  /**
   * Implementation-side leftovers for these sessions and users once they should all be gone
   * (e.g. workflows still running); the Redis/Postgres side is the observer's audit.
   */
  leftovers?(connectionIds: string[], users: { appPid: string; clientId: string }[]): Promise<string[]>;
}

export interface TetherTargetOptions extends Omit<SessionClientOptions, 'gatewayId' | 'incarnation'> {
  /** Gateway k is `${gatewayPrefix}-${k}`; one SessionClient (one process incarnation) per gateway. */
  gatewayPrefix: string;
}

/**
 * tether: one `SessionClient` per simulated gateway process, each with its own lease (gatewayId and
 * incarnation), used exactly as a gateway would: `connected` on the socket's gateway, pongs to it
 * (coalesced there), the close to the gateway that held that socket.
 */
export class TetherTarget implements SessionTarget {
  readonly name = 'tether';
  private readonly clients = new Map<number, SessionClient>();
  /** socketId → the gateway that opened it (a close goes to that gateway's client). */
  private readonly sockets = new Map<string, number>();
  private sent = 0;
  /** How long each `connected()` took as the gateway sees it (ms), without the gateway's own writes. */
  readonly connectMs: number[] = [];

  constructor(
    private readonly temporal: Client,
    private readonly options: TetherTargetOptions,
  ) {}

  /** The SessionClient of gateway `k` (made at first use: its lease is acquired at its first connect). */
  client(gateway: number): SessionClient {
    let c = this.clients.get(gateway);
    if (!c) {
      const { gatewayPrefix, ...rest } = this.options;
      c = new SessionClient(this.temporal, { ...rest, gatewayId: `${gatewayPrefix}-${gateway}` });
      this.clients.set(gateway, c);
    }
    return c;
  }

  get gatewayIds(): string[] {
    return [...this.clients.values()].map((c) => c.holder.gatewayId);
  }

  async connected(session: Session, at: number, gateway: number): Promise<void> {
    const t = Date.now();
    await this.client(gateway).connected(session, at);
    if (this.connectMs.length < 200_000) this.connectMs.push(Date.now() - t);
    this.sockets.set(session.socketId, gateway);
    this.sent++;
  }

  async heartbeat(connectionId: string, at: number, gateway: number): Promise<HeartbeatResult> {
    const outcome = await this.client(gateway).heartbeat(connectionId, at);
    if (outcome === HeartbeatOutcome.forwarded) this.sent++;
    return {
      effectExpected: outcome === HeartbeatOutcome.forwarded,
      unknownSession: outcome === HeartbeatOutcome.unknownSession,
    };
  }

  async disconnected(socket: { connectionId: string; socketId: string }, at: number): Promise<void> {
    const gateway = this.sockets.get(socket.socketId) ?? 0;
    this.sockets.delete(socket.socketId);
    await this.client(gateway).disconnected(socket, at);
    this.sent++;
  }

  messagesSent(): number {
    return this.sent;
  }

  /** Sockets held, summed over the gateways. */
  get heldCount(): number {
    let n = 0;
    for (const c of this.clients.values()) n += c.heldCount;
    return n;
  }

  /** Releases every gateway's lease (their sockets' closes went out before). */
  async close(): Promise<void> {
    await Promise.all([...this.clients.values()].map((c) => c.close()));
  }

  /**
   * Every session and user workflow must have completed (a destroyed session ends its workflow),
   * and every released gateway's workflow too (nothing owed, no current incarnation).
   */
  async leftovers(connectionIds: string[], users: { appPid: string; clientId: string }[]): Promise<string[]> {
    const ids = [
      ...connectionIds.map(sessionWorkflowId),
      ...users.map((u) => userWorkflowId(u.appPid, u.clientId)),
      ...this.gatewayIds.map(gatewayWorkflowId),
    ];
    const problems: string[] = [];
    await mapLimit(ids, 32, async (workflowId) => {
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
