import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Config } from '../src/config';
import { answers as reachable } from '../src/dev/dev-server';
import { ROOT } from '../harness/root';
import { sleep } from '../harness/sleep';

const run = promisify(execFile);

export type ServiceKind = 'redis' | 'postgres' | 'rabbitmq';

export interface Endpoint {
  host: string;
  port: number;
}

export function endpoints(config: Config): Record<ServiceKind, Endpoint> {
  const amqp = new URL(config.rabbitmq.url);
  return {
    redis: { host: config.redis.host, port: config.redis.port },
    postgres: { host: config.db.host, port: config.db.port },
    rabbitmq: { host: amqp.hostname, port: Number(amqp.port || 5672) },
  };
}

async function sh(cmd: string, args: string[], timeoutMs = 120_000): Promise<string> {
  const { stdout, stderr } = await run(cmd, args, { cwd: ROOT, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
  return `${stdout}${stderr}`.trim();
}

function pgBin(): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => existsSync(path.join(base, v, 'bin', 'pg_ctl')))
        .sort((a, b) => Number(a) - Number(b))
    : [];
  const v = versions[versions.length - 1];
  return v ? path.join(base, v, 'bin') : '';
}

/** The data directory scripts/services.sh gives Postgres (root: /var/lib/tether/postgres). */
function pgData(): string {
  if (process.getuid?.() === 0) return '/var/lib/tether/postgres';
  const cache = process.env.TETHER_CACHE_DIR ?? path.join(process.env.HOME ?? '/root', '.cache/tether');
  return path.join(cache, 'services/postgres');
}

/**
 * Stops and starts the local Redis, Postgres and RabbitMQ the way scripts/services.sh runs them.
 * Only for services on this machine; every stop is paired with a start in a `finally`.
 */
export class Services {
  private readonly ep: Record<ServiceKind, Endpoint>;
  /** Services this process stopped and has not seen back yet: `restoreAll` brings them back. */
  private readonly down = new Set<ServiceKind>();

  constructor(private readonly config: Config) {
    this.ep = endpoints(config);
  }

  isLocal(kind: ServiceKind): boolean {
    return ['127.0.0.1', 'localhost', '::1'].includes(this.ep[kind].host);
  }

  async isUp(kind: ServiceKind): Promise<boolean> {
    return reachable(this.ep[kind].host, this.ep[kind].port);
  }

  /** Refuses what would lose data or is not ours to stop; returns the reason, or null when safe. */
  async preflight(kind: ServiceKind): Promise<string | null> {
    if (!this.isLocal(kind)) return `${kind} is not on this machine`;
    if (!(await this.isUp(kind))) return `${kind} is not running`;
    if (kind === 'redis') {
      // SHUTDOWN NOSAVE keeps the data only through the append-only file services.sh turns on.
      const aof = await sh('redis-cli', [
        '-h',
        this.ep.redis.host,
        '-p',
        String(this.ep.redis.port),
        'config',
        'get',
        'appendonly',
      ]).catch((e: unknown) => String(e));
      if (!/appendonly\s+yes/.test(aof)) return `redis runs without appendonly (${aof}): a shutdown would lose data`;
    }
    if (kind === 'postgres' && !pgBin()) return 'pg_ctl not found';
    if (kind === 'postgres' && !existsSync(path.join(pgData(), 'PG_VERSION'))) return `no cluster at ${pgData()}`;
    return null;
  }

  async stop(kind: ServiceKind): Promise<void> {
    this.down.add(kind);
    const { host, port } = this.ep[kind];
    if (kind === 'redis') {
      await sh('redis-cli', ['-h', host, '-p', String(port), 'shutdown', 'nosave']).catch(() => undefined);
    } else if (kind === 'postgres') {
      const cmd = `${pgBin()}/pg_ctl -D '${pgData()}' stop -m fast`;
      if (process.getuid?.() === 0) await sh('su', ['-s', '/bin/sh', 'postgres', '-c', cmd]);
      else await sh('sh', ['-c', cmd]);
    } else {
      await sh('rabbitmqctl', ['stop']);
    }
    for (let i = 0; i < 150 && (await this.isUp(kind)); i++) await sleep(200);
    if (await this.isUp(kind)) throw new Error(`${kind} still answers after stop`);
  }

  async start(kind: ServiceKind): Promise<void> {
    const { host, port } = this.ep[kind];
    const args = kind === 'postgres' ? [this.config.db.user, this.config.db.password, this.config.db.name] : [];
    await sh('bash', ['scripts/services.sh', kind, host, String(port), ...args], 300_000);
    this.down.delete(kind);
  }

  /** Stop, hold for `downMs` (or until aborted), start again: the start runs whatever happens. */
  async outage(
    kind: ServiceKind,
    downMs: number,
    signal?: AbortSignal,
  ): Promise<{ stoppedAt: number; startedAt: number; upAt: number }> {
    let stoppedAt = Date.now();
    let startedAt = stoppedAt;
    try {
      await this.stop(kind);
      stoppedAt = Date.now();
      await sleep(downMs, signal);
    } finally {
      startedAt = Date.now();
      await this.start(kind);
    }
    return { stoppedAt, startedAt, upAt: Date.now() };
  }

  /** Brings back anything this process stopped (and anything local that does not answer). */
  async restoreAll(): Promise<string[]> {
    const restored: string[] = [];
    for (const kind of ['redis', 'postgres', 'rabbitmq'] as const) {
      if (!this.isLocal(kind)) continue;
      if (this.down.has(kind) || !(await this.isUp(kind))) {
        try {
          await this.start(kind);
          restored.push(kind);
        } catch (err) {
          restored.push(`${kind} FAILED: ${String(err)}`);
        }
      }
    }
    return restored;
  }
}
