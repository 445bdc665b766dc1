/**
 * The ceiling: the least a workflow with a timer and an activity can cost on this server and
 * worker. Bundled on its own (bench/lib/stack.ts), never part of tether's workflows.
 */
import { proxyActivities, sleep } from '@temporalio/workflow';
import type { CeilingActivities } from './activities';

const { touch } = proxyActivities<CeilingActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '30s' },
});

/** Start, one timer, one activity, complete. */
export async function ceilingWorkflow(input: { timerMs: number }): Promise<void> {
  await sleep(input.timerMs);
  await touch();
}
