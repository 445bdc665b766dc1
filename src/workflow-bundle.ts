/**
 * The workflow code the worker runs. `npm run build` bundles it once into dist/workflows.bundle.js
 * (this file compiled, run as a script); the compiled worker loads that file, and only a worker run
 * from the sources (npm start, tests) bundles at start-up.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { bundleWorkflowCode, type WorkflowBundle, type WorkflowBundleOption } from '@temporalio/worker';

/** Where the build puts the bundle: next to the compiled worker, i.e. dist/workflows.bundle.js. */
export const BUNDLE_FILE = path.join(__dirname, 'workflows.bundle.js');

type BundlerLogger = NonNullable<Parameters<typeof bundleWorkflowCode>[0]['logger']>;

export function buildWorkflowBundle(logger?: BundlerLogger): Promise<WorkflowBundle> {
  return bundleWorkflowCode({ workflowsPath: require.resolve('./workflows'), ...(logger ? { logger } : {}) });
}

/** The prebuilt bundle when there is one next to this module, otherwise a fresh bundle of the sources. */
export async function workerWorkflowBundle(
  logger?: BundlerLogger,
  file = BUNDLE_FILE,
): Promise<{ bundle: WorkflowBundleOption; prebuilt: boolean }> {
  if (existsSync(file)) return { bundle: { codePath: file }, prebuilt: true };
  return { bundle: await buildWorkflowBundle(logger), prebuilt: false };
}

const quiet = () => undefined;
const warn = (message: string) => process.stderr.write(`${message}\n`);

if (require.main === module) {
  // webpack's statistics are a screenful: warnings and errors only.
  buildWorkflowBundle({ trace: quiet, debug: quiet, info: quiet, log: quiet, warn, error: warn })
    .then(async ({ code }) => {
      await writeFile(BUNDLE_FILE, code);
      process.stdout.write(`workflow bundle: ${path.relative(process.cwd(), BUNDLE_FILE)} (${code.length} bytes)\n`);
    })
    .catch((err: unknown) => {
      process.stderr.write(`tether: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    });
}
