import Redis from 'ioredis';
import { Pool } from 'pg';
import type { Config } from '../config';
import type { Logger } from '../logger';
import { AmqpPublisher } from '../stores/amqp/publisher';

/** Clients of the backing services, built from config; the worker owns and closes them. */
/**
 * An idle connection dropped by the server (a restart) is reported as an 'error' event: without a
 * listener it would crash the process. Commands in flight fail on their own and are retried.
 */
export function createRedis(config: Config, logger?: Logger): Redis {
  const redis = new Redis({
    host: config.redis.host,
    port: config.redis.port,
    tls: config.redis.tls ? {} : undefined,
    // Activities retry through Temporal; a command must fail fast rather than queue forever.
    maxRetriesPerRequest: 2,
    enableOfflineQueue: true,
    lazyConnect: false,
  });
  redis.on('error', (err: Error) => logger?.warn('redis connection error', { error: err.message }));
  return redis;
}

export function createPgPool(config: Config, logger?: Logger): Pool {
  const pool = new Pool({
    host: config.db.host,
    port: config.db.port,
    database: config.db.name,
    user: config.db.user,
    password: config.db.password,
    max: config.db.maxConnections,
    idleTimeoutMillis: config.db.idleTimeoutMs,
    connectionTimeoutMillis: 5000,
    ssl: config.db.tls ? { rejectUnauthorized: false } : undefined,
  });
  pool.on('error', (err: Error) => logger?.warn('postgres idle connection lost', { error: err.message }));
  return pool;
}

export interface Resources {
  redis: Redis;
  pg: Pool;
  amqp: AmqpPublisher;
  close(): Promise<void>;
}

export function openResources(config: Config, logger?: Logger): Resources {
  const redis = createRedis(config, logger);
  const pg = createPgPool(config, logger);
  const amqp = new AmqpPublisher(config.rabbitmq.url);
  return {
    redis,
    pg,
    amqp,
    async close() {
      await Promise.allSettled([redis.quit(), pg.end(), amqp.close()]);
    },
  };
}
