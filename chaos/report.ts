import type { ChaosContext, Violation } from './context';
import type { HistoryStats } from './invariants';
import type { ClientFuzzResult, RawFuzzResult } from './malformed';
import type { ChaosOptions, FaultKind } from './options';
import { textTable } from '../harness/text-table';
import { missingEvidence, requiredInvariants, type Observations } from './verdict';

export interface FaultRecord {
  kind: FaultKind;
  at: number;
  downMs: number;
  restoredAt: number | null;
  pendingDestroysAtFault: number;
  detail: string;
  victim?: string;
  /** gateway-kill: sessions left to the lease, reconnected, and kill → last lost session destroyed. */
  gateway?: { lost: number; moved: number; allDestroyedMs: number | null; lastRenewalAt: number };
  /** A new session effective (marker + row) this long after the restore. */
  probeMs: number | null;
  /** Destroys that fell due before the restore all done this long after it. */
  drainMs: number | null;
  backlog: number;
}

export const INVARIANTS: Record<string, string> = {
  'destroyed-clean': 'destroyed: no connection:{cid}:* key, presence member/index entry, heartbeat score or marker',
  'destroyed-db': 'destroyed: sessions.disconnectedAt set; one connect and one disconnect row',
  'rejected-clean': 'rejected (unknown app): nothing written anywhere',
  'final-state': 'every session workflow ended destroyed',
  'live-session-kept': 'live: workflow connected on the current socket, all Redis state, user online',
  'late-signals-harmless': 'a pong after the destroy resurrects nothing',
  'ownership-enforced': 'a live connectionId cannot be claimed by another uid/app',
  'users-consistent': 'users: Redis and authentication_users agree (offline at the end)',
  'user-broadcast-per-edge':
    'one connect and one disconnect broadcast per user edge (a copy with the same messageId only across a worker crash)',
  'presence-leave-broadcast':
    'a presence leave broadcast for every room a destroyed session was in, one per presence lifetime (a duplicate leave is a violation, but for the copy with the same messageId across a worker crash or a service outage)',
  'no-workflow-failed': 'no workflow failed, terminated or timed out',
  'no-workflow-task-failed': 'no WorkflowTaskFailed in any history',
  'no-workflow-stuck': 'nothing left running after the settle period',
  'malformed-rejected-typed': 'every malformed client call: InvalidSessionInputError naming the field',
  'raw-signals-dropped': 'every malformed raw signal dropped and counted by the workflow',
  'worker-no-crash': 'the worker never died on its own',
  'scenario-completed': 'every scenario script ran to its end',
  recovered: 'the system recovered from every fault within 120 s',
  'fault-injected': 'every fault could be injected',
  'gateway-lost-destroyed':
    'gateway-kill: every session only the killed incarnation held closed as gateway-lost at its last renewal and destroyed (marker, score, keys, presence, disconnectedAt) within 4 × idle + 10 s of the kill',
  'gateway-moved-kept':
    'gateway-kill: every session reconnected through the new incarnation live, held by it and in its index, marker present',
  'run-completed': 'the harness ran to its end',
};

export interface ChaosReport {
  runId: string;
  mode: string;
  seed: number;
  startedAt: string;
  durationMs: number;
  pass: boolean;
  file?: string;
  options: Omit<ChaosOptions, 'log'>;
  sessions: {
    total: number;
    churnLaunched: number;
    byScenario: Record<string, number>;
    byExpectation: Record<string, number>;
    lifetimeMs: { p50: number | null; p95: number | null; max: number | null };
  };
  faults: FaultRecord[];
  faultsByKind: Record<
    string,
    { count: number; downMsTotal: number; maxProbeMs: number | null; maxDrainMs: number | null }
  >;
  /** When this run held each service down (other tests on the machine were disturbed then). */
  outages: { kind: string; from: string; to: string }[];
  malformed: { client?: ClientFuzzResult; raw?: RawFuzzResult; ownershipRefused: number };
  temporal?: HistoryStats & { stillRunningAfterSettle: number };
  users: {
    seeded: number;
    edges: number;
    connectBroadcasts: number;
    disconnectBroadcasts: number;
    /** Edge messages sent a second time (same messageId) because a worker died between confirm and progress write. */
    repeatedAcrossCrash: number;
  };
  broadcastsRead: number;
  worker: { starts: number; exits: number };
  invariants: { name: string; description: string; checked: number; violations: number; required: boolean }[];
  /** What the run should have observed and did not: any line fails the run (see chaos/verdict.ts). */
  unobserved: string[];
  observations: Observations;
  violationCount: number;
  violations: Violation[];
  counters: Record<string, number>;
  phasesMs: Record<string, number>;
  notes: string[];
  logs: Record<string, string>;
}

