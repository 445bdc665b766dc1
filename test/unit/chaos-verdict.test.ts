import { failureMessage } from '../../chaos/report';
import { parseArgs } from '../../chaos/options';
import { missingEvidence, requiredInvariants, type Observations } from '../../chaos/verdict';

/**
 * The failure suite cannot pass on nothing (issue 12): the verdict on the observations of a run
 * with the worker never started, and of one with zero sessions, fails naming what was not observed.
 * Pure and fast: the real runs are `npm run chaos -- --quick --no-worker` and `-- --quick --sessions 0`.
 */

const ALL_INVARIANTS = [
  'destroyed-clean',
  'destroyed-db',
  'rejected-clean',
  'final-state',
  'live-session-kept',
  'users-consistent',
  'user-broadcast-per-edge',
  'presence-leave-broadcast',
  'no-workflow-failed',
  'no-workflow-task-failed',
  'no-workflow-stuck',
  'malformed-rejected-typed',
  'raw-signals-dropped',
  'worker-no-crash',
  'scenario-completed',
  'recovered',
  'fault-injected',
  'gateway-lost-destroyed',
  'gateway-moved-kept',
  'run-completed',
];

/** A healthy quick run, in round numbers. */
function healthy(): Observations {
  return {
    harnessRan: true,
    workerStarts: 3,
    trackedSessions: 300,
    trackedWithWorkflow: 290,
    trackedWithUser: 60,
    destroyedWithPresence: 200,
    rejected: 20,
    sessionExecutions: 320,
    executions: 400,
    userEdges: 40,
    userEdgeBroadcasts: 40,
    presenceLeaves: 250,
    broadcastsRead: 600,
    clientFuzzPlanned: 300,
    clientFuzzCalls: 300,
    rawFuzzPlanned: 120,
    rawSignalsSent: 110,
    faultsPlanned: 7,
    faultsRun: 7,
    gatewayKillsPlanned: 1,
    gatewayLostSessions: 9,
    gatewayMovedSessions: 7,
    checked: Object.fromEntries(ALL_INVARIANTS.map((n) => [n, 10])),
  };
}

