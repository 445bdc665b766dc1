import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { GatewayActivities } from '../contracts/gateway';
import { gatewayLostSignal, sessionWorkflowId } from '../contracts/session';
import type { ActivityDeps } from './deps';
import type { PgStore } from '../stores/postgres';
import type { GatewayIndex } from '../stores/redis/gateway-index';
import { sessionOfTemplate } from '../stores/redis/marker';

/** A lost gateway's sessions are told in parallel, but never faster than this (the server's share). */
export const FAN_OUT = { concurrency: 50, perSecond: 500 } as const;

export function createGatewayActivities(
  deps: ActivityDeps & { index: GatewayIndex; pgStore: PgStore },
): GatewayActivities {
  const { index, logger, pgStore: pg } = deps;

  return {
    async refreshGatewayMarkers({ holder, at }) {
      return { refreshed: await index.refresh(holder, at) };
    },

    /**
     * Lost incarnation, page by page of its index: record the closes of the page's sessions in one
     * statement (their disconnect rows as of `at`, so every socket is closed within seconds of the
     * lapse, not at the rate the sessions can be told), then signal `gatewayLost` to each, naming
     * the socket whose close is recorded; then drop the index. The HSCAN cursor is heartbeated after
     * each page, so a retry after a worker crash resumes there (a page done twice writes the same
     * rows; a session told twice ignores the second: it is no longer connected).
     */
    async closeGatewaySessions({ holder, at }) {
      if (!deps.temporal) throw new Error('no Temporal client in the activity dependencies: cannot signal sessions');
      const client = deps.temporal;
      const ctx = Context.current();
      const from = typeof ctx.info.heartbeatDetails === 'string' ? ctx.info.heartbeatDetails : '0';
      await index.markLost(holder);
      let signalled = 0;
      let recorded = 0;
      const started = Date.now();
      const tell = async (cid: string, closedSocketId: string | undefined) => {
        try {
          await client.workflow.getHandle(sessionWorkflowId(cid)).signal(gatewayLostSignal, {
            gatewayId: holder.gatewayId,
            incarnation: holder.incarnation,
            at,
            ...(closedSocketId ? { closedSocketId } : {}),
          });
          signalled++;
        } catch (err) {
          if (!(err instanceof WorkflowNotFoundError)) throw err;
        }
      };
      for await (const page of index.scan(holder, from)) {
        const closed = await recordCloses(page);
        recorded += closed.size;
        let next = 0;
        const worker = async () => {
          while (next < page.length) {
            const cid = page[next++]!;
            // Rate: the n-th signal of this attempt goes no earlier than n / perSecond after its start.
            const due = started + (signalled * 1000) / FAN_OUT.perSecond - Date.now();
            if (due > 0) await new Promise((r) => setTimeout(r, due));
            await tell(cid, closed.get(cid));
          }
        };
        await Promise.all(Array.from({ length: Math.min(FAN_OUT.concurrency, page.length) }, worker));
        ctx.heartbeat(page.next);
      }
      await index.delete(holder);
      logger.info('gateway lost: closes recorded, sessions told', { ...holder, recorded, signalled });
      return { signalled };

      /** connectionId → socketId of the closes recorded; one left out records its own close. */
      async function recordCloses(page: string[]): Promise<Map<string, string>> {
        // Read now, not at the scan: a session that moved or closed meanwhile has left the index.
        const templates = await index.templates(holder, page);
        const sessions = templates.flatMap((t) => (t === null ? [] : [sessionOfTemplate(t)]));
        let cids: string[];
        try {
          cids = await pg.recordDisconnects(sessions, at);
        } catch (err) {
          // Data Postgres refuses (class 22) fails the whole statement every time: each session of the
          // page then records its own close, and the one that cannot be stored is rejected alone.
          const code = (err as { code?: unknown } | null)?.code;
          if (typeof code !== 'string' || !code.startsWith('22')) throw err;
          logger.warn('gateway lost: bulk close refused, sessions record their own', { ...holder, code });
          return new Map();
        }
        const socketOf = new Map(sessions.map((x) => [x.connectionId, x.socketId]));
        return new Map(cids.map((cid) => [cid, socketOf.get(cid)!]));
      }
    },
  };
}
