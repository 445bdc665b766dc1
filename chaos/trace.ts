import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { sessionWorkflowId } from '../src/contracts/session';
import type { ChaosContext } from './context';
import { errorText } from './error-text';

const EventType = temporal.api.enums.v1.EventType;

/**
 * What the server recorded for one connection, every run, one short line per event that matters
 * (signals, activities — the session's effects —, local activities of runs started by 0.2 (as
 * `MarkerRecorded` events), timers, search attribute upserts, the end): attached to a violation so that
 * its cause can be read from the report instead of re-running the seed.
 */
export async function sessionTrace(ctx: ChaosContext, connectionId: string): Promise<string[]> {
  const lines: string[] = [];
  try {
    const id = sessionWorkflowId(connectionId);
    const runs: { runId: string; startTime: Date }[] = [];
    for await (const w of ctx.temporal.workflow.list({ query: `WorkflowId = '${id.replace(/'/g, "\\'")}'` })) {
      runs.push({ runId: w.runId, startTime: w.startTime });
    }
    runs.sort((a, b) => a.startTime.getTime() - b.startTime.getTime());
    for (const run of runs) {
      lines.push(`run ${run.runId}`);
      const history = await ctx.temporal.workflow.getHandle(id, run.runId).fetchHistory();
      const activityType = new Map<string, string>();
      for (const e of history.events ?? []) {
        const line = describeEvent(e, activityType);
        if (line) lines.push(`${clock(e.eventTime)} #${String(e.eventId)} ${line}`);
      }
    }
    const rows = await ctx.pg.query<{ updatedAt: Date; disconnectedAt: Date | null }>(
      'SELECT "updatedAt", "disconnectedAt" FROM sessions WHERE "connectionId" = $1',
      [connectionId],
    );
    for (const r of rows.rows)
      lines.push(
        `sessions row: updatedAt ${r.updatedAt.toISOString().slice(11, 23)}, disconnectedAt ${r.disconnectedAt?.toISOString().slice(11, 23) ?? 'null'}`,
      );
  } catch (err) {
    lines.push(`trace unavailable: ${errorText(err)}`);
  }
  return lines;
}

function describeEvent(e: temporal.api.history.v1.IHistoryEvent, activityType: Map<string, string>): string | null {
  switch (e.eventType) {
    case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
      return 'started';
    case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: {
      const a = e.workflowExecutionSignaledEventAttributes;
      return `signal ${a?.signalName ?? '?'}${signalDetail(a?.signalName, a?.input?.payloads?.[0])}`;
    }
    case EventType.EVENT_TYPE_MARKER_RECORDED:
      return localActivity(e.markerRecordedEventAttributes);
    case EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: {
      const fields = e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields ?? {};
      return `upsert ${Object.entries(fields)
        .map(([k, p]) => `${k}=${JSON.stringify(decode(p) ?? '?')}`)
        .join(' ')}`;
    }
    case EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: {
      const name = e.activityTaskScheduledEventAttributes?.activityType?.name ?? '?';
      activityType.set(String(e.eventId), name);
      return `schedule ${name}`;
    }
    case EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
      return `completed ${activityType.get(String(e.activityTaskCompletedEventAttributes?.scheduledEventId)) ?? '?'}`;
    case EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
      return `failed ${activityType.get(String(e.activityTaskFailedEventAttributes?.scheduledEventId)) ?? '?'}: ${e.activityTaskFailedEventAttributes?.failure?.message ?? ''}`;
    case EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
      return `timed out ${activityType.get(String(e.activityTaskTimedOutEventAttributes?.scheduledEventId)) ?? '?'}`;
    case EventType.EVENT_TYPE_TIMER_STARTED:
      return `timer ${e.timerStartedEventAttributes?.timerId ?? '?'} for ${ms(e.timerStartedEventAttributes?.startToFireTimeout)} ms`;
    case EventType.EVENT_TYPE_TIMER_FIRED:
      return `timer ${e.timerFiredEventAttributes?.timerId ?? '?'} fired`;
    case EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
      return `workflow task failed: ${e.workflowTaskFailedEventAttributes?.failure?.message ?? ''}`;
    case EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
      return 'workflow task timed out';
    case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
      return 'completed';
    case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
      return 'continued as new';
    case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
      return `failed: ${e.workflowExecutionFailedEventAttributes?.failure?.message ?? ''}`;
    case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
      return 'terminated';
    default:
      return null;
  }
}

type Payload = temporal.api.common.v1.IPayload;

function decode(p: Payload | null | undefined): unknown {
  if (!p) return undefined;
  try {
    return defaultPayloadConverter.fromPayload(p);
  } catch {
    return undefined;
  }
}

/** The parts of a signal that tell one lifecycle from another: socket, holder, time. */
function signalDetail(name: string | null | undefined, p: Payload | null | undefined): string {
  const v = decode(p) as Record<string, unknown> | undefined;
  if (!v || typeof v !== 'object') return '';
  const short = (x: unknown) => (typeof x === 'string' ? x.slice(0, 8) : '?');
  const at = typeof v.at === 'number' ? ` at ${new Date(v.at).toISOString().slice(11, 23)}` : '';
  switch (name) {
    case 'active': {
      const s = v.session as { socketId?: unknown } | undefined;
      const g = v.gateway as { incarnation?: unknown } | undefined;
      return ` socket ${short(s?.socketId)} via ${short(g?.incarnation)}${at}`;
    }
    case 'disconnected':
      return ` socket ${short(v.socketId)}${at}`;
    case 'gatewayLost':
      return ` incarnation ${short(v.incarnation)}${at}`;
    default:
      return at;
  }
}

/** A local activity's `MarkerRecorded`: its type, attempt, and failure if it failed. */
function localActivity(a: temporal.api.history.v1.IMarkerRecordedEventAttributes | null | undefined): string {
  const data = decode(a?.details?.data?.payloads?.[0]) as { activity_type?: string; attempt?: number } | undefined;
  const name = data?.activity_type ?? a?.markerName ?? '?';
  const attempt = data?.attempt && data.attempt > 1 ? ` (attempt ${data.attempt})` : '';
  const failure = a?.failure ? `: failed: ${a.failure.message ?? ''}` : '';
  return `local ${name}${attempt}${failure}`;
}

type Stamp = { seconds?: unknown; nanos?: number | null } | null | undefined;

const ms = (d: Stamp) => Number(d?.seconds ?? 0) * 1000 + Math.floor((d?.nanos ?? 0) / 1e6);

const clock = (t: Stamp) => new Date(ms(t)).toISOString().slice(11, 23);
