/**
 * The Temporal connection options of this process, from the config: the one function both the
 * worker (`NativeConnection.connect`, src/worker.ts) and the ops CLI (`Connection.connect`,
 * src/cli.ts) connect with, so the CLI reaches every cluster the worker reaches (TLS, mTLS, a
 * server name override).
 */
import { readFile } from 'node:fs/promises';
import type { TLSConfig } from '@temporalio/client';
import type { Config } from './config';

export interface TemporalConnectionOptions {
  /** For `NativeConnection.connect` and `Connection.connect` alike. */
  connection: { address: string; tls?: TLSConfig };
  /** For `new Client({ connection, namespace })` and `Worker.create({ namespace })`. */
  namespace: string;
}

/** Reads the CA, certificate and key files named by the config; a missing file rejects naming it. */
export async function temporalConnectionOptions(config: Pick<Config, 'temporal'>): Promise<TemporalConnectionOptions> {
  const { address, namespace, tls } = config.temporal;
  return { connection: { address, ...(tls ? { tls: await loadTls(tls) } : {}) }, namespace };
}

async function loadTls(tls: Exclude<Config['temporal']['tls'], false>): Promise<TLSConfig> {
  const read = async (variable: string, file?: string) => {
    if (!file) return undefined;
    try {
      return await readFile(file);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new Error(`${variable}=${JSON.stringify(file)} cannot be read: ${reason}`);
    }
  };
  const [ca, crt, key] = await Promise.all([
    read('TEMPORAL_TLS_CA_PATH', tls.serverRootCACertPath),
    read('TEMPORAL_TLS_CERT_PATH', tls.clientCertPath),
    read('TEMPORAL_TLS_KEY_PATH', tls.clientKeyPath),
  ]);
  return {
    ...(tls.serverNameOverride ? { serverNameOverride: tls.serverNameOverride } : {}),
    ...(ca ? { serverRootCACertificate: ca } : {}),
    ...(crt && key ? { clientCertPair: { crt, key } } : {}),
  };
}
