import { randomUUID } from 'node:crypto';
import { type Client, WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import { WorkflowIdReusePolicy } from '@temporalio/common';
import {
  checkActive,
  checkConnectionId,
  checkDisconnected,
  checkHeartbeat,
  checkInvalidate,
  type ActiveMessage,
  type Session,
  activeSignal,
  disconnectedSignal,
  heartbeatSignal,
  invalidateSignal,
  sessionWorkflowId,
  stateQuery,
  SessionStatus,
  type SessionView,
  type SessionWorkflow,
  type SessionWorkflowInput,
} from '../contracts/session';
import {
  checkGateway,
  type GatewayHolder,
  acquireLeaseSignal,
  gatewayStateQuery,
  gatewayWorkflowId,
  releaseLeaseSignal,
  renewLeaseSignal,
  type GatewayWorkflow,
} from '../contracts/gateway';
import type { Check } from '../contracts/check';
import { sessionMemo, sessionSearchAttributes } from '../contracts/search-attributes';
import { ConnectionOwnershipError, InvalidSessionInputError } from './errors';

export interface SessionClientOptions {
  taskQueue: string;
  /** WS_IDLE_TIMEOUT_MS; must be the gateway's. The lease is renewed once per idle period. */
  idleTimeoutMs: number;
  /** This gateway process's id (RelayBox core's `instanceId`). */
  gatewayId: string;
  /** New at every process start; default a random uuid. */
  incarnation?: string;
  /**
   * Every socket this client holds sends its session one heartbeat per this interval, whether or
   * not it ponged (default 30 × idle: 15 min at 30 s). Its session closes itself after 3 × this
   * without one: the safety net for a close that never reached it. Markers do not depend on it.
   */
  heartbeatForwardIntervalMs?: number;
  /** Continue-as-new threshold passed to new session workflows. */
  maxHistoryEvents?: number;
  /**
   * Renew the lease and send due heartbeats on a timer (default true), the heartbeats spread over
   * half an idle period. Tests call `tick()` instead, which sends them at once.
   */
  autoTick?: boolean;
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

interface Held {
  session: Session;
  lastForwarded: number;
}

const TICK_CONCURRENCY = 20;

/**
 * What a gateway process calls on socket open, pong and close. Validates everything before
 * Temporal. Holds the process's gateway lease: one renewal per idle period keeps the markers of
 * all its sessions fresh (docs/design.md).
 */
export class SessionClient {
  private lessee: GatewayHolder;
  private readonly held = new Map<string, Held>();
  private readonly forwardInterval: number;
  private readonly now: () => number;
  private acquired: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;
  private forwarding: Promise<void> | undefined;
  private closes = 0;
  /** Wall-clock time of the last renewal that reached the server. */
  private lastRenewal = Date.now();

  constructor(
    private readonly client: Client,
    private readonly options: SessionClientOptions,
  ) {
    this.lessee = valid(
      checkGateway({ gatewayId: options.gatewayId, incarnation: options.incarnation ?? randomUUID() }),
    );
    this.forwardInterval = options.heartbeatForwardIntervalMs ?? 30 * options.idleTimeoutMs;
    if (!(Number.isFinite(this.forwardInterval) && this.forwardInterval > 0))
      throw new InvalidSessionInputError('heartbeatForwardIntervalMs', 'must be a positive number of milliseconds');
    this.now = options.now ?? Date.now;
  }

  /** Socket opened or reconnected: starts the session workflow, or signals the running one. */
  async connected(session: Session, at: number = this.now()): Promise<void> {
    const msg = valid(checkActive({ session, at, gateway: this.holder }));
    await this.lease();
    await this.start(msg);
    this.held.set(msg.session.connectionId, { session: msg.session, lastForwarded: at });
  }

  /** Pong. Costs nothing unless the connection's heartbeat is due (see heartbeatForwardIntervalMs). */
  async heartbeat(connectionId: string, at: number = this.now()): Promise<HeartbeatOutcome> {
    const id = valid(checkConnectionId(connectionId));
    valid(checkHeartbeat({ at }));
    const held = this.held.get(id);
    if (held && at - held.lastForwarded < this.forwardInterval) return HeartbeatOutcome.coalesced;
    return this.forward(id, at);
  }

  /** Socket closed. Returns false when no session was running for it. */
  async disconnected(session: Pick<Session, 'connectionId' | 'socketId'>, at: number = this.now()): Promise<boolean> {
    if (typeof session !== 'object' || session === null)
      throw new InvalidSessionInputError('session', 'must be an object');
    const msg = valid(checkDisconnected({ connectionId: session.connectionId, socketId: session.socketId, at }));
    if (this.held.get(msg.connectionId)?.session.socketId === msg.socketId) this.held.delete(msg.connectionId);
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
  async describe(connectionId: string): Promise<SessionView | null> {
    const id = valid(checkConnectionId(connectionId));
    try {
      return await this.client.workflow.getHandle(sessionWorkflowId(id)).query(stateQuery);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return null;
      throw err;
    }
  }

  /** This process's gateway and incarnation, as sessions record their holder. */
  get holder(): GatewayHolder {
    return this.lessee;
  }

  /** The sockets this client holds (connected, not disconnected). */
  get heldCount(): number {
    return this.held.size;
  }

  /**
   * One idle period's work: renew the lease, check it is still ours, and send the heartbeats due.
   * A lease lost while this process lived (paused past 4 × idle) is taken again under a new
   * incarnation, and every held socket is connected again.
   */
  async tick(): Promise<void> {
    // Apart: heartbeats still going out from the last tick (a slow server) must not hold back the
    // renewal, on which every marker of this gateway depends (bench `capacity`).
    this.renewing ??= this.renew().finally(() => (this.renewing = undefined));
    this.forwarding ??= this.forwardDue().finally(() => (this.forwarding = undefined));
    await Promise.all([this.renewing, this.forwarding]);
  }

  /** Clean shutdown, after the gateway's closes went out: stops the timer and releases the lease. */
  async close(): Promise<void> {
    this.closes++;
    clearInterval(this.timer);
    this.timer = undefined;
    if (!this.acquired) return;
    await this.acquired;
    await this.gateway().signal(releaseLeaseSignal, { incarnation: this.holder.incarnation });
    this.acquired = undefined;
  }

  private async renew(): Promise<void> {
    await this.lease();
    const gateway = this.gateway();
    try {
      await gateway.signal(renewLeaseSignal, { incarnation: this.holder.incarnation });
    } catch (err) {
      // The gateway's run ended: its lease lapsed (this process stalled) and its sessions were closed.
      if (!(err instanceof WorkflowNotFoundError)) throw err;
      await this.reacquire();
    }
    // Only a gap in renewals can have let the lease lapse: then ask (a query costs the server a task).
    const gap = Date.now() - this.lastRenewal;
    this.lastRenewal = Date.now();
    if (gap >= 2 * this.options.idleTimeoutMs) {
      const state = await gateway.query(gatewayStateQuery).catch(() => null);
      if (
        state?.current?.incarnation !== this.holder.incarnation &&
        state?.superseded.includes(this.holder.incarnation)
      )
        await this.reacquire();
    }
  }

  /**
   * The heartbeats due, spread over half an idle period when ticking on the timer: sockets opened
   * in a burst come due in a burst, which would otherwise reach the server at once every forward
   * interval (a manual `tick()` sends them at once).
   */
  private async forwardDue(): Promise<void> {
    await this.lease();
    const now = this.now();
    const due = [...this.held].filter(([, h]) => now - h.lastForwarded >= this.forwardInterval).map(([id]) => id);
    const round = this.closes;
    const send = async (id: string) => {
      if (round === this.closes) await this.forward(id, now); // close() ends the round
    };
    const spread = this.options.autoTick === false ? 0 : this.options.idleTimeoutMs / 2;
    await pool(due, TICK_CONCURRENCY, send, spread);
  }

  private async reacquire(): Promise<void> {
    this.lessee = { gatewayId: this.lessee.gatewayId, incarnation: randomUUID() };
    this.acquired = undefined;
    await this.lease();
    await pool([...this.held.values()], TICK_CONCURRENCY, (h) => this.connected(h.session));
  }

  private async forward(id: string, at: number): Promise<HeartbeatOutcome> {
    try {
      await this.client.workflow.getHandle(sessionWorkflowId(id)).signal(heartbeatSignal, { at });
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        this.held.delete(id);
        return HeartbeatOutcome.unknownSession;
      }
      throw err;
    }
    const held = this.held.get(id);
    if (held) held.lastForwarded = at;
    return HeartbeatOutcome.forwarded;
  }

  private lease(): Promise<void> {
    this.acquired ??= this.acquire().catch((err: unknown) => {
      this.acquired = undefined;
      throw err;
    });
    return this.acquired;
  }

  private async acquire(): Promise<void> {
    const { gatewayId, incarnation } = this.holder;
    await this.client.workflow.signalWithStart<GatewayWorkflow, [{ incarnation: string }]>('gatewayWorkflow', {
      workflowId: gatewayWorkflowId(gatewayId),
      taskQueue: this.options.taskQueue,
      args: [{ version: 3, gatewayId, idleTimeoutMs: this.options.idleTimeoutMs }],
      signal: acquireLeaseSignal,
      signalArgs: [{ incarnation }],
      staticSummary: `gateway ${gatewayId}`,
    });
    this.lastRenewal = Date.now();
    if (this.options.autoTick !== false && !this.timer) {
      this.timer = setInterval(() => void this.tick().catch(() => undefined), this.options.idleTimeoutMs);
      this.timer.unref();
    }
  }

  private gateway() {
    return this.client.workflow.getHandle(gatewayWorkflowId(this.holder.gatewayId));
  }

  /**
   * A running session is checked and signalled; otherwise a plain start (no signal event). The read
   * comes first because reconnects come in storms (a gateway lost, a deploy): a reconnect costs the
   * server a read and a signal, not a refused start as well; a first connect costs it a read more.
   */
  private async start(msg: ActiveMessage): Promise<void> {
    const s = msg.session;
    const input: SessionWorkflowInput = {
      version: 5,
      active: msg,
      idleTimeoutMs: this.options.idleTimeoutMs,
      livenessTimeoutMs: 3 * this.forwardInterval,
      maxHistoryEvents: this.options.maxHistoryEvents,
    };
    const options = {
      workflowId: sessionWorkflowId(s.connectionId),
      taskQueue: this.options.taskQueue,
      args: [input] as [SessionWorkflowInput],
      // A closed (destroyed) session may start again.
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
      typedSearchAttributes: sessionSearchAttributes(s, SessionStatus.connected),
      memo: sessionMemo(s),
      staticSummary: `session ${s.connectionId}`,
      staticDetails: `appPid: ${s.appPid}\nconnectionId: ${s.connectionId}\nuid: ${s.uid}`,
    };
    if (!(await this.running(s))) {
      try {
        await this.client.workflow.start<SessionWorkflow>('sessionWorkflow', {
          ...options,
          workflowIdConflictPolicy: 'FAIL',
        });
        return;
      } catch (err) {
        if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      }
      await this.running(s); // started by a connect racing this one: its owner decides
    }
    // With-start: the run may have ended since.
    await this.client.workflow.signalWithStart<SessionWorkflow, [ActiveMessage]>('sessionWorkflow', {
      ...options,
      signal: activeSignal,
      signalArgs: [msg],
    });
  }

  /**
   * Whether a run of this session is running; one live for another uid is refused (upstream let any
   * client claim it).
   */
  // Read from the server (memo), not by query: it answers while no worker is up. The workflow
  // refuses a foreign `active` signal as well, for two claims racing past this check. (appPid needs
  // no check: a valid connectionId starts with its appPid.)
  private async running(session: Session): Promise<boolean> {
    let owner: Record<string, unknown> | undefined;
    try {
      const description = await this.client.workflow.getHandle(sessionWorkflowId(session.connectionId)).describe();
      if (description.status.name !== 'RUNNING') return false;
      owner = description.memo;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return false;
      throw err;
    }
    // A run without the memo (the time-skipping server drops it on continue-as-new) is left to the
    // workflow's own check.
    if (typeof owner?.uid === 'string' && owner.uid !== session.uid)
      throw new ConnectionOwnershipError(session.connectionId, 'uid');
    return true;
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

/** `work` on every item, `concurrency` at a time; with `spreadMs`, item i starts no sooner than i/n of it. */
async function pool<T>(
  items: T[],
  concurrency: number,
  work: (item: T) => Promise<unknown>,
  spreadMs = 0,
): Promise<void> {
  const started = Date.now();
  const step = items.length > 1 ? spreadMs / items.length : 0;
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      const wait = started + i * step - Date.now();
      // Unref'd: a paced tick never keeps the gateway process alive.
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait).unref());
      await work(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}
