import type { Client } from '@temporalio/client';
import type Redis from 'ioredis';
import type { Pool } from 'pg';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { AmqpPublisher } from '../stores/amqp/publisher';

/** What the activity factories are built from: the worker's clients and settings. */
export interface ActivityDeps {
  redis: Redis;
  pg: Pool;
  amqp: AmqpPublisher;
  config: Config;
  logger: Logger;
  /** For activities that signal or describe workflows (user workflows, the sweep). */
  temporal?: Client;
  /** Task queue of the workflows those activities start; default: the calling activity's. */
  taskQueue?: string;
}
