import { WorkflowNotFoundError, type WorkflowExecutionInfo } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { HEARTBEAT_KEY, keys } from '../src/stores/redis/keys';
import type { SessionView as SessionState } from '../src/contracts/session';
import type { UserState } from '../src/contracts/user';
import type { Broadcast } from './broadcasts';
import { count, violate, type ChaosContext, type Tracked } from './context';
import { describeStatus, queryState } from './driver';
import { sessionTrace } from './trace';
import { mapLimit } from '../harness/map-limit';
import { sleep } from '../harness/sleep';
import { errorText } from './error-text';

const EventType = temporal.api.enums.v1.EventType;
const WftCause = temporal.api.enums.v1.WorkflowTaskFailedCause;

/**
 * The suite's invariant checker. Checks that depend on effects still in flight are polled until they
 * hold or a deadline passes (an effect retried through an outage lands late, not never); what still
 * fails at the deadline is a violation, with what was seen.
 */

// ---------------------------------------------------------------------------------------------
// Live sessions: every piece of state still there, the workflow settled on the current socket.

interface Problems {
  /** Not there yet (an effect pending): keep polling. */
  unsettled: string[];
  /** Wrong. */
  wrong: string[];
}

async function liveProblems(ctx: ChaosContext, t: Tracked): Promise<Problems> {
  const p: Problems = { unsettled: [], wrong: [] };
  const cid = t.session.connectionId;
  const d = await describeStatus(ctx, cid);
  if (!d) {
    p.wrong.push('no workflow');
    return p;
  }
  if (d.status !== 'RUNNING') p.wrong.push(`workflow ${d.status}`);
  if (d.pendingActivities > 0) p.unsettled.push(`${d.pendingActivities} activities pending`);
  const st = await queryState(ctx, cid);
  if (st.status !== 'connected') p.wrong.push(`state ${st.status}`);
  if (st.socketId !== t.session.socketId)
    p.wrong.push(`socket ${st.socketId} is not the current ${t.session.socketId}`);
  // Held by the gateway incarnation that connected it, and in that incarnation's index (so that its
  // renewals keep refreshing the marker: no heartbeat signal is sent for that).
  const holder = (t.via ?? ctx.sessions).holder;
  const inIndex = await ctx.redis.hexists(keys.gatewayIndex(holder.gatewayId, holder.incarnation), cid);
  if (st.holder?.gatewayId !== holder.gatewayId || st.holder.incarnation !== holder.incarnation)
    p.unsettled.push(`held by ${JSON.stringify(st.holder)}, not ${JSON.stringify(holder)}`);
  if (inIndex !== 1) p.unsettled.push(`not in the index of its gateway incarnation ${holder.incarnation}`);

  const r = ctx.redis.pipeline();
  r.hkeys(keys.rooms(cid));
  for (const room of t.rooms) r.exists(keys.roomSubscriptions(cid, 'subscriptions', room));
  r.hkeys(keys.presenceSets(cid));
  for (const room of t.presenceRooms) {
    r.hexists(keys.presenceMembers(room), cid);
    r.lpos(keys.presenceIndex(room), cid);
  }
  r.hkeys(keys.users(cid));
  for (const target of t.userTargets) r.exists(keys.userSubscriptions(cid, target));
  r.zscore(HEARTBEAT_KEY, cid);
  r.get(keys.active(cid));
  const res = (await r.exec())!.map(([err, v]) => {
    if (err) throw err;
    return v;
  });
  let i = 0;
  const rooms = res[i++] as string[];
  const keepsGatewayKeys = !t.mayHaveBeenDestroyed;
  const keepsPresence = keepsGatewayKeys && !t.mayHaveLostPresence;
  for (const room of t.rooms) {
    const kept = res[i++] === 1;
    if (!keepsGatewayKeys) continue;
    if (!rooms.includes(room)) p.wrong.push(`room ${room} gone from connection rooms`);
    if (!kept) p.wrong.push(`subscriptions of ${room} gone`);
  }
  const sets = res[i++] as string[];
  for (const room of t.presenceRooms) {
    const member = res[i++] === 1;
    const indexed = res[i++] !== null;
    if (!keepsPresence) {
      // Removed or kept, but never half: member, index entry and presence-sets agree.
      if (member !== indexed || member !== sets.includes(room)) p.wrong.push(`presence of ${room} half removed`);
      continue;
    }
    if (!sets.includes(room)) p.wrong.push(`presence-sets lost ${room}`);
    if (!member) p.wrong.push(`not a presence member of ${room}`);
    if (!indexed) p.wrong.push(`not in the presence index of ${room}`);
  }
  const users = res[i++] as string[];
  for (const target of t.userTargets) {
    const kept = res[i++] === 1;
    if (!keepsGatewayKeys) continue;
    if (!users.includes(target)) p.wrong.push(`user subscription index lost ${target}`);
    if (!kept) p.wrong.push(`user subscriptions of ${target} gone`);
  }
  if (res[i++] === null) p.unsettled.push('no heartbeat score');
  const marker = res[i++] as string | null;
  if (marker === null) p.unsettled.push('no active marker');
  else if ((JSON.parse(marker) as { socketId?: string }).socketId !== t.session.socketId)
    p.unsettled.push('active marker of another socket');

  const rows = await ctx.pg.query<{ disconnectedAt: Date | null }>(
    'SELECT "disconnectedAt" FROM sessions WHERE "connectionId" = $1',
    [cid],
  );
  if (rows.rowCount === 0) p.unsettled.push('no sessions row');
  else if (!t.mayHaveBeenDestroyed && rows.rows.some((row) => row.disconnectedAt !== null))
    p.wrong.push('sessions.disconnectedAt set on a connection that was never destroyed');

  const user = t.session.user;
  if (user) {
    const [online, conns] = await Promise.all([
      ctx.redis.hget(keys.usersOnline(t.session.appPid), user.clientId),
      ctx.redis.hexists(keys.clientConnections(t.session.appPid, user.clientId), cid),
    ]);
    if (online === null) p.unsettled.push('user not online in Redis');
    if (conns !== 1) p.unsettled.push('connection missing from the user connections hash');
    const db = await ctx.pg.query<{ isOnline: boolean | null }>(
      'SELECT "isOnline" FROM authentication_users WHERE id = $1',
      [user.id],
    );
    if (db.rows[0]?.isOnline !== true) p.unsettled.push('user not online in the DB');
  }
  return p;
}

