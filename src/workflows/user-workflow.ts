import {
  allHandlersFinished,
  condition,
  log,
  makeContinueAsNewFunc,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Session } from '../contracts/session';
import {
  DownSource,
  checkConnectionDown,
  checkConnectionUp,
  connectionDownSignal,
  connectionUpSignal,
  userStateQuery,
  type UserActivities,
  type UserState,
  type UserWorkflowInput,
} from '../contracts/user';

const DEFAULT_MAX_HISTORY_EVENTS = 4_000;

const fx = proxyActivities<UserActivities>({
  // An effect is a few round trips; an attempt lost with a killed worker is retried only once this
  // runs out, so it bounds how late a destroy can be after a crash.
  startToCloseTimeout: '10s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '30s' },
});

/**
 * One run per user while the user has live connections (workflow id `user:{appPid}:{clientId}`).
 * Session workflows signal `connectionUp` after recording a connect (not a reconnect's within the
 * grace: the connection is still counted) and `connectionDown` at the soft destroy; the sweep signals `connectionDown` for connections it cleans. Signals only change the
 * set of live connections; the main loop alone runs effects, one at a time, reconciling what Redis
 * and the DB were told with that set. Hence exactly one online effect (and broadcast) per
 * offline→online edge and one offline effect per online→offline edge, however many connections
 * come and go at once and on whichever workers their sessions run.
 *
 * The run ends when the user is offline with nothing left to do; the next up starts a new run
 * (signal-with-start), so a run's history covers one online period.
 */
export async function userWorkflow(input: UserWorkflowInput): Promise<UserState> {
  const maxEvents = input.maxHistoryEvents ?? DEFAULT_MAX_HISTORY_EVENTS;
  const state: UserState = input.state ?? fresh(input.appPid, input.clientId);
  const { appPid, clientId } = state;

  const drop = (signal: string, field: string, reason: string) => {
    state.counts.droppedSignals++;
    log.warn('malformed signal dropped', { signal, field, reason });
  };

  setHandler(userStateQuery, () => state);

  setHandler(connectionUpSignal, (raw) => {
    const checked = checkConnectionUp(raw, state);
    if (!checked.ok) return drop('connectionUp', checked.field, checked.reason);
    const { session } = checked.value;
    state.counts.ups++;
    const known = state.connections[session.connectionId];
    state.connections[session.connectionId] = {
      socketId: session.socketId,
      session,
      upAt: known?.socketId === session.socketId ? known.upAt : Date.now(),
    };
    state.user = session.user;
    state.orphans = state.orphans.filter((c) => c !== session.connectionId);
  });

  setHandler(connectionDownSignal, (raw) => {
    const checked = checkConnectionDown(raw);
    if (!checked.ok) return drop('connectionDown', checked.field, checked.reason);
    const msg = checked.value;
    const live = state.connections[msg.connectionId];
    // The socket the session told of, or the one that closed (an up for it came from elsewhere:
    // an activity of a worker older than 0.6.2, which signals every reconnect).
    if (live && (live.socketId === msg.socketId || live.socketId === msg.session?.socketId)) {
      delete state.connections[msg.connectionId];
      state.lastSession = msg.session ?? live.session;
      state.counts.downs++;
    } else if (!live && msg.source === DownSource.sweep) {
      // Never live in this run (a legacy BullMQ id, or one this run already let go): its entry in
      // the user's connections hash still has to go, and with it the user if it was the last one.
      if (!state.orphans.includes(msg.connectionId)) state.orphans.push(msg.connectionId);
    } else {
      // An older socket of a connection that reconnected, or a connection never reported up.
      state.counts.staleDowns++;
    }
  });

  const live = () => Object.keys(state.connections);
  const toAdd = () => live().filter((c) => !state.recorded.includes(c));
  const toRemove = () => [
    ...state.recorded.filter((c) => !(c in state.connections)),
    ...state.orphans.filter((c) => !state.recorded.includes(c)),
  ];
  const pending = (): boolean => {
    if (live().length > 0 !== state.online) return true;
    if (state.online) return toAdd().length > 0 || toRemove().length > 0;
    return state.orphans.length > 0;
  };

  while (true) {
    if (pending()) {
      await step();
      continue;
    }
    if (!state.online) {
      // Offline and nothing owed: done. A signal arriving meanwhile makes the server reject the
      // completion; the retried task delivers it before this check again, so no up is ever lost.
      await condition(allHandlersFinished);
      if (!pending()) return state;
      continue;
    }
    const info = workflowInfo();
    if (historyFull()) {
      await condition(allHandlersFinished);
      if (!pending()) {
        state.counts.continuedAsNew++;
        await makeContinueAsNewFunc<typeof userWorkflow>({
          memo: info.memo,
          typedSearchAttributes: info.typedSearchAttributes,
        })({ ...input, state });
      }
      continue;
    }
    // Signals that change nothing (a reconnect while online) still grow the history.
    await condition(() => pending() || historyFull());
  }

  function historyFull(): boolean {
    const info = workflowInfo();
    return info.historyLength >= maxEvents || info.continueAsNewSuggested;
  }

  async function step(): Promise<void> {
    const ids = live();
    if (ids.length > 0 && !state.online) {
      const connections = Object.fromEntries(ids.map((c) => [c, state.connections[c]!.upAt]));
      const session = latestSession();
      await fx.userOnline({ appPid, clientId, user: state.user!, session, connections, edge: edgeId() });
      state.online = true;
      state.recorded = ids;
      state.counts.onlineEdges++;
      return;
    }
    if (ids.length === 0 && state.online) {
      const orphans = [...state.orphans];
      await fx.userOffline({
        appPid,
        clientId,
        user: state.user!,
        session: state.lastSession ?? latestSession(),
        edge: edgeId(),
      });
      // The user's connections hash is gone as a whole, orphans included.
      state.online = false;
      state.recorded = [];
      state.orphans = state.orphans.filter((c) => !orphans.includes(c));
      state.counts.offlineEdges++;
      return;
    }
    if (state.online) {
      const add = toAdd();
      const remove = toRemove();
      await fx.syncUserConnections({
        appPid,
        clientId,
        add: Object.fromEntries(add.map((c) => [c, state.connections[c]!.upAt])),
        remove,
      });
      state.recorded = [...state.recorded.filter((c) => !remove.includes(c)), ...add];
      state.orphans = state.orphans.filter((c) => !remove.includes(c));
      return;
    }
    const orphans = [...state.orphans];
    await fx.userOrphansGone({ appPid, clientId, connectionIds: orphans });
    state.orphans = state.orphans.filter((c) => !orphans.includes(c));
  }

  /** Unique per edge: the chain's first run (kept across continue-as-new) and the edge's number. */
  function edgeId(): string {
    return `${workflowInfo().firstExecutionRunId}:${state.counts.onlineEdges + state.counts.offlineEdges}`;
  }

  function latestSession(): Session {
    let latest: Session | null = state.lastSession;
    let at = -Infinity;
    for (const c of Object.values(state.connections)) {
      if (c.upAt >= at) {
        at = c.upAt;
        latest = c.session;
      }
    }
    return latest!;
  }
}

function fresh(appPid: string, clientId: string): UserState {
  return {
    appPid,
    clientId,
    online: false,
    user: null,
    connections: {},
    recorded: [],
    orphans: [],
    lastSession: null,
    counts: {
      ups: 0,
      downs: 0,
      staleDowns: 0,
      droppedSignals: 0,
      onlineEdges: 0,
      offlineEdges: 0,
      continuedAsNew: 0,
    },
  };
}
