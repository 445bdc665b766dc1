import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import type { Config } from '../config';
import { SWEEP_SCHEDULE_ID, type SweepWorkflow, type SweepWorkflowInput } from '../contracts/sweep';

export interface SweepScheduleOptions {
  /** Default `tether-sweep:{taskQueue}`: one schedule per deployment (task queue) in a namespace. */
  scheduleId?: string;
  /** Default: config.temporal.taskQueue. */
  taskQueue?: string;
  /** Extra sweep input (page size, concurrency, an app filter); idleTimeoutMs comes from config. */
  sweep?: Omit<SweepWorkflowInput, 'idleTimeoutMs' | 'progress'>;
}

/**
 * Creates the sweep's Temporal Schedule, or brings an existing one up to date: every
 * CRON_SCHEDULE_MINS minutes, overlap SKIP (a sweep still running makes the next one skip), a
 * catch-up window of one period. Idempotent, so every worker calls it at start-up; an operator's
 * pause and note are kept across updates.
 */
export async function ensureSweepSchedule(
  client: Client,
  config: Config,
  opts: SweepScheduleOptions = {},
): Promise<{ scheduleId: string; created: boolean }> {
  const taskQueue = opts.taskQueue ?? config.temporal.taskQueue;
  const scheduleId = opts.scheduleId ?? `${SWEEP_SCHEDULE_ID}:${taskQueue}`;
  const period = config.cronScheduleMins * 60_000;
  const spec = { intervals: [{ every: period }] };
  const policies = { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: period, pauseOnFailure: false };
  const input: SweepWorkflowInput = { ...opts.sweep, idleTimeoutMs: config.idleTimeoutMs };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: 'sweepWorkflow',
    workflowId: `sweep:${taskQueue}`,
    taskQueue,
    args: [input] as Parameters<SweepWorkflow>,
    staticSummary: 'session sweep',
    staticDetails: `heartbeat:keepalive ids older than 4 × ${config.idleTimeoutMs} ms, every ${config.cronScheduleMins} min`,
  };
  try {
    await client.schedule.create({ scheduleId, spec, action, policies });
    return { scheduleId, created: true };
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
  await client.schedule.getHandle(scheduleId).update((previous) => ({
    ...previous,
    spec,
    action,
    policies: { ...previous.policies, ...policies },
  }));
  return { scheduleId, created: false };
}