export function buildReport(a: {
  runId: string;
  opts: ChaosOptions;
  started: number;
  ctx: ChaosContext | undefined;
  faults: FaultRecord[];
  clientFuzz?: ClientFuzzResult;
  rawFuzz?: RawFuzzResult;
  history?: HistoryStats;
  userTotals: { edges: number; connects: number; disconnects: number };
  broadcasts: number;
  churnLaunched: number;
  stillRunning: number;
  phases: Record<string, number>;
  notes: string[];
  outagesRun: { kind: string; from: string; to: string }[];
  workerStarts: number;
  workerExits: number;
  logs: Record<string, string>;
}): ChaosReport {
  const tracked = a.ctx?.tracked ?? [];
  const violations = a.ctx?.violations ?? [];
  const counters = a.ctx?.counters ?? {};
  const byScenario: Record<string, number> = {};
  const byExpectation: Record<string, number> = {};
  for (const t of tracked) {
    byScenario[t.scenario] = (byScenario[t.scenario] ?? 0) + 1;
    byExpectation[t.expect] = (byExpectation[t.expect] ?? 0) + 1;
  }
  const lifetimes = tracked.filter((t) => t.finishedAt).map((t) => t.finishedAt! - t.startedAt);
  const faultsByKind: ChaosReport['faultsByKind'] = {};
  for (const f of a.faults) {
    const k = (faultsByKind[f.kind] ??= { count: 0, downMsTotal: 0, maxProbeMs: null, maxDrainMs: null });
    k.count++;
    k.downMsTotal += f.downMs;
    if (f.probeMs !== null) k.maxProbeMs = Math.max(k.maxProbeMs ?? 0, f.probeMs);
    if (f.drainMs !== null) k.maxDrainMs = Math.max(k.maxDrainMs ?? 0, f.drainMs);
  }
  const invNames = new Set([...Object.keys(INVARIANTS), ...violations.map((v) => v.invariant)]);
  const checked = Object.fromEntries([...invNames].map((name) => [name, counters[`checked:${name}`] ?? 0]));
  const refusedByClient = (t: (typeof tracked)[number]) => t.notes.some((n) => n.startsWith('refused by the client'));
  const observations: Observations = {
    harnessRan: (counters['checked:run-completed'] ?? 0) > 0,
    workerStarts: a.workerStarts,
    trackedSessions: tracked.length,
    trackedWithWorkflow: tracked.filter((t) => !refusedByClient(t)).length,
    trackedWithUser: tracked.filter((t) => t.session.user !== undefined && t.expect !== 'rejected').length,
    destroyedWithPresence: tracked.filter((t) => t.expect === 'destroyed' && t.presenceRooms.length > 0).length,
    rejected: tracked.filter((t) => t.expect === 'rejected').length,
    sessionExecutions: a.history ? (a.history.byType.sessionWorkflow ?? 0) : null,
    executions: a.history ? a.history.executions : null,
    userEdges: a.userTotals.edges,
    userEdgeBroadcasts: a.userTotals.connects + a.userTotals.disconnects,
    presenceLeaves: counters['presence-leaves'] ?? 0,
    broadcastsRead: a.broadcasts,
    clientFuzzPlanned: a.opts.clientFuzzRuns,
    clientFuzzCalls: a.clientFuzz?.calls ?? 0,
    rawFuzzPlanned: a.opts.rawFuzzRuns,
    rawSignalsSent: a.rawFuzz?.sent ?? 0,
    faultsPlanned: a.opts.faults.length,
    faultsRun: a.faults.length,
    gatewayKillsPlanned: a.opts.faults.filter((f) => f === 'gateway-kill').length,
    gatewayLostSessions: a.faults.reduce((n, f) => n + (f.gateway?.lost ?? 0), 0),
    gatewayMovedSessions: a.faults.reduce((n, f) => n + (f.gateway?.moved ?? 0), 0),
    checked,
  };
  const required = new Set(requiredInvariants(observations));
  const unobserved = missingEvidence(observations);
  const invariants = [...invNames].map((name) => ({
    name,
    description: INVARIANTS[name] ?? name,
    checked: checked[name] ?? 0,
    violations: violations.filter((v) => v.invariant === name).length,
    required: required.has(name),
  }));
  const { log: _log, ...options } = a.opts;
  void _log;
  return {
    runId: a.runId,
    mode: a.opts.mode,
    seed: a.opts.seed,
    startedAt: new Date(a.started).toISOString(),
    durationMs: Date.now() - a.started,
    pass: violations.length === 0 && a.ctx !== undefined && unobserved.length === 0,
    options,
    sessions: {
      total: tracked.length,
      churnLaunched: a.churnLaunched,
      byScenario,
      byExpectation,
      lifetimeMs: { p50: percentile(lifetimes, 50), p95: percentile(lifetimes, 95), max: percentile(lifetimes, 100) },
    },
    faults: a.faults,
    faultsByKind,
    outages: a.outagesRun,
    malformed: { client: a.clientFuzz, raw: a.rawFuzz, ownershipRefused: counters['ownership:refused'] ?? 0 },
    temporal: a.history ? { ...a.history, stillRunningAfterSettle: a.stillRunning } : undefined,
    users: {
      seeded: a.ctx?.users.length ?? 0,
      edges: a.userTotals.edges,
      connectBroadcasts: a.userTotals.connects,
      disconnectBroadcasts: a.userTotals.disconnects,
      repeatedAcrossCrash: a.ctx?.counters['broadcast-repeated-across-a-worker-crash'] ?? 0,
    },
    broadcastsRead: a.broadcasts,
    worker: { starts: a.workerStarts, exits: a.workerExits },
    invariants,
    unobserved,
    observations,
    violationCount: violations.length,
    violations: violations.slice(0, 500),
    counters,
    phasesMs: a.phases,
    notes: a.notes,
    logs: a.logs,
  };
}