/**
 * The session is live and keeps everything: polled until it holds (effects land late under faults,
 * and an unsettled workflow may still be running a destroy), else a violation.
 */
export async function verifyLive(
  ctx: ChaosContext,
  t: Tracked,
  why: string,
  timeoutMs = 90_000,
  invariant = 'live-session-kept',
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  count(ctx, `checked:${invariant}`);
  let last: Problems | undefined;
  let lastError: string | undefined;
  let polls = 0;
  while (!ctx.signal.aborted) {
    polls++;
    try {
      last = await liveProblems(ctx, t);
      lastError = undefined;
      if (last.wrong.length === 0 && last.unsettled.length === 0) {
        if (polls > 1) count(ctx, 'live-check:needed-retries');
        return true;
      }
    } catch (err) {
      lastError = errorText(err);
    }
    if (Date.now() > deadline) break;
    await sleep(500);
  }
  const detail = lastError ?? [...(last?.wrong ?? []), ...(last?.unsettled ?? [])].join('; ');
  violate(
    ctx,
    invariant,
    t.session.connectionId,
    `${t.scenario} (${why}): ${detail}`,
    await sessionTrace(ctx, t.session.connectionId),
  );
  return false;
}

// ---------------------------------------------------------------------------------------------
// Final state of every session, once all runs have closed.

interface RedisPicture {
  connectionKeys: Map<string, string[]>;
  presence: Map<string, string[]>;
}

async function scan(ctx: ChaosContext, match: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await ctx.redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    cursor = next;
    out.push(...batch);
  } while (cursor !== '0');
  return out;
}

async function redisPicture(ctx: ChaosContext, appPids: string[]): Promise<RedisPicture> {
  const connectionKeys = new Map<string, string[]>();
  const presence = new Map<string, string[]>();
  const add = (m: Map<string, string[]>, k: string, v: string) => m.set(k, [...(m.get(k) ?? []), v]);
  for (const appPid of appPids) {
    for (const key of await scan(ctx, `connection:${appPid}:*`)) {
      const [, app, id] = key.split(':');
      add(connectionKeys, `${app}:${id}`, key);
    }
    for (const key of await scan(ctx, `presence:${appPid}:*`)) {
      const room = key.slice('presence:'.length, key.lastIndexOf(':'));
      if (key.endsWith(':members'))
        for (const cid of await ctx.redis.hkeys(key)) add(presence, cid, `member of ${room}`);
      if (key.endsWith(':index'))
        for (const cid of await ctx.redis.lrange(key, 0, -1)) add(presence, cid, `in index of ${room}`);
    }
  }
  return { connectionKeys, presence };
}

