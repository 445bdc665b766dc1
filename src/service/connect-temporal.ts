import { setTimeout as sleep } from 'node:timers/promises';
import type { NativeConnection } from '@temporalio/worker';
import type { Config } from '../config';
import type { Logger } from '../logger';
import { connectWorker } from '../worker';

function errorCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

const GRPC_NOT_FOUND = 5;
const GRPC_UNAVAILABLE = 14;

export interface ConnectOptions {
  /** Give up after this long (default 60 s). */
  timeoutMs?: number;
  /** Rejects when the server we started died: no point waiting for it. */
  serverExited?: Promise<string>;
}

/**
 * Connects the worker's connection once the server answers and the namespace exists (a dev server
 * registers it a moment after it opens its port). Retries until the timeout or an abort.
 */
export async function connectTemporal(
  config: Config,
  logger: Logger,
  signal: AbortSignal,
  opts: ConnectOptions = {},
): Promise<NativeConnection> {
  const { address, namespace } = config.temporal;
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  let died: string | undefined;
  void opts.serverExited?.then((why) => (died = why));
  const started = Date.now();
  let lastError: unknown;
  let warned = false;
  for (;;) {
    signal.throwIfAborted();
    if (died !== undefined) throw new Error(died);
    let connection: NativeConnection | undefined;
    try {
      connection = await connectWorker(config);
      await connection.workflowService.describeNamespace({ namespace });
      return connection;
    } catch (err) {
      const code = errorCode(err);
      if (connection && code !== GRPC_NOT_FOUND && code !== GRPC_UNAVAILABLE) {
        // Connected, but not allowed to describe the namespace (some hosted setups): carry on.
        logger.debug('cannot describe the namespace; continuing', { namespace, err });
        return connection;
      }
      await connection?.close().catch(() => undefined);
      lastError = err;
    }
    if (Date.now() > deadline) {
      const reason = lastError instanceof Error ? lastError.message : String(lastError);
      throw new Error(`Temporal at ${address} (namespace ${namespace}) did not answer: ${reason}`);
    }
    if (!warned && Date.now() - started > 5_000) {
      logger.warn(`waiting for Temporal at ${address} (namespace ${namespace})`);
      warned = true;
    }
    await sleep(500, undefined, { signal }).catch(() => undefined);
  }
}
