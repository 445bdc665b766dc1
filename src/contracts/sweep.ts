import { defineQuery } from '@temporalio/workflow';

/** The sweep's contract: its schedule, input, progress and the page activity. */

/** The schedule that runs the sweep (one per namespace and task queue; see src/service/sweep-schedule.ts). */
export const SWEEP_SCHEDULE_ID = 'tether-sweep';

export interface SweepWorkflowInput {
  /** WS_IDLE_TIMEOUT_MS: an id is stale when its heartbeat score is older than now − 4 × idle. */
  idleTimeoutMs: number;
  /** Ids read from `heartbeat:keepalive` per page (default 200). */
  pageSize?: number;
  /** Ids of a page handled at once (default 10). */
  concurrency?: number;
  /** Only these apps' connectionIds (others are left alone); default: every app. */
  appPids?: string[];
  /** Continue-as-new once history reaches this many events, or when the server suggests it. */
  maxHistoryEvents?: number;
  /** Carried by continue-as-new. */
  progress?: SweepProgress;
}

/** Where the paging stands: the last id left in the stale range (read after it next). */
export interface SweepAnchor {
  member: string;
  score: string;
}

export interface SweepProgress {
  /** Epoch ms: ids whose score is at most this are stale. Fixed for the whole sweep. */
  cutoff: number;
  startedAt: number;
  finishedAt: number | null;
  pages: number;
  /** Stale ids read from `heartbeat:keepalive`. */
  scanned: number;
  /** Stale and not live: cleaned up. */
  cleaned: number;
  /** Stale score but live (running session workflow or active marker): score refreshed, left alone. */
  skipped: number;
  /** Of users taken offline (or reported gone to their user workflow) by the cleanup. */
  usersNotified: number;
  /** Outside `appPids`. */
  ignored: number;
  /** Failed this run (left in place for the next one). */
  failed: number;
  anchor: SweepAnchor | null;
  done: boolean;
}

export const sweepProgressQuery = defineQuery<SweepProgress>('progress');

/** The workflow type `sweepWorkflow`, for the schedule's action. */
export type SweepWorkflow = (input: SweepWorkflowInput) => Promise<SweepProgress>;

export interface SweepPageInput {
  cutoff: number;
  limit: number;
  concurrency: number;
  anchor: SweepAnchor | null;
  appPids?: string[];
}

export interface SweepPageResult {
  /** Stale ids read (a page shorter than the limit is the last). */
  read: number;
  cleaned: number;
  skipped: number;
  ignored: number;
  failed: number;
  usersNotified: number;
  anchor: SweepAnchor | null;
}

/** The sweep's effect (src/activities/sweep-effects.ts). */
export interface SweepActivities {
  /** One page of stale ids after the anchor: live ones refreshed, the rest cleaned. Safe to retry. */
  sweepPage(input: SweepPageInput): Promise<SweepPageResult>;
}
