/**
 * The failure suite's verdict needs evidence, not only the absence of violations: invariants loop
 * over what was observed, so a run that observed nothing (no worker, no session, no broadcast read)
 * would otherwise pass. Pure: `chaos/verdict.ts` is unit-tested on empty observations
 * (test/unit/chaos-verdict.test.ts).
 */

/** What the run saw, in numbers (everything the invariants iterate over). */
export interface Observations {
  /** Did the harness reach the invariant checks at all. */
  harnessRan: boolean;
  workerStarts: number;
  /** Sessions the driver tracked, and of those the ones that must have a session workflow. */
  trackedSessions: number;
  trackedWithWorkflow: number;
  /** Tracked sessions with an authenticated user (each makes at least one user edge). */
  trackedWithUser: number;
  /** Tracked sessions expected destroyed that were in at least one presence room. */
  destroyedWithPresence: number;
  /** Tracked sessions expected rejected (unknown app). */
  rejected: number;
  /** Session workflow executions listed by visibility (null: the listing never ran). */
  sessionExecutions: number | null;
  executions: number | null;
  userEdges: number;
  userEdgeBroadcasts: number;
  presenceLeaves: number;
  broadcastsRead: number;
  clientFuzzPlanned: number;
  clientFuzzCalls: number;
  rawFuzzPlanned: number;
  rawSignalsSent: number;
  faultsPlanned: number;
  faultsRun: number;
  /** `gateway-kill` faults planned, and sessions their killed gateways held that were left to the lease / reconnected. */
  gatewayKillsPlanned: number;
  gatewayLostSessions: number;
  gatewayMovedSessions: number;
  /** `checked` of every invariant of the report. */
  checked: Record<string, number>;
}

/** The invariants that must have checked something in this run, given what it was set up to do. */
export function requiredInvariants(o: Observations): string[] {
  const req = ['final-state', 'no-workflow-failed', 'no-workflow-task-failed', 'no-workflow-stuck', 'run-completed'];
  req.push('worker-no-crash');
  if (o.trackedWithWorkflow > o.rejected) req.push('destroyed-clean', 'destroyed-db', 'scenario-completed');
  if (o.destroyedWithPresence > 0) req.push('presence-leave-broadcast');
  if (o.rejected > 0) req.push('rejected-clean');
  if (o.trackedWithUser > 0) req.push('users-consistent', 'user-broadcast-per-edge');
  if (o.clientFuzzPlanned > 0) req.push('malformed-rejected-typed');
  if (o.rawFuzzPlanned > 0) req.push('raw-signals-dropped');
  if (o.faultsPlanned > 0) req.push('fault-injected', 'recovered');
  if (o.gatewayKillsPlanned > 0) req.push('gateway-lost-destroyed', 'gateway-moved-kept');
  return req;
}

/**
 * What should have been observed and was not, one line each (empty: the evidence is there). Every
 * line names the quantity and the number seen.
 */
export function missingEvidence(o: Observations): string[] {
  const out: string[] = [];
  if (!o.harnessRan) out.push('the harness never reached the invariant checks');
  if (o.workerStarts === 0) out.push('no worker process ran (worker starts: 0)');
  if (o.trackedSessions === 0) out.push('no session was tracked (tracked sessions: 0)');
  if (o.sessionExecutions === null) out.push('workflow executions were never listed');
  else if (o.sessionExecutions < o.trackedWithWorkflow || o.sessionExecutions === 0)
    out.push(
      `session workflow executions listed (${o.sessionExecutions}) fewer than tracked sessions that started one (${o.trackedWithWorkflow})`,
    );
  if (o.trackedWithUser > 0 && o.userEdges === 0)
    out.push(`no user edge observed (user edges: 0, for ${o.trackedWithUser} sessions with a user)`);
  if (o.trackedWithUser > 0 && o.userEdgeBroadcasts === 0)
    out.push('no user edge broadcast read from RabbitMQ (connect/disconnect broadcasts: 0)');
  if (o.destroyedWithPresence > 0 && o.presenceLeaves === 0)
    out.push(`no presence leave broadcast read (for ${o.destroyedWithPresence} destroyed sessions in a presence room)`);
  if (o.trackedSessions > 0 && o.broadcastsRead === 0) out.push('no broadcast read from RabbitMQ (broadcasts: 0)');
  if (o.clientFuzzPlanned > 0 && o.clientFuzzCalls === 0) out.push('no malformed client call made (client calls: 0)');
  if (o.rawFuzzPlanned > 0 && o.rawSignalsSent === 0) out.push('no raw malformed signal sent (raw signals sent: 0)');
  if (o.faultsRun < o.faultsPlanned) out.push(`only ${o.faultsRun} of ${o.faultsPlanned} faults ran`);
  if (o.gatewayKillsPlanned > 0 && o.gatewayLostSessions === 0)
    out.push('no session held by a killed gateway was left to its lease (gateway-lost sessions: 0)');
  if (o.gatewayKillsPlanned > 0 && o.gatewayMovedSessions === 0)
    out.push('no session of a killed gateway reconnected through its new incarnation (moved sessions: 0)');
  for (const name of requiredInvariants(o))
    if ((o.checked[name] ?? 0) === 0) out.push(`invariant ${name} checked nothing (checked: 0)`);
  return out;
}
