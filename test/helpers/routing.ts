/**
 * The gateway's RabbitMQ routing (contract §6), computed here independently of
 * src/stores/amqp/routing.ts so that tests check the implementation against the contract, not
 * against itself: Java's String.hashCode (s[0]·31^(n-1) + … + s[n-1], UTF-16 code units, in 32-bit
 * two's complement) done in BigInt arithmetic, and the bucket ((h % n) + n) % n.
 */
export function javaHashCode(s: string): number {
  let h = 0n;
  for (let i = 0; i < s.length; i++) h = BigInt.asIntN(32, h * 31n + BigInt(s.charCodeAt(i)));
  return Number(h);
}

export function bucketOf(id: string, queueCount: number): number {
  const h = javaHashCode(id);
  return ((h % queueCount) + queueCount) % queueCount;
}

/** `$$:users:{bucket of the clientId}`. */
export function expectedUserRoutingKey(clientId: string, queueCount: number): string {
  return `$$:users:${bucketOf(clientId, queueCount)}`;
}

/** `$$:{appPid}:{bucket of the room id}`, the room id being everything after the first `:`. */
export function expectedRoomRoutingKey(nspRoomId: string, queueCount: number): string {
  const i = nspRoomId.indexOf(':');
  return `$$:${nspRoomId.slice(0, i)}:${bucketOf(nspRoomId.slice(i + 1), queueCount)}`;
}