export async function finalSessionState(ctx: ChaosContext, t: Tracked): Promise<SessionState | null> {
  const handle = ctx.temporal.workflow.getHandle(`session:${t.session.connectionId}`);
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      return (await ctx.connection.withDeadline(Date.now() + 15_000, () => handle.result())) as SessionState;
    } catch (err) {
      if (attempt === 4 || err instanceof WorkflowNotFoundError) throw err;
      await sleep(1_000);
    }
  }
  return null;
}

export async function checkFinalSessions(
  ctx: ChaosContext,
  broadcasts: Broadcast[],
  /** When a worker process died (killed or not), and when each service outage began and ended. */
  disruptions: number[],
): Promise<void> {
  const sessions = ctx.tracked;
  const picture = await redisPicture(ctx, [...ctx.apps.map((a) => a.appPid), ctx.unknownAppPid]);
  const cids = sessions.map((t) => t.session.connectionId);
  const pipe = ctx.redis.pipeline();
  for (const cid of cids) {
    pipe.zscore(HEARTBEAT_KEY, cid);
    pipe.exists(keys.active(cid));
  }
  const flat = (await pipe.exec())!.map(([err, v]) => {
    if (err) throw err;
    return v;
  });
  const rows = await ctx.pg.query<{ connectionId: string; disconnectedAt: Date | null }>(
    'SELECT "connectionId", "disconnectedAt" FROM sessions WHERE "connectionId" = ANY($1)',
    [cids],
  );
  const events = await ctx.pg.query<{ connectionId: string; connectionEventType: string }>(
    'SELECT "connectionId", "connectionEventType" FROM connections WHERE "connectionId" = ANY($1)',
    [cids],
  );
  const rowsOf = new Map<string, (Date | null)[]>();
  for (const r of rows.rows) rowsOf.set(r.connectionId, [...(rowsOf.get(r.connectionId) ?? []), r.disconnectedAt]);
  const eventsOf = new Map<string, string[]>();
  for (const r of events.rows)
    eventsOf.set(r.connectionId, [...(eventsOf.get(r.connectionId) ?? []), r.connectionEventType]);
  // Counted, not collected in a Set: a second leave of one lifetime must be visible (but for the
  // copy with the same messageId that a worker crash between the two sends allows).
  const leaves = new Map<string, number>();
  const sent = withoutCrashRepeats(
    ctx,
    'presence leaves',
    broadcasts.filter((b) => b.event.endsWith(':$:presence:leave')),
    disruptions,
    'presence-leave-broadcast',
  );
  for (const b of sent) {
    const k = `${b.nspRoomId}|${String(b.data.connectionId)}`;
    leaves.set(k, (leaves.get(k) ?? 0) + 1);
    count(ctx, 'presence-leaves');
  }

  await mapLimit(sessions, 8, async (t) => {
    const i = cids.indexOf(t.session.connectionId);
    const cid = t.session.connectionId;
    const subject = `${cid} (${t.scenario}${t.notes.length ? `; ${t.notes.join('; ')}` : ''})`;
    const left = [
      ...(picture.connectionKeys.get(cid) ?? []).map((k) => `key ${k}`),
      ...(picture.presence.get(cid) ?? []),
      ...(flat[2 * i] !== null ? ['heartbeat score'] : []),
      ...(flat[2 * i + 1] === 1 ? ['active marker'] : []),
    ];
    const refusedByClient = t.expect === 'rejected' && t.notes.some((n) => n.startsWith('refused by the client'));
    let st: SessionState | null = null;
    try {
      st = await finalSessionState(ctx, t);
    } catch (err) {
      // Refused before it reached Temporal: there must be no workflow at all.
      if (!(refusedByClient && err instanceof WorkflowNotFoundError))
        violate(ctx, 'final-state', subject, `no final state: ${errorText(err)}`);
    }
    count(ctx, 'checked:final-state');
    if (st && st.status !== 'destroyed') violate(ctx, 'final-state', subject, `ended ${st.status}`);
    if (t.expect === 'rejected') {
      count(ctx, 'checked:rejected-clean');
      if (refusedByClient) {
        if (st) violate(ctx, 'rejected-clean', subject, 'refused by the client, yet a workflow ran');
        if (left.length) violate(ctx, 'rejected-clean', subject, `left behind: ${left.join(', ')}`);
        return;
      }
      if (st && !/rejected/.test(st.invalidateReason ?? ''))
        violate(ctx, 'rejected-clean', subject, `not rejected: invalidateReason=${st.invalidateReason}`);
      if (left.length) violate(ctx, 'rejected-clean', subject, `left behind: ${left.join(', ')}`);
      if (rowsOf.has(cid) || eventsOf.has(cid))
        violate(ctx, 'rejected-clean', subject, 'rows written for a rejected session');
      return;
    }
    count(ctx, 'checked:destroyed-clean');
    if (left.length) violate(ctx, 'destroyed-clean', subject, `left behind: ${left.join(', ')}`);
    count(ctx, 'checked:destroyed-db');
    const dbRows = rowsOf.get(cid) ?? [];
    if (dbRows.length !== 1) violate(ctx, 'destroyed-db', subject, `${dbRows.length} sessions rows`);
    else if (dbRows[0] === null) violate(ctx, 'destroyed-db', subject, 'sessions.disconnectedAt not set');
    const ev = eventsOf.get(cid) ?? [];
    if (!(ev.includes('connect') && ev.includes('disconnect')) || ev.length !== 2)
      violate(ctx, 'destroyed-db', subject, `connections rows: ${JSON.stringify(ev)}`);
    for (const room of t.presenceRooms) {
      count(ctx, 'checked:presence-leave-broadcast');
      const n = leaves.get(`${room}|${cid}`) ?? 0;
      const lifetimes = t.presenceLifetimes[room] ?? 0;
      if (n === 0) violate(ctx, 'presence-leave-broadcast', subject, `no presence leave for ${room}`);
      else if (n > lifetimes)
        violate(
          ctx,
          'presence-leave-broadcast',
          subject,
          `${n} presence leaves for ${room} over ${lifetimes} presence lifetimes (a duplicate leave)`,
        );
      else if (n < lifetimes) {
        // A race of a reconnect with the soft destroy can leave a lifetime without presence to remove.
        if (t.mayHaveLostPresence) count(ctx, 'presence-leave:fewer-than-lifetimes-after-race');
        else
          violate(
            ctx,
            'presence-leave-broadcast',
            subject,
            `${n} presence leaves for ${room} over ${lifetimes} presence lifetimes (a lifetime ended without its leave)`,
          );
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Users: one connect and one disconnect broadcast per edge, Redis and the DB agreeing.

/**
 * Drops a second copy of a message (same messageId) when a worker crash lies between the two sends:
 * the one repeat at-least-once delivery allows, a crash after the broker's confirm and before the
 * progress write; counted, not hidden. Any other repeat is a violation.
 */
function withoutCrashRepeats(
  ctx: ChaosContext,
  subject: string,
  seq: Broadcast[],
  crashes: number[],
  invariant = 'user-broadcast-per-edge',
): Broadcast[] {
  const first = new Map<string, Broadcast>();
  const out: Broadcast[] = [];
  for (const b of seq) {
    const earlier = b.messageId === undefined ? undefined : first.get(b.messageId);
    if (!earlier) {
      if (b.messageId !== undefined) first.set(b.messageId, b);
      out.push(b);
      continue;
    }
    const from = earlier.sentAtS ?? -Infinity;
    const to = b.sentAtS ?? Infinity;
    const crashed = crashes.some((at) => Math.floor(at / 1000) >= from && Math.floor(at / 1000) <= to);
    if (crashed) count(ctx, 'broadcast-repeated-across-a-worker-crash');
    else
      violate(
        ctx,
        invariant,
        subject,
        `${b.event} (message ${b.messageId}) sent twice, at ${from} s and ${to} s, with no worker crash between`,
      );
  }
  return out;
}

export async function checkUsers(
  ctx: ChaosContext,
  broadcasts: Broadcast[],
  userRuns: UserState[],
  /** When a worker process died (killed or not). */
  crashes: number[],
): Promise<{ edges: number; connects: number; disconnects: number }> {
  let edges = 0;
  let connects = 0;
  let disconnects = 0;
  for (const { appPid, user } of ctx.users) {
    const subject = `user ${appPid}:${user.clientId}`;
    count(ctx, 'checked:users-consistent');
    const [online, conns, owed] = await Promise.all([
      ctx.redis.hget(keys.usersOnline(appPid), user.clientId),
      ctx.redis.exists(keys.clientConnections(appPid, user.clientId)),
      ctx.redis.exists(keys.offlineOwed(appPid, user.clientId)),
    ]);
    const db = await ctx.pg.query<{ isOnline: boolean | null }>(
      'SELECT "isOnline" FROM authentication_users WHERE id = $1',
      [user.id],
    );
    const problems = [
      ...(online !== null ? ['online in Redis'] : []),
      ...(conns ? ['connections hash left'] : []),
      ...(owed ? ['offline broadcast still owed'] : []),
      ...(db.rows[0]?.isOnline === true ? ['online in the DB'] : []),
    ];
    if (problems.length) violate(ctx, 'users-consistent', subject, `all connections gone, yet: ${problems.join(', ')}`);

    count(ctx, 'checked:user-broadcast-per-edge');
    const prefix = `users:${user.clientId}:$:user:`;
    const seq = withoutCrashRepeats(
      ctx,
      subject,
      broadcasts.filter((b) => b.nspRoomId === `users:${user.clientId}` && b.event.startsWith(prefix)),
      crashes,
    ).map((b) => ({ kind: b.event.slice(prefix.length), isOnline: b.data.isOnline }));
    const edgeSeq: string[] = [];
    for (let i = 0; i < seq.length; i++) {
      const m = seq[i]!;
      if (m.kind === 'connection:status') continue;
      edgeSeq.push(m.kind);
      const prev = seq[i - 1];
      if (!prev || prev.kind !== 'connection:status' || prev.isOnline !== (m.kind === 'connect'))
        violate(
          ctx,
          'user-broadcast-per-edge',
          subject,
          `${m.kind} #${edgeSeq.length} not preceded by its connection:status`,
        );
    }
    const statuses = seq.filter((m) => m.kind === 'connection:status').length;
    if (statuses !== edgeSeq.length)
      violate(ctx, 'user-broadcast-per-edge', subject, `${statuses} connection:status for ${edgeSeq.length} edges`);
    for (let i = 0; i < edgeSeq.length; i++) {
      const want = i % 2 === 0 ? 'connect' : 'disconnect';
      if (edgeSeq[i] !== want) {
        violate(
          ctx,
          'user-broadcast-per-edge',
          subject,
          `edge #${i + 1} is ${edgeSeq[i]}, expected ${want}: ${edgeSeq.join(',')}`,
        );
        break;
      }
    }
    if (edgeSeq.length % 2 !== 0)
      violate(ctx, 'user-broadcast-per-edge', subject, 'ends online (a connect without its disconnect)');
    const runs = userRuns.filter((r) => r.appPid === appPid && r.clientId === user.clientId);
    const wfEdges = runs.reduce((s, r) => s + r.counts.onlineEdges + r.counts.offlineEdges, 0);
    if (wfEdges !== edgeSeq.length)
      violate(
        ctx,
        'user-broadcast-per-edge',
        subject,
        `${edgeSeq.length} edge broadcasts for ${wfEdges} edges the user workflows made`,
      );
    edges += wfEdges;
    connects += edgeSeq.filter((e) => e === 'connect').length;
    disconnects += edgeSeq.filter((e) => e === 'disconnect').length;
  }
  return { edges, connects, disconnects };
}

// ---------------------------------------------------------------------------------------------
// Temporal: no workflow failed, no workflow task failed, nothing left running.

export interface HistoryStats {
  executions: number;
  byType: Record<string, number>;
  byStatus: Record<string, number>;
  historyEvents: number;
  workflowTaskFailed: number;
  workflowTaskFailedBenign: Record<string, number>;
  workflowTaskTimedOut: number;
  activityTaskTimedOut: number;
  activityRetriesByType: Record<string, number>;
  maxHistoryLength: number;
}

const BENIGN_WFT_CAUSES = new Set<number>([
  // A signal arrived while the task completed the workflow: the server makes it run again.
  WftCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
  WftCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_STICKY_TASK_QUEUE,
]);

export async function checkHistories(ctx: ChaosContext): Promise<{ stats: HistoryStats; userRuns: UserState[] }> {
  const executions: WorkflowExecutionInfo[] = [];
  for await (const wf of ctx.temporal.workflow.list()) executions.push(wf);
  const stats: HistoryStats = {
    executions: executions.length,
    byType: {},
    byStatus: {},
    historyEvents: 0,
    workflowTaskFailed: 0,
    workflowTaskFailedBenign: {},
    workflowTaskTimedOut: 0,
    activityTaskTimedOut: 0,
    activityRetriesByType: {},
    maxHistoryLength: 0,
  };
  const userRuns: UserState[] = [];
  await mapLimit(executions, 8, async (wf) => {
    stats.byType[wf.type] = (stats.byType[wf.type] ?? 0) + 1;
    stats.byStatus[wf.status.name] = (stats.byStatus[wf.status.name] ?? 0) + 1;
    const subject = `${wf.workflowId} run ${wf.runId}`;
    count(ctx, 'checked:no-workflow-failed');
    if (['FAILED', 'TERMINATED', 'TIMED_OUT', 'CANCELLED'].includes(wf.status.name))
      violate(ctx, 'no-workflow-failed', subject, `status ${wf.status.name}`);
    count(ctx, 'checked:no-workflow-stuck');
    if (wf.status.name === 'RUNNING') {
      let detail = 'still running after the settle period';
      try {
        const d = await ctx.temporal.workflow.getHandle(wf.workflowId, wf.runId).describe();
        const wft = d.raw.pendingWorkflowTask;
        const acts = (d.raw.pendingActivities ?? []).map(
          (a) => `${a.activityType?.name} attempt ${a.attempt}: ${a.lastFailure?.message ?? ''}`,
        );
        detail += `; pending workflow task: ${wft ? `attempt ${wft.attempt}` : 'none'}; activities: ${acts.join(' | ') || 'none'}`;
      } catch (err) {
        detail += ` (describe failed: ${errorText(err)})`;
      }
      violate(ctx, 'no-workflow-stuck', subject, detail);
    }
    let history;
    try {
      history = await ctx.temporal.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
    } catch (err) {
      violate(ctx, 'no-workflow-task-failed', subject, `history unreadable: ${errorText(err)}`);
      return;
    }
    const events = history.events ?? [];
    stats.historyEvents += events.length;
    stats.maxHistoryLength = Math.max(stats.maxHistoryLength, events.length);
    count(ctx, 'checked:no-workflow-task-failed');
    for (const e of events) {
      switch (e.eventType) {
        case EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: {
          const a = e.workflowTaskFailedEventAttributes!;
          const cause = a.cause ?? 0;
          if (BENIGN_WFT_CAUSES.has(cause)) {
            const name = WftCause[cause] ?? String(cause);
            stats.workflowTaskFailedBenign[name] = (stats.workflowTaskFailedBenign[name] ?? 0) + 1;
          } else {
            stats.workflowTaskFailed++;
            violate(
              ctx,
              'no-workflow-task-failed',
              subject,
              `event ${String(e.eventId)}: ${WftCause[cause] ?? cause}: ${a.failure?.message ?? ''}`.slice(0, 500),
            );
          }
          break;
        }
        case EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
          stats.workflowTaskTimedOut++;
          break;
        case EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
          stats.activityTaskTimedOut++;
          break;
        case EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: {
          const attempt = e.activityTaskStartedEventAttributes?.attempt ?? 1;
          if (attempt > 1) {
            const scheduled = events.find(
              (s) => String(s.eventId) === String(e.activityTaskStartedEventAttributes?.scheduledEventId),
            );
            const name = scheduled?.activityTaskScheduledEventAttributes?.activityType?.name ?? '?';
            stats.activityRetriesByType[name] = (stats.activityRetriesByType[name] ?? 0) + attempt - 1;
          }
          break;
        }
        case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: {
          if (wf.type !== 'userWorkflow') break;
          const payload = e.workflowExecutionCompletedEventAttributes?.result?.payloads?.[0];
          if (payload) userRuns.push(defaultPayloadConverter.fromPayload<UserState>(payload));
          break;
        }
      }
    }
  });
  return { stats, userRuns };
}

/** Waits until no workflow is running (or the timeout); returns how many still run. */
export async function settle(ctx: ChaosContext, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let running = -1;
  while (Date.now() < deadline && !ctx.signal.aborted) {
    try {
      const { count: n } = await ctx.temporal.workflow.count('ExecutionStatus = "Running"');
      running = n;
      if (n === 0) return 0;
    } catch {
      // server busy or restarting
    }
    await sleep(1_000);
  }
  return running;
}
