import type { Client, Connection } from '@temporalio/client';
import type Redis from 'ioredis';
import type { Pool } from 'pg';
import type { SessionClient } from '../src/client';
import type { Session, SessionUser } from '../src/contracts/session';
import type { HarnessGateway } from './gateways';
import type { Rng } from '../harness/rng';

export const SCENARIOS = [
  'simple',
  'quick-reconnect',
  'soft-race',
  'hard-race',
  'late-reconnect',
  'double-close',
  'stale-close',
  'late-pong',
  'silent',
  'invalidate',
  'unknown-app',
  'weird-valid',
  'ownership',
  'long-lived',
  'probe',
  'gateway-kill',
] as const;
export type Scenario = (typeof SCENARIOS)[number];

export interface Violation {
  invariant: string;
  subject: string;
  detail: string;
  at: number;
  /** The session's recorded history, for violations about one session. */
  trace?: string[];
}

export interface App {
  appPid: string;
  appId: string;
}

export interface SeededUser {
  appPid: string;
  user: SessionUser;
}

/** One connection of the run as the gateway (the driver) sees it. */
export interface Tracked {
  n: number;
  scenario: Scenario;
  /** Current session object (its socketId is the current socket). */
  session: Session;
  sockets: string[];
  rooms: string[];
  presenceRooms: string[];
  /**
   * Presence lifetimes per room: how many times the driver's seed found the connection absent from
   * the room's members and put it in. Each lifetime ends with at most one presence leave.
   */
  presenceLifetimes: Record<string, number>;
  userTargets: string[];
  /** What the run must end with for it. */
  expect: 'destroyed' | 'live' | 'rejected';
  /**
   * The gateway process (its SessionClient) holding the socket, when not the harness's main one:
   * the forgetful gateway of `silent`, or a gateway of the `gateway-kill` fault.
   */
  via?: SessionClient;
  /** The gateway considers the socket open. */
  connected: boolean;
  /** A destroy may have completed at some point (so `disconnectedAt` may be set while live). */
  mayHaveBeenDestroyed: boolean;
  /** A soft destroy may have removed presence before a racing reconnect (the client re-enters it). */
  mayHaveLostPresence: boolean;
  /** Wall-clock estimate of the pending hard destroy, once the final close was sent. */
  destroyDueAt: number | null;
  startedAt: number;
  finishedAt: number | null;
  /** The scenario script itself failed (a call that never went through). */
  error: string | null;
  notes: string[];
}

export interface ChaosContext {
  temporal: Client;
  connection: Connection;
  /** The harness's main gateway process: one SessionClient (one incarnation) for the whole run. */
  sessions: SessionClient;
  /**
   * A gateway that lives (its lease is renewed) but forgot its sockets: it never sends their
   * heartbeats, so its sessions close by liveness (the `silent` scenario).
   */
  forgetful: HarnessGateway;
  /** Gateway processes started by faults (new incarnations), closed at the end of the run. */
  gateways: SessionClient[];
  redis: Redis;
  pg: Pool;
  apps: App[];
  users: SeededUser[];
  unknownAppPid: string;
  idleMs: number;
  pongEveryMs: number;
  taskQueue: string;
  rng: Rng;
  tracked: Tracked[];
  violations: Violation[];
  /** Counters shown in the report. */
  counters: Record<string, number>;
  /** Aborts everything (SIGINT, fatal error). */
  signal: AbortSignal;
  log: (msg: string) => void;
}

export function violate(
  ctx: Pick<ChaosContext, 'violations' | 'log'>,
  invariant: string,
  subject: string,
  detail: string,
  trace?: string[],
) {
  ctx.violations.push({ invariant, subject, detail, at: Date.now(), ...(trace && { trace }) });
  ctx.log(`VIOLATION ${invariant} ${subject}: ${detail}`);
}

export function count(ctx: Pick<ChaosContext, 'counters'>, key: string, by = 1): void {
  ctx.counters[key] = (ctx.counters[key] ?? 0) + by;
}
