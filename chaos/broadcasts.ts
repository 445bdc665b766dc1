import amqp from 'amqplib';
import { ROOMS_EXCHANGE } from '../src/stores/amqp/routing';
import type { Config } from '../src/config';

export interface Broadcast {
  routingKey: string;
  nspRoomId: string;
  event: string;
  data: Record<string, unknown>;
  /** AMQP properties: the publisher's id of the message (edge messages) and its send time, in seconds. */
  messageId?: string;
  sentAtS?: number;
}

/**
 * A durable queue of the run, bound to every user routing key and to the room routing keys of the
 * run's apps. Durable (and the publisher's messages persistent), so it keeps what was published
 * across a RabbitMQ restart; read once at the end. It expires an hour after last use, so a harness
 * that died leaves nothing behind for long.
 */
export class BroadcastRecorder {
  readonly queue: string;

  constructor(
    private readonly config: Config,
    runId: string,
  ) {
    this.queue = `tether-chaos-${runId}`;
  }

  private async channel<T>(fn: (ch: amqp.Channel) => Promise<T>): Promise<T> {
    const connection = await amqp.connect(this.config.rabbitmq.url);
    connection.on('error', () => undefined);
    try {
      const channel = await connection.createChannel();
      channel.on('error', () => undefined);
      return await fn(channel);
    } finally {
      await connection.close().catch(() => undefined);
    }
  }

  async setup(appPids: string[]): Promise<void> {
    const n = this.config.rabbitmq.queueCount;
    await this.channel(async (ch) => {
      await ch.assertExchange(ROOMS_EXCHANGE, 'topic', { durable: true });
      await ch.assertQueue(this.queue, { durable: true, arguments: { 'x-expires': 3_600_000 } });
      for (let i = 0; i < n; i++) {
        await ch.bindQueue(this.queue, ROOMS_EXCHANGE, `$$:users:${i}`);
        for (const app of appPids) await ch.bindQueue(this.queue, ROOMS_EXCHANGE, `$$:${app}:${i}`);
      }
    });
  }

  /** Everything in the queue, in order; keeps only what `keep` accepts. */
  async drain(keep: (b: Broadcast) => boolean): Promise<Broadcast[]> {
    return this.channel(async (ch) => {
      const out: Broadcast[] = [];
      for (;;) {
        const m = await ch.get(this.queue, { noAck: true });
        if (!m) break;
        try {
          const body = JSON.parse(m.content.toString()) as Omit<Broadcast, 'routingKey'>;
          const props = m.properties as { messageId?: string; timestamp?: number };
          const b: Broadcast = {
            routingKey: m.fields.routingKey,
            nspRoomId: body.nspRoomId,
            event: body.event,
            data: body.data,
            ...(props.messageId !== undefined && { messageId: props.messageId }),
            ...(props.timestamp !== undefined && { sentAtS: props.timestamp }),
          };
          if (keep(b)) out.push(b);
        } catch {
          // not ours
        }
      }
      return out;
    });
  }

  async remove(): Promise<void> {
    await this.channel((ch) => ch.deleteQueue(this.queue)).catch(() => undefined);
  }
}
