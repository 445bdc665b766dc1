import Redis from 'ioredis';
import { Pool } from 'pg';
import type { Config } from './config';
import { AmqpPublisher } from './activities/amqp-publisher';

/** Clients of the backing services, built from config; the worker owns and closes them. */
export function createRedis(config: Config): Redis {
  return new Redis({
    host: config.redis.host,
    port: config.redis.port,
    tls: config.redis.tls ? {} : undefined,
    // Activities retry through Temporal; a command must fail fast rather than queue forever.
    maxRetriesPerRequest: 2,
    enableOfflineQueue: true,
    lazyConnect: false,
  });
}

export function createPgPool(config: Config): Pool {
  return new Pool({
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
}

export interface Resources {
  redis: Redis;
  pg: Pool;
  amqp: AmqpPublisher;
  close(): Promise<void>;
}

export function openResources(config: Config): Resources {
  const redis = createRedis(config);
  const pg = createPgPool(config);
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
