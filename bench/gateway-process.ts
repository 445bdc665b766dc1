/**
 * A simulated gateway in its own process (the gateway-lost scenario SIGKILLs it): one
 * `SessionClient` with autoTick, as a gateway process runs it. Configuration in
 * BENCH_GATEWAY_CONFIG; over IPC it receives `connect` (sessions to open) and answers `connected`.
 */
import { Client, Connection } from '@temporalio/client';
import { SessionClient } from '../src/client';
import type { Session } from '../src/contracts/session';

interface GatewayChildConfig {
  address: string;
  namespace: string;
  taskQueue: string;
  idleTimeoutMs: number;
  gatewayId: string;
  concurrency: number;
}

const send = (msg: unknown) => process.send?.(msg);

async function main(): Promise<void> {
  const cfg = JSON.parse(process.env.BENCH_GATEWAY_CONFIG ?? '{}') as GatewayChildConfig;
  const connection = await Connection.connect({ address: cfg.address });
  const client = new Client({ connection, namespace: cfg.namespace });
  const sessions = new SessionClient(client, {
    taskQueue: cfg.taskQueue,
    idleTimeoutMs: cfg.idleTimeoutMs,
    gatewayId: cfg.gatewayId,
  });
  process.on('message', (raw) => {
    const msg = raw as { type: string; id: number; sessions: Session[] };
    if (msg.type !== 'connect') return;
    void (async () => {
      const ms: number[] = [];
      const errors: string[] = [];
      let next = 0;
      const worker = async () => {
        while (next < msg.sessions.length) {
          const s = msg.sessions[next++]!;
          const t = Date.now();
          try {
            await sessions.connected(s);
            ms.push(Date.now() - t);
          } catch (err) {
            if (errors.length < 5) errors.push(err instanceof Error ? err.message : String(err));
          }
        }
      };
      await Promise.all(Array.from({ length: cfg.concurrency }, worker));
      send({ type: 'connected', id: msg.id, ms, errors, held: sessions.heldCount, holder: sessions.holder });
    })();
  });
  send({ type: 'ready' });
  // Runs until killed (the scenario's point); the lease is renewed by the client's own timer.
  setInterval(() => undefined, 60_000);
}

main().catch((err: unknown) => {
  process.stderr.write(`[bench gateway] ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
