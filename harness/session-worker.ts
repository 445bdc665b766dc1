/**
 * tether's worker exactly as src/worker.ts builds it, in a child process of the bench or the chaos
 * harness (started by harness/worker-child.ts), so that it can be measured apart from the load
 * generator, or SIGKILLed and started again.
 */
import { readFileSync } from 'node:fs';
import { openResources } from '../src/service/resources';
import { createWorker } from '../src/worker';
import { serveWorker } from './worker-process';
import { BUNDLE_ENV } from './worker-protocol';

serveWorker('worker', async (connection, config, logger) => {
  const resources = openResources(config, logger);
  const bundleFile = process.env[BUNDLE_ENV];
  const worker = await createWorker({
    connection,
    config,
    resources,
    logger,
    // createWorker takes the bundle's code, not a path.
    workflowBundle: bundleFile ? { code: readFileSync(bundleFile, 'utf8') } : undefined,
  });
  return { worker, close: () => resources.close() };
});
