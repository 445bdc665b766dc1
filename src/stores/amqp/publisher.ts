import amqp from 'amqplib';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { ROOMS_EXCHANGE } from './routing';

/**
 * Publishes to the rooms exchange and resolves only once the broker confirms. Connects lazily and
 * again after the broker went away, so a RabbitMQ outage fails the activity (which Temporal
 * retries with backoff) instead of losing the message.
 */
export class AmqpPublisher {
  private pending: Promise<ConfirmChannel> | undefined;
  private connection: ChannelModel | undefined;

  constructor(private readonly url: string) {}

  private channel(): Promise<ConfirmChannel> {
    this.pending ??= this.open().catch((err: unknown) => {
      this.pending = undefined;
      throw err;
    });
    return this.pending;
  }

  private async open(): Promise<ConfirmChannel> {
    const connection = await amqp.connect(this.url);
    const reset = () => {
      if (this.connection === connection) {
        this.connection = undefined;
        this.pending = undefined;
      }
    };
    connection.on('error', reset);
    connection.on('close', reset);
    this.connection = connection;
    const channel = await connection.createConfirmChannel();
    channel.on('error', reset);
    channel.on('close', reset);
    await channel.assertExchange(ROOMS_EXCHANGE, 'topic', { durable: true });
    return channel;
  }

  /**
   * `messageId`, when given, is the same on every attempt to send one message: a consumer can drop
   * a repeat (one is possible after a crash between the broker's confirm and our progress write).
   */
  async publish(routingKey: string, body: unknown, opts: { messageId?: string } = {}): Promise<void> {
    const channel = await this.channel();
    await new Promise<void>((resolve, reject) => {
      channel.publish(
        ROOMS_EXCHANGE,
        routingKey,
        Buffer.from(JSON.stringify(body)),
        {
          persistent: true,
          contentType: 'application/json',
          timestamp: Math.floor(Date.now() / 1000),
          ...(opts.messageId !== undefined && { messageId: opts.messageId }),
        },
        (err) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve()),
      );
    });
  }

  async ready(): Promise<boolean> {
    try {
      await this.channel();
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    const connection = this.connection;
    this.connection = undefined;
    this.pending = undefined;
    await connection?.close().catch(() => undefined);
  }
}
