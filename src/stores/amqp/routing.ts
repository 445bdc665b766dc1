/**
 * RabbitMQ routing of the realtime platform: `$$:{appPid}:{h}` where h is the Java-style string
 * hash of the room id modulo RABBIT_MQ_QUEUE_COUNT. Must match the gateway bit for bit.
 */
export const ROOMS_EXCHANGE = 'ds.rooms.durable';

export function javaStringHash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = ((h << 5) - h + s.charCodeAt(i)) | 0;
  return h;
}

/** Non-negative modulo, as the gateway computes it: `((h % n) + n) % n`, not `Math.abs(h % n)`. */
function bucket(key: string, queueCount: number): number {
  return ((javaStringHash(key) % queueCount) + queueCount) % queueCount;
}

/** nspRoomId is `{appPid}:{roomId}`; the room id itself may contain `:`. */
export function roomRoutingKey(nspRoomId: string, queueCount: number): string {
  const i = nspRoomId.indexOf(':');
  const appPid = nspRoomId.slice(0, i);
  const roomId = nspRoomId.slice(i + 1);
  return `$$:${appPid}:${bucket(roomId, queueCount)}`;
}

export function userRoutingKey(clientId: string, queueCount: number): string {
  return `$$:users:${bucket(clientId, queueCount)}`;
}
