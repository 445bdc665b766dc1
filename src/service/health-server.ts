import http from 'node:http';
import type { Worker } from '@temporalio/worker';
import type { Resources } from './resources';

export interface HealthServerOptions {
  port: number;
  host?: string;
  worker: Pick<Worker, 'getState'>;
  resources: Pick<Resources, 'redis' | 'pg' | 'amqp'>;
  /** The Temporal runtime's Prometheus exporter, served again under /metrics. */
  prometheusUrl: string;
}

type Check = () => Promise<void>;

async function within(ms: number, check: Check): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check(),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `/healthz`: the process answers. `/readyz`: the worker polls Temporal and Redis, Postgres and
 * RabbitMQ answer. `/metrics`: Temporal's and tether's metrics in Prometheus text format.
 */
export function startHealthServer(opts: HealthServerOptions): Promise<http.Server> {
  const checks: Record<string, Check> = {
    temporal: () => {
      const state = opts.worker.getState();
      return state === 'RUNNING' ? Promise.resolve() : Promise.reject(new Error(`worker ${state}`));
    },
    redis: async () => {
      await opts.resources.redis.ping();
    },
    postgres: async () => {
      await opts.resources.pg.query('SELECT 1');
    },
    rabbitmq: async () => {
      if (!(await opts.resources.amqp.ready())) throw new Error('not connected');
    },
  };

  const server = http.createServer((req, res) => {
    const send = (status: number, body: string, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    const route = (req.url ?? '').split('?')[0];
    if (route === '/healthz') return send(200, JSON.stringify({ status: 'ok' }));
    if (route === '/readyz') {
      void Promise.all(
        Object.entries(checks).map(async ([name, check]) => {
          try {
            await within(2000, check);
            return [name, 'ok'] as const;
          } catch (err) {
            return [name, err instanceof Error ? err.message : String(err)] as const;
          }
        }),
      ).then((results) => {
        const ready = results.every(([, r]) => r === 'ok');
        send(ready ? 200 : 503, JSON.stringify({ ready, checks: Object.fromEntries(results) }));
      });
      return;
    }
    if (route === '/metrics') {
      void fetch(opts.prometheusUrl)
        .then(async (r) => send(r.status, await r.text(), 'text/plain; version=0.0.4'))
        .catch((err: unknown) => send(503, String(err), 'text/plain'));
      return;
    }
    send(404, JSON.stringify({ error: 'not found' }));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '0.0.0.0', () => resolve(server));
  });
}
