import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { GatewayActivities } from '../contracts/gateway';
import { gatewayLostSignal, sessionWorkflowId } from '../contracts/session';
import type { ActivityDeps } from './deps';
import type { GatewayIndex } from '../stores/redis/gateway-index';

/** A lost gateway's sessions are told in parallel, but never faster than this (the server's share). */
export const FAN_OUT = { concurrency: 50, perSecond: 500 } as const;

export function createGatewayActivities(deps: ActivityDeps & { index: GatewayIndex }): GatewayActivities {
  const { index, logger } = deps;

  return {
    async refreshGatewayMarkers({ holder, at }) {
      return { refreshed: await index.refresh(holder, at) };
    },

    /**
     * Lost incarnation: signal `gatewayLost` to each session in its index, then drop the index. The
     * HSCAN cursor is heartbeated after each page, so a retry after a worker crash resumes there
     * (a session told twice ignores the second: it is no longer connected).
     */
    async closeGatewaySessions({ holder, at }) {
      if (!deps.temporal) throw new Error('no Temporal client in the activity dependencies: cannot signal sessions');
      const client = deps.temporal;
      const ctx = Context.current();
      const from = typeof ctx.info.heartbeatDetails === 'string' ? ctx.info.heartbeatDetails : '0';
      await index.markLost(holder);
      let signalled = 0;
      const started = Date.now();
      const tell = async (cid: string) => {
        try {
          await client.workflow
            .getHandle(sessionWorkflowId(cid))
            .signal(gatewayLostSignal, { gatewayId: holder.gatewayId, incarnation: holder.incarnation, at });
          signalled++;
        } catch (err) {
          if (!(err instanceof WorkflowNotFoundError)) throw err;
        }
      };
      for await (const page of index.scan(holder, from)) {
        let next = 0;
        const worker = async () => {
          while (next < page.length) {
            const cid = page[next++]!;
            // Rate: the n-th signal of this attempt goes no earlier than n / perSecond after its start.
            const due = started + (signalled * 1000) / FAN_OUT.perSecond - Date.now();
            if (due > 0) await new Promise((r) => setTimeout(r, due));
            await tell(cid);
          }
        };
        await Promise.all(Array.from({ length: Math.min(FAN_OUT.concurrency, page.length) }, worker));
        ctx.heartbeat(page.next);
      }
      await index.delete(holder);
      logger.info('gateway lost: sessions told', { ...holder, signalled });
      return { signalled };
    },
  };
}
