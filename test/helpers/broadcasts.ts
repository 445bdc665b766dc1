import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { ROOMS_EXCHANGE } from '../../src/stores/amqp/routing';
import type { Config } from '../../src/config';
import { expectedUserRoutingKey } from './routing';

export interface Captured {
  routingKey: string;
  messageId: string | undefined;
  body: { nspRoomId: string; event: string; data: Record<string, unknown>; service: string; session: unknown };
}

/**
 * A private queue bound to the rooms exchange with a user's routing key (`$$:users:{n}`, computed
 * by test/helpers/routing.ts, independently of src: a wrong bucket in src delivers nothing here);
 * keeps the messages about that user only (other tests on this machine publish to the same keys).
 */
export async function captureUserBroadcasts(config: Config, clientId: string) {
  const routingKey = expectedUserRoutingKey(clientId, config.rabbitmq.queueCount);
  const sentinels = new Set<string>();
  const connection = await amqp.connect(config.rabbitmq.url);
  const channel = await connection.createChannel();
  await channel.assertExchange(ROOMS_EXCHANGE, 'topic', { durable: true });
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  await channel.bindQueue(queue, ROOMS_EXCHANGE, routingKey);
  const messages: Captured[] = [];
  await channel.consume(
    queue,
    (m) => {
      if (!m) return;
      const body = JSON.parse(m.content.toString()) as Captured['body'] & { sentinel?: string };
      if (body.sentinel !== undefined) sentinels.add(body.sentinel);
      else if (body.nspRoomId === `users:${clientId}`)
        messages.push({
          routingKey: m.fields.routingKey,
          messageId: (m.properties as { messageId?: string }).messageId,
          body,
        });
    },
    { noAck: true },
  );
  return {
    routingKey,
    messages,
    /** Event suffixes in arrival order: 'connection:status', 'connect', 'disconnect'. */
    events: () => messages.map((m) => m.body.event.slice(`users:${clientId}:$:user:`.length)),
    /**
     * Absence, deterministically: a sentinel published (confirmed) to the same routing key after
     * everything already confirmed to the exchange reaches this queue after all of it. Call it
     * once the producer is done (its activity returned, the workflow's counters show the edge);
     * then `events()` is complete up to that point, with no pause.
     */
    async drain(timeoutMs = 10_000) {
      const sentinel = randomUUID();
      const pub = await connection.createConfirmChannel();
      pub.publish(ROOMS_EXCHANGE, routingKey, Buffer.from(JSON.stringify({ sentinel })));
      await pub.waitForConfirms();
      await pub.close();
      await waitFor(
        'the sentinel',
        () => sentinels.has(sentinel),
        (v) => v,
        timeoutMs,
      );
    },
    async close() {
      await channel.close().catch(() => undefined);
      await connection.close().catch(() => undefined);
    },
  };
}

/** Polls (wall clock) until `check` holds; fails with the last observed value. */
export async function waitFor<T>(
  what: string,
  read: () => Promise<T> | T,
  check: (v: T) => boolean,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T;
  do {
    last = await read();
    if (check(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  } while (Date.now() < deadline);
  throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
}

export const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
