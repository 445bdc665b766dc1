/**
 * `npm run chaos [-- --quick]`: see chaos/harness.ts. Prints the summary, writes
 * chaos/results/chaos-<run>.json, exits 1 on any invariant violation.
 */
import { runChaos } from './harness';
import { parseArgs } from './options';
import { formatReport } from './report';

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  const aborter = new AbortController();
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    interrupts++;
    if (interrupts > 1) {
      process.stderr.write(`${sig} again: exiting now (services may need: npm run setup)\n`);
      process.exit(130);
    }
    process.stderr.write(`${sig}: stopping; restoring services and stopping children first\n`);
    aborter.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const report = await runChaos(opts, aborter.signal);
  process.stdout.write(`${formatReport(report)}\n`);
  return report.pass ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`chaos: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(2);
  },
);
