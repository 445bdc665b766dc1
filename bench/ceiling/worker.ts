/**
 * The ceiling scenario's worker child: the same cache and concurrency settings as tether's worker
 * (src/worker.ts), running the minimal workflow of bench/ceiling.
 */
import { Worker } from '@temporalio/worker';
import { WORKER_CONCURRENCY } from '../../src/worker';
import { serveWorker } from '../../harness/worker-process';
import { BUNDLE_ENV } from '../../harness/worker-protocol';
import { ceilingActivities } from './activities';

serveWorker('ceiling worker', async (connection, config) => ({
  worker: await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    workflowBundle: { codePath: process.env[BUNDLE_ENV]! },
    activities: ceilingActivities,
    ...WORKER_CONCURRENCY,
    shutdownGraceTime: '10s',
  }),
}));
