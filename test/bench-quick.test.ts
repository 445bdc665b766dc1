import { runBench } from '../bench/run';

/**
 * The bench harness itself, not tether's speed: the quick churn run (its own dev server, a worker
 * in a child process, the trace against SessionClient) completes, and every session it created is
 * destroyed and leaves nothing behind. No assertion on any timing.
 */
describe('bench harness (npm run bench -- churn --quick)', () => {
  it('completes, and every session it created is destroyed and clean', async () => {
    const { report, file } = await runBench({ scenarios: ['churn'], quick: true, seed: 7, out: null, progress: false });
    expect(file).toBeNull();
    expect(report.results).toHaveLength(1);
    const churn = report.results[0]!;
    expect(churn.error).toBeUndefined();
    expect(churn.completed).toBe(true);
    expect(churn.audit).not.toBeNull();
    expect(churn.audit!.problems).toEqual([]);
    expect(churn.audit!.sessions).toBeGreaterThan(0);
    expect(churn.audit!.destroyed).toBe(churn.audit!.sessions);
    expect(churn.audit!.clean).toBe(true);
    // Every figure the table shows is present with its unit (values are not checked).
    const keys = churn.figures.map((f) => f.key);
    expect(keys).toEqual(
      expect.arrayContaining(['churn.lifecycles_per_s', 'churn.lateness_p50', 'churn.lateness_p99', 'churn.sessions']),
    );
    for (const f of churn.figures) expect(f.unit).not.toBe('');
  }, 240_000);
});
