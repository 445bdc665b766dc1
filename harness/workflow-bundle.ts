import { writeFileSync } from 'node:fs';
import { bundleWorkflowCode } from '@temporalio/worker';

const noop = () => undefined;
/** webpack's statistics would bury the run's own output. */
export const quietBundlerLogger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, log: noop };

/**
 * Bundles a workflow module once into `file`, which every worker child of the run loads: a
 * (re)started worker is ready in a second instead of a webpack run.
 */
export async function writeWorkflowBundle(workflowsPath: string, file: string): Promise<string> {
  const { code } = await bundleWorkflowCode({ workflowsPath, logger: quietBundlerLogger });
  writeFileSync(file, code);
  return file;
}
