/**
 * The real stack the bench runs on, beside its Temporal dev server (harness/temporal-server.ts):
 * the workflow bundles, and workers in child processes so that their memory and CPU are measured
 * apart from the load generator.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../../harness/root';
import { SESSION_WORKER, WorkerChild } from '../../harness/worker-child';
import { workerEnv } from '../../harness/worker-protocol';
import { writeWorkflowBundle } from '../../harness/workflow-bundle';
import type { BenchContext } from './context';

export interface Bundles {
  /** tether's workflows (src/workflows). */
  session: string;
  /** The minimal workflow of the ceiling scenario (bench/ceiling). */
  ceiling: string;
  remove(): void;
}

/** Bundles both workflow sets once per run into files in `dir` that the worker children load. */
export async function bundleWorkflows(dir: string): Promise<Bundles> {
  const [session, ceiling] = await Promise.all([
    writeWorkflowBundle(path.join(ROOT, 'src/workflows/index.ts'), path.join(dir, 'session-workflows.js')),
    writeWorkflowBundle(path.join(ROOT, 'bench/ceiling/workflows.ts'), path.join(dir, 'ceiling-workflows.js')),
  ]);
  return { session, ceiling, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

const CEILING_WORKER = path.join(ROOT, 'bench/ceiling/worker.ts');

/**
 * A worker child on its own task queue, counted in the scenario's CPU account: tether's
 * (`session`, with the scenario's WS_IDLE_TIMEOUT_MS) or the ceiling's.
 */
export async function startWorker(
  ctx: BenchContext,
  opts: { kind: 'session' | 'ceiling'; taskQueue: string; idleTimeoutMs?: number },
): Promise<WorkerChild> {
  const worker = await WorkerChild.start(
    {
      script: opts.kind === 'session' ? SESSION_WORKER : CEILING_WORKER,
      env: workerEnv({
        address: ctx.env.address,
        namespace: ctx.env.namespace,
        taskQueue: opts.taskQueue,
        bundleFile: ctx.bundles[opts.kind],
        logLevel: 'error',
        idleTimeoutMs: opts.idleTimeoutMs,
      }),
      measureMemory: true,
    },
    60_000,
  );
  if (worker.pid) ctx.workerPids.add(worker.pid);
  return worker;
}
