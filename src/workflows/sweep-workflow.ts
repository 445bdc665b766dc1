import {
  makeContinueAsNewFunc,
  metricMeter,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import {
  sweepProgressQuery,
  type SweepActivities,
  type SweepProgress,
  type SweepWorkflowInput,
} from '../contracts/sweep';

const DEFAULT_PAGE_SIZE = 200;
const DEFAULT_CONCURRENCY = 10;
const DEFAULT_MAX_HISTORY_EVENTS = 4_000;

const fx = proxyActivities<SweepActivities>({
  startToCloseTimeout: '10m',
  heartbeatTimeout: '1m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' },
});

/**
 * The periodic sweep (upstream `session:cron:task`), started by the schedule every
 * CRON_SCHEDULE_MINS. Pages through every id of `heartbeat:keepalive` whose score is older than
 * now − 4 × idle, without a cap; each page is one activity that handles its ids with bounded
 * concurrency. Progress is the `progress` query (and the run's current details in the Web UI).
 */
export async function sweepWorkflow(input: SweepWorkflowInput): Promise<SweepProgress> {
  const pageSize = Math.max(1, input.pageSize ?? DEFAULT_PAGE_SIZE);
  const concurrency = Math.max(1, input.concurrency ?? DEFAULT_CONCURRENCY);
  const maxEvents = input.maxHistoryEvents ?? DEFAULT_MAX_HISTORY_EVENTS;
  const now = Date.now();
  const progress: SweepProgress = input.progress ?? {
    cutoff: now - 4 * input.idleTimeoutMs,
    startedAt: now,
    finishedAt: null,
    pages: 0,
    scanned: 0,
    cleaned: 0,
    skipped: 0,
    usersNotified: 0,
    ignored: 0,
    failed: 0,
    anchor: null,
    done: false,
  };
  setHandler(sweepProgressQuery, () => progress);
  const cleaned = metricMeter.createCounter('tether_sweep_cleaned', 'sessions', 'Stale sessions the sweep cleaned up');
  const report = () =>
    setCurrentDetails(
      `${progress.done ? 'done' : 'sweeping'}: scanned ${progress.scanned}, cleaned ${progress.cleaned}, ` +
        `skipped (live) ${progress.skipped}, failed ${progress.failed}, pages ${progress.pages}`,
    );

  while (true) {
    const page = await fx.sweepPage({
      cutoff: progress.cutoff,
      limit: pageSize,
      concurrency,
      anchor: progress.anchor,
      appPids: input.appPids,
    });
    progress.pages++;
    progress.scanned += page.read;
    progress.cleaned += page.cleaned;
    cleaned.add(page.cleaned);
    progress.skipped += page.skipped;
    progress.ignored += page.ignored;
    progress.failed += page.failed;
    progress.usersNotified += page.usersNotified;
    progress.anchor = page.anchor;
    if (page.read < pageSize) break;
    report();
    const info = workflowInfo();
    if (info.historyLength >= maxEvents || info.continueAsNewSuggested) {
      await makeContinueAsNewFunc<typeof sweepWorkflow>({ memo: info.memo })({ ...input, progress });
    }
  }
  progress.done = true;
  progress.finishedAt = Date.now();
  report();
  return progress;
}
