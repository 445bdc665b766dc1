import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { GatewayActivities } from '../contracts/gateway';
import { gatewayLostSignal, sessionWorkflowId } from '../contracts/session';
import type { ActivityDeps } from './deps';
import { isDataException, type PgStore } from '../stores/postgres';
import type { GatewayIndex } from '../stores/redis/gateway-index';
import { sessionOfTemplate } from '../stores/redis/marker';

/** A lost gateway's sessions are told in parallel, but never faster than this (the server's share). */
export const FAN_OUT = { concurrency: 50, perSecond: 500 } as const;

/** Where a fan-out attempt got to: the pass and the HSCAN cursor of its next page. */
interface FanOutProgress {
  pass: 'record' | 'tell';
  cursor: string;
}

function fanOutProgress(details: unknown): FanOutProgress {
  // 0.4's attempts heartbeated the cursor of the telling alone.
  if (typeof details === 'string') return { pass: 'tell', cursor: details };
  const d = details as Partial<FanOutProgress> | undefined;
  return d && (d.pass === 'record' || d.pass === 'tell') && typeof d.cursor === 'string'
    ? { pass: d.pass, cursor: d.cursor }
    : { pass: 'record', cursor: '0' };
}

export function createGatewayActivities(
  deps: ActivityDeps & { index: GatewayIndex; pgStore: PgStore },
): GatewayActivities {
  const { index, logger, pgStore: pg } = deps;

  return {
    async refreshGatewayMarkers({ holder, at }) {
      return { refreshed: await index.refresh(holder, at) };
    },

    /**
     * Lost incarnation, in two passes over its index. First the closes: page by page, one Postgres
     * statement records every session's disconnect row as of `at`, so every socket is closed within
     * seconds of the lapse, not at the rate the sessions can be told. Then the sessions: each is
     * signalled `gatewayLost`, naming the socket whose close is recorded (its disconnect row names
     * it), so that session owes no close effect; then the index goes. The pass and the HSCAN cursor
     * are heartbeated after each page, so a retry after a worker crash resumes there (a page
     * recorded twice writes the same rows; a session told twice ignores the second: it is no longer
     * connected).
     */
    async closeGatewaySessions({ holder, at }) {
      if (!deps.temporal) throw new Error('no Temporal client in the activity dependencies: cannot signal sessions');
      const client = deps.temporal;
      const ctx = Context.current();
      const resumed = fanOutProgress(ctx.info.heartbeatDetails);
      await index.markLost(holder);
      let recorded = 0;
      if (resumed.pass === 'record') {
        for await (const page of index.scan(holder, resumed.cursor)) {
          recorded += await recordCloses(page);
          if (page.next && page.next !== '0')
            ctx.heartbeat({ pass: 'record', cursor: page.next } satisfies FanOutProgress);
        }
        ctx.heartbeat({ pass: 'tell', cursor: '0' } satisfies FanOutProgress);
      }
      let signalled = 0;
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
      for await (const page of index.scan(holder, resumed.pass === 'tell' ? resumed.cursor : '0')) {
        const closed = await pg.closedSockets(page);
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
        ctx.heartbeat({ pass: 'tell', cursor: page.next ?? '0' } satisfies FanOutProgress);
      }
      await index.delete(holder);
      logger.info('gateway lost: closes recorded, sessions told', { ...holder, recorded, signalled });
      return { signalled };

      /** How many closes of the page it recorded; one left out records its own close. */
      async function recordCloses(page: string[]): Promise<number> {
        // Read now, not at the scan: a session that moved or closed meanwhile has left the index.
        const templates = await index.templates(holder, page);
        const sessions = templates.flatMap((t) => (t === null ? [] : [sessionOfTemplate(t)]));
        try {
          return (await pg.recordDisconnects(sessions, at)).length;
        } catch (err) {
          // Data Postgres refuses fails the whole statement every time: each session of the page then
          // records its own close, and the one that cannot be stored is rejected alone.
          if (!isDataException(err)) throw err;
          logger.warn('gateway lost: bulk close refused, sessions record their own', {
            ...holder,
            code: (err as { code: string }).code,
          });
          return 0;
        }
      }
    },
  };
}
