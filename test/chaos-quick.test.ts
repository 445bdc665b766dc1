import path from 'node:path';
import { runChaos } from '../chaos/harness';
import { FAULT_KINDS, defaults } from '../chaos/options';
import { formatReport } from '../chaos/report';

/**
 * The short failure suite (`npm run chaos -- --quick`): a few hundred sessions while each fault
 * kind is injected once (worker SIGKILL, also in the middle of a destroy; Redis, Postgres and
 * RabbitMQ each stopped and started; the Temporal dev server killed and restarted on its database;
 * a gateway process holding sessions killed without releasing its lease, a new incarnation
 * reconnecting some of them), plus fuzzed client calls and raw signals. The invariant checker must find nothing.
 */
describe('failure suite, short', () => {
  it(
    'every fault kind once over a few hundred sessions leaves zero invariant violations',
    async () => {
      const lines: string[] = [];
      const opts = {
        ...defaults('quick'),
        seed: 20261130,
        resultsDir: path.join(__dirname, '../test-results'),
        log: (line: string) => lines.push(line),
      };
      const report = await runChaos(opts);
      const summary = formatReport(report);
      if (!report.pass) process.stderr.write(`${summary}\n${lines.slice(-40).join('\n')}\n`);
      expect(report.violations).toEqual([]);
      expect(report.pass).toBe(true);
      for (const kind of FAULT_KINDS) expect(report.faultsByKind[kind]?.count).toBeGreaterThanOrEqual(1);
      expect(report.sessions.total).toBeGreaterThanOrEqual(300);
      expect(report.malformed.client?.calls ?? 0).toBeGreaterThan(0);
      expect(report.malformed.client?.rejectedTyped).toBe(report.malformed.client?.calls);
      const kill = report.faults.find((f) => f.kind === 'gateway-kill');
      expect(kill?.gateway?.lost).toBeGreaterThan(0);
      expect(kill?.gateway?.moved).toBeGreaterThan(0);
    },
    16 * 60_000,
  );
});