describe('chaos verdict: evidence required', () => {
  it('a healthy run has all its evidence', () => {
    expect(missingEvidence(healthy())).toEqual([]);
  });

  it('a run with the worker never started fails, naming what was not observed', () => {
    // What `--no-worker` observes: sessions tracked and their workflows listed (the server started
    // them), but nothing ran them: no edge, no broadcast, no drop, no worker to check.
    const o: Observations = {
      ...healthy(),
      workerStarts: 0,
      userEdges: 0,
      userEdgeBroadcasts: 0,
      presenceLeaves: 0,
      broadcastsRead: 0,
      faultsRun: 7,
      checked: { ...healthy().checked, 'worker-no-crash': 0 },
    };
    const missing = missingEvidence(o);
    expect(missing).toEqual(
      expect.arrayContaining([
        'no worker process ran (worker starts: 0)',
        'no user edge observed (user edges: 0, for 60 sessions with a user)',
        'no user edge broadcast read from RabbitMQ (connect/disconnect broadcasts: 0)',
        'no presence leave broadcast read (for 200 destroyed sessions in a presence room)',
        'no broadcast read from RabbitMQ (broadcasts: 0)',
        'invariant worker-no-crash checked nothing (checked: 0)',
      ]),
    );
  });

  it('a run with zero sessions fails, naming what was not observed', () => {
    // `--sessions 0`: no churn, no long-lived session, no fault; the fuzzers have no target.
    const o: Observations = {
      ...healthy(),
      trackedSessions: 0,
      trackedWithWorkflow: 0,
      trackedWithUser: 0,
      destroyedWithPresence: 0,
      rejected: 0,
      sessionExecutions: 0,
      executions: 0,
      userEdges: 0,
      userEdgeBroadcasts: 0,
      presenceLeaves: 0,
      broadcastsRead: 0,
      rawSignalsSent: 0,
      faultsPlanned: 0,
      faultsRun: 0,
      gatewayKillsPlanned: 0,
      gatewayLostSessions: 0,
      gatewayMovedSessions: 0,
      checked: {
        ...Object.fromEntries(ALL_INVARIANTS.map((n) => [n, 0])),
        'malformed-rejected-typed': 300,
        'worker-no-crash': 1,
        'run-completed': 1,
      },
    };
    const missing = missingEvidence(o);
    expect(missing).toEqual([
      'no session was tracked (tracked sessions: 0)',
      'session workflow executions listed (0) fewer than tracked sessions that started one (0)',
      'no raw malformed signal sent (raw signals sent: 0)',
      'invariant final-state checked nothing (checked: 0)',
      'invariant no-workflow-failed checked nothing (checked: 0)',
      'invariant no-workflow-task-failed checked nothing (checked: 0)',
      'invariant no-workflow-stuck checked nothing (checked: 0)',
      'invariant raw-signals-dropped checked nothing (checked: 0)',
    ]);
  });

  it('entirely empty observations (the harness died first) fail on everything', () => {
    const empty: Observations = {
      harnessRan: false,
      workerStarts: 0,
      trackedSessions: 0,
      trackedWithWorkflow: 0,
      trackedWithUser: 0,
      destroyedWithPresence: 0,
      rejected: 0,
      sessionExecutions: null,
      executions: null,
      userEdges: 0,
      userEdgeBroadcasts: 0,
      presenceLeaves: 0,
      broadcastsRead: 0,
      clientFuzzPlanned: 300,
      clientFuzzCalls: 0,
      rawFuzzPlanned: 120,
      rawSignalsSent: 0,
      faultsPlanned: 7,
      faultsRun: 0,
      gatewayKillsPlanned: 1,
      gatewayLostSessions: 0,
      gatewayMovedSessions: 0,
      checked: {},
    };
    const missing = missingEvidence(empty);
    for (const want of [
      'the harness never reached the invariant checks',
      'no worker process ran (worker starts: 0)',
      'no session was tracked (tracked sessions: 0)',
      'workflow executions were never listed',
      'no malformed client call made (client calls: 0)',
      'no raw malformed signal sent (raw signals sent: 0)',
      'only 0 of 7 faults ran',
      'no session held by a killed gateway was left to its lease (gateway-lost sessions: 0)',
      'invariant gateway-lost-destroyed checked nothing (checked: 0)',
      'invariant run-completed checked nothing (checked: 0)',
    ])
      expect(missing).toContain(want);
  });

  it('fewer session executions listed than tracked sessions that started one fails', () => {
    expect(missingEvidence({ ...healthy(), sessionExecutions: 289 })).toEqual([
      'session workflow executions listed (289) fewer than tracked sessions that started one (290)',
    ]);
    expect(missingEvidence({ ...healthy(), sessionExecutions: 290 })).toEqual([]);
  });

  it('a gateway-kill fault needs sessions left to the lease and sessions reconnected, both checked', () => {
    expect(missingEvidence({ ...healthy(), gatewayLostSessions: 0 })).toEqual([
      'no session held by a killed gateway was left to its lease (gateway-lost sessions: 0)',
    ]);
    expect(missingEvidence({ ...healthy(), gatewayMovedSessions: 0 })).toEqual([
      'no session of a killed gateway reconnected through its new incarnation (moved sessions: 0)',
    ]);
    const o = healthy();
    expect(requiredInvariants(o)).toEqual(expect.arrayContaining(['gateway-lost-destroyed', 'gateway-moved-kept']));
    expect(requiredInvariants({ ...o, gatewayKillsPlanned: 0 })).not.toContain('gateway-lost-destroyed');
  });

  it('edges without broadcasts, or broadcasts without edges, fail', () => {
    expect(missingEvidence({ ...healthy(), userEdgeBroadcasts: 0 })).toEqual([
      'no user edge broadcast read from RabbitMQ (connect/disconnect broadcasts: 0)',
    ]);
    expect(missingEvidence({ ...healthy(), userEdges: 0 })).toEqual([
      'no user edge observed (user edges: 0, for 60 sessions with a user)',
    ]);
  });

  it('every required invariant that checked nothing is named', () => {
    const o = healthy();
    for (const name of requiredInvariants(o)) {
      expect(missingEvidence({ ...o, checked: { ...o.checked, [name]: 0 } })).toEqual([
        `invariant ${name} checked nothing (checked: 0)`,
      ]);
    }
    expect(requiredInvariants(o)).toEqual(
      expect.arrayContaining(['presence-leave-broadcast', 'user-broadcast-per-edge', 'raw-signals-dropped']),
    );
  });
});

describe('chaos options for the empty runs', () => {
  it('--sessions 0: no session at all unless asked for', () => {
    const o = parseArgs(['--quick', '--sessions', '0']);
    expect([o.sessions, o.longLived, o.faults, o.noWorker]).toEqual([0, 0, [], false]);
    expect(parseArgs(['--sessions', '0', '--long-lived', '2']).longLived).toBe(2);
  });
  it('--no-worker takes no value', () => {
    const o = parseArgs(['--no-worker', '--quick']);
    expect(o.noWorker).toBe(true);
    expect(o.mode).toBe('quick');
    expect(parseArgs(['--quick']).noWorker).toBe(false);
  });
});

describe('chaos report', () => {
  it('a failing run ends with one line naming what was not observed', () => {
    expect(
      failureMessage({
        unobserved: ['no worker process ran (worker starts: 0)', 'no broadcast read from RabbitMQ (broadcasts: 0)'],
      }),
    ).toBe(
      'FAIL: not observed: no worker process ran (worker starts: 0); no broadcast read from RabbitMQ (broadcasts: 0)',
    );
  });
});
