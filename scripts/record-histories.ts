/**
 * Records the workflow histories of this release (test/fixtures/histories/{major.minor}/*.pb) that
 * test/replay.test.ts replays, in this release and every later one. It never overwrites a file: a
 * release's histories are what its workflows left running. A change that cannot replay them ships
 * behind `patched()` or a new input version (as 0.2's session workflow did) and a new release.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Runtime, DefaultLogger } from '@temporalio/worker';
import { recordHistories } from '../test/helpers/histories';
import { startStack, testConfig } from '../test/helpers/stack';
import { timeSkippingEnv } from '../test/helpers/temporal';

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const { version } = JSON.parse(readFileSync(path.resolve(__dirname, '../package.json'), 'utf8')) as {
    version: string;
  };
  const dir = path.resolve(__dirname, '../test/fixtures/histories', version.split('.').slice(0, 2).join('.'));
  const env = await timeSkippingEnv();
  const stack = await startStack(env, testConfig({ WS_IDLE_TIMEOUT_MS: '30000' }));
  try {
    mkdirSync(dir, { recursive: true });
    for (const h of await recordHistories(env, stack)) {
      const file = path.join(dir, `${h.name}.pb`);
      if (existsSync(file)) {
        process.stdout.write(`${path.relative(process.cwd(), file)} kept (recorded before)\n`);
        continue;
      }
      writeFileSync(file, h.bytes);
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
