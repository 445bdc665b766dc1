import { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, type WorkflowBundle } from '@temporalio/worker';
import { quietBundlerLogger } from '../../harness/workflow-bundle';
import { DEV_DYNAMIC_CONFIG, dynamicConfigArgs } from '../../src/dev/dev-server';
import { readToolPaths } from '../../src/dev/environment';
import { SEARCH_ATTRIBUTES } from '../../src/contracts/search-attributes';

/**
 * Temporal servers for tests, from the tools scripts/tools.sh put in place (no download); when a
 * tool is missing the SDK's own download is tried, which works on a machine with internet.
 */
export async function timeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  const { testServer } = readToolPaths();
  const env = await TestWorkflowEnvironment.createTimeSkipping(
    testServer ? { server: { executable: { type: 'existing-path', path: testServer } } } : {},
  );
  // The test server has no flag for custom search attributes; it takes them through the operator API.
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: Object.fromEntries(
      SEARCH_ATTRIBUTES.map((key) => [key.name, temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD]),
    ),
  });
  return env;
}

export async function devServerEnv(): Promise<TestWorkflowEnvironment> {
  const { temporalCli } = readToolPaths();
  return TestWorkflowEnvironment.createLocal({
    server: {
      ...(temporalCli ? { executable: { type: 'existing-path', path: temporalCli } } : {}),
      searchAttributes: [...SEARCH_ATTRIBUTES],
      // The dynamic config npm start runs with: the event and transition counts tests assert are its.
      extraArgs: ['--log-level', 'error', ...dynamicConfigArgs(DEV_DYNAMIC_CONFIG)],
    },
  });
}

let bundle: Promise<WorkflowBundle> | undefined;
/** Workflow code bundled once per test file and reused by every worker in it. */
export function workflowBundle(): Promise<WorkflowBundle> {
  bundle ??= bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows'), logger: quietBundlerLogger });
  return bundle;
}
