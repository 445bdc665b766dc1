/**
 * Records the workflow histories test/replay.test.ts replays (test/fixtures/histories/*.pb).
 * Run it when a workflow change is meant to be incompatible with running workflows (and ship that
 * change behind `patched()` or a new workflow type instead), never to make the replay test pass.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Runtime, DefaultLogger } from '@temporalio/worker';
import { recordHistories } from '../test/helpers/histories';
import { startStack, testConfig } from '../test/helpers/stack';
import { timeSkippingEnv } from '../test/helpers/temporal';

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const dir = path.resolve(__dirname, '../test/fixtures/histories');
  const env = await timeSkippingEnv();
  const stack = await startStack(env, testConfig({ WS_IDLE_TIMEOUT_MS: '30000' }));
  try {
    mkdirSync(dir, { recursive: true });
    for (const h of await recordHistories(env, stack)) {
      writeFileSync(path.join(dir, `${h.name}.pb`), h.bytes);
      process.stdout.write(`${h.name}.pb (${h.workflowId}, ${h.bytes.length} bytes)\n`);
    }
  } finally {
    await stack.stop();
    await env.teardown();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
