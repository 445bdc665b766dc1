/**
 * Brings up everything `npm test`, `npm start` and `npm run bench` need on a fresh machine: the
 * Temporal tools (cached outside the clone), Redis, Postgres and RabbitMQ at the configured
 * addresses, and the schema. Quick when all is present.
 */
import { ensureEnvironment } from '../src/dev/environment';
import { loadConfig } from '../src/config';

const started = Date.now();
// --browser: also Debian's Chromium, for the Web UI test.
ensureEnvironment(loadConfig(process.env), { browser: process.argv.includes('--browser') })
  .then(() => console.error(`[setup] ready in ${((Date.now() - started) / 1000).toFixed(1)} s`))
  .catch((err: unknown) => {
    console.error(`[setup] failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
