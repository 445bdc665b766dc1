import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { sessionWorkflowId } from '../contracts/session';
import type { SweepActivities, SweepPageResult } from '../contracts/sweep';
import { DownSource, connectionDownSignal, userWorkflowId, type ConnectionDownMessage } from '../contracts/user';
import type { ActivityDeps } from './deps';
import { PgStore } from '../stores/postgres';
import { SweepStore, LIVE } from '../stores/redis/sweep-store';
import { UserStore } from '../stores/redis/user-store';
import { signalUserDown } from './user-effects';

type Outcome = 'cleaned' | 'skipped' | 'ignored' | 'failed';

/** The sweep (contract §4.1, §7 defect 5): every stale id, in pages, users included. */
export function createSweepActivities(deps: ActivityDeps): SweepActivities {
  const { redis, pg, logger } = deps;
  const pgFx = new PgStore(pg);
  const store = new SweepStore(redis);
  const users = new UserStore(redis);

  const temporal = (): Client => {
    if (!deps.temporal) throw new Error('no Temporal client in the activity dependencies: cannot describe sessions');
    return deps.temporal;
  };

  async function sessionRunning(connectionId: string): Promise<boolean> {
    try {
      const d = await temporal().workflow.getHandle(sessionWorkflowId(connectionId)).describe();
      return d.status.name === 'RUNNING';
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return false;
      throw err;
    }
  }

  /** Who the connection belonged to, read before any liveness check (a racing reconnect rewrites it). */
  async function ownerOf(connectionId: string): Promise<{ appPid: string; clientId: string | null; socketId: string }> {
    const row = await pgFx.connectionOwner(connectionId);
    return {
      appPid: row?.appPid ?? connectionId.slice(0, connectionId.indexOf(':')),
      clientId: row?.clientId ?? null,
      socketId: row?.socketId ?? '',
    };
  }

  /**
   * Reports the connection gone to its user: through the user workflow, which alone changes a
   * user's online state (it takes the user offline when this was the last connection). A user
   * workflow is started only when Redis says the connection is the user's, or the user is online
   * with no connection left (the old deployment's leftovers); otherwise a running one is told.
   */
  async function notifyUser(appPid: string, clientId: string, down: ConnectionDownMessage): Promise<boolean> {
    const { inHash, size, online } = await users.membership(appPid, clientId, down.connectionId);
    if (inHash || (size === 0 && online)) {
      await signalUserDown(deps, appPid, clientId, down);
      return true;
    }
    try {
      await temporal().workflow.getHandle(userWorkflowId(appPid, clientId)).signal(connectionDownSignal, down);
      return true;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return false;
      throw err;
    }
  }

  async function sweepOne(connectionId: string): Promise<{ outcome: Outcome; notified: boolean }> {
    const owner = await ownerOf(connectionId);
    const now = Date.now();
    if (await sessionRunning(connectionId)) {
      await store.refreshScore(connectionId, now);
      return { outcome: 'skipped', notified: false };
    }
    if ((await store.clean(connectionId, now)) === LIVE) return { outcome: 'skipped', notified: false };
    const notified = owner.clientId
      ? await notifyUser(owner.appPid, owner.clientId, {
          connectionId,
          socketId: owner.socketId,
          source: DownSource.sweep,
        })
      : false;
    await pgFx.markDisconnected(connectionId);
    await store.forget(connectionId, Date.now());
    return { outcome: 'cleaned', notified };
  }

  return {
    /**
     * One page of the sweep: the stale ids after the anchor, each handled with bounded
     * concurrency. Live ones get their score refreshed (so they stop being rescanned), the rest
     * are cleaned. Safe to retry: every step is idempotent and handled ids leave the stale range.
     */
    async sweepPage({ cutoff, limit, concurrency, anchor, appPids }) {
      const page = await store.readPage(cutoff, limit, anchor);
      const outcomes: Outcome[] = new Array<Outcome>(page.length);
      let usersNotified = 0;
      const inScope = (cid: string) => !appPids || appPids.some((p) => cid.startsWith(`${p}:`));
      let next = 0;
      const work = async () => {
        while (next < page.length) {
          const i = next++;
          const cid = page[i]!.member;
          if (!inScope(cid)) {
            outcomes[i] = 'ignored';
            continue;
          }
          try {
            const r = await sweepOne(cid);
            outcomes[i] = r.outcome;
            if (r.notified) usersNotified++;
          } catch (err) {
            outcomes[i] = 'failed';
            logger.warn('sweep: id left for the next run', {
              connectionId: cid,
              error: err instanceof Error ? err.message : String(err),
            });
          }
          heartbeat(i + 1);
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, page.length)) }, work));
      let last = anchor;
      page.forEach((item, i) => {
        if (outcomes[i] === 'ignored' || outcomes[i] === 'failed') last = item;
      });
      const count = (o: Outcome) => outcomes.filter((x) => x === o).length;
      const result: SweepPageResult = {
        read: page.length,
        cleaned: count('cleaned'),
        skipped: count('skipped'),
        ignored: count('ignored'),
        failed: count('failed'),
        usersNotified,
        anchor: last,
      };
      if (result.cleaned + result.skipped + result.failed > 0) logger.info('sweep page', { ...result });
      return result;
    },
  };
}

function heartbeat(done: number): void {
  try {
    Context.current().heartbeat(done);
  } catch {
    // not in an activity (direct call)
  }
}