/** First column the subject, the others numbers. */
function table(head: string[], rows: (string | number | null)[][]): string {
  const cells = rows.map((r) => r.map((c) => (c === null ? '—' : String(c))));
  return textTable(head, cells, (i) => i > 0);
}

/** Nearest-rank percentile (p in 0..100) of the values; null when empty. */
function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const s = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : `${(ms / 1000).toFixed(1)} s`);

export function formatReport(r: ChaosReport): string {
  const out: string[] = [];
  out.push(
    `tether chaos ${r.mode} run ${r.runId} (seed ${r.seed}): ${r.pass ? 'PASS' : 'FAIL'}, ${r.violationCount} violations, ${r.unobserved.length} things not observed, ${s(r.durationMs)}`,
  );
  if (r.unobserved.length) out.push(failureMessage(r));
  out.push('');
  out.push(
    table(
      ['sessions', 'count'],
      [
        ['total', r.sessions.total],
        ...Object.entries(r.sessions.byScenario).sort((x, y) => y[1] - x[1]),
        [
          'expected destroyed / live / rejected',
          `${r.sessions.byExpectation.destroyed ?? 0} / ${r.sessions.byExpectation.live ?? 0} / ${r.sessions.byExpectation.rejected ?? 0}`,
        ],
      ],
    ),
  );
  out.push('');
  out.push(
    table(
      ['fault', 'count', 'down total', 'recover: new session', 'recover: overdue destroys'],
      Object.entries(r.faultsByKind).map(([k, v]) => [k, v.count, s(v.downMsTotal), s(v.maxProbeMs), s(v.maxDrainMs)]),
    ),
  );
  out.push('');
  const cf = r.malformed.client;
  const rf = r.malformed.raw;
  out.push(
    table(
      ['malformed input', 'sent', 'rejected / dropped'],
      [
        ['client calls (typed error naming the field)', cf?.calls ?? 0, cf?.rejectedTyped ?? 0],
        ['raw signals around the client', rf?.sent ?? 0, rf?.observedDrops ?? 0],
        ['connection takeovers (ConnectionOwnershipError)', r.malformed.ownershipRefused, r.malformed.ownershipRefused],
      ],
    ),
  );
  out.push('');
  if (r.temporal) {
    out.push(
      `temporal: ${r.temporal.executions} runs, ${r.temporal.historyEvents} history events (max ${r.temporal.maxHistoryLength}), ` +
        `workflow tasks failed ${r.temporal.workflowTaskFailed} (benign: ${JSON.stringify(r.temporal.workflowTaskFailedBenign)}), ` +
        `timed out ${r.temporal.workflowTaskTimedOut}; activity retries ${JSON.stringify(r.temporal.activityRetriesByType)}`,
    );
  }
  out.push(
    `users: ${r.users.seeded} seeded, ${r.users.edges} edges, ${r.users.connectBroadcasts} connect / ${r.users.disconnectBroadcasts} disconnect broadcasts (${r.users.repeatedAcrossCrash} repeated across a worker crash); worker started ${r.worker.starts}×`,
  );
  out.push('');
  out.push(
    // Every invariant, also those that checked nothing: a 0 in a required row fails the run.
    table(
      ['invariant', 'checked', 'violations', ''],
      r.invariants.map((i) => [
        i.name,
        i.checked,
        i.violations,
        i.checked > 0 ? '' : i.required ? 'NOTHING CHECKED (required)' : 'nothing checked (not exercised)',
      ]),
    ),
  );
  if (r.violations.length) {
    out.push('');
    out.push('violations (first 30):');
    for (const v of r.violations.slice(0, 30)) out.push(`  ${v.invariant}  ${v.subject}: ${v.detail}`);
  }
  if (r.outages.length) {
    out.push('');
    out.push(`service outages: ${r.outages.map((o) => `${o.kind} ${o.from}…${o.to}`).join('; ')}`);
  }
  for (const n of r.notes) out.push(`note: ${n}`);
  if (r.file) out.push(`report: ${r.file}`);
  return out.join('\n');
}

/** The line a failing run ends with when evidence is missing: names everything not observed. */
export function failureMessage(r: Pick<ChaosReport, 'unobserved'>): string {
  return `FAIL: not observed: ${r.unobserved.join('; ')}`;
}
