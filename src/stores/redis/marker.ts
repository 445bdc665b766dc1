import type { Session } from '../../contracts/session';

/**
 * The active marker `session:{cid}:active`: the session (minus permissions, by construction),
 * its timestamp and socketId, alive 3 × idle unless refreshed.
 */
export function markerJson(session: Session, timestamp: string): string {
  return JSON.stringify({ ...session, timestamp, socketId: session.socketId });
}

/** The marker with its timestamp cut out, and the byte offset where a refresh puts it back. */
export function markerTemplate(session: Session): string {
  const a = markerJson(session, 'a');
  const b = markerJson(session, 'b');
  let i = 0;
  while (a[i] === b[i]) i++;
  const json = a.slice(0, i) + a.slice(i + 1);
  return `${Buffer.byteLength(a.slice(0, i))}|${json}`;
}

/** The session fields of a connection's rows, read back from its marker template (see above). */
export function sessionOfTemplate(
  template: string,
): Pick<Session, 'appPid' | 'keyId' | 'uid' | 'clientId' | 'connectionId' | 'socketId'> {
  const bar = template.indexOf('|');
  const offset = Number(template.slice(0, bar));
  // The offset counts bytes (for Lua), so the timestamp goes back in on the bytes.
  const json = Buffer.from(template.slice(bar + 1));
  const m = JSON.parse(
    Buffer.concat([json.subarray(0, offset), Buffer.from('t'), json.subarray(offset)]).toString(),
  ) as Session;
  return {
    appPid: m.appPid,
    keyId: m.keyId,
    uid: m.uid,
    clientId: m.clientId,
    connectionId: m.connectionId,
    socketId: m.socketId,
  };
}

export function markerTtlSeconds(idleTimeoutMs: number): number {
  return Math.max(1, Math.ceil((idleTimeoutMs / 1000) * 3));
}

/**
 * Lua: returns -1 (NEWER_SOCKET_LIVE) when the marker (KEYS[1]) belongs to another, newer socket
 * than ARGV[2], so a script of an older socket removes nothing.
 */
export const MARKER_GUARD = `
local m = redis.call('GET', KEYS[1])
if m and ARGV[2] ~= '' then
  local ok, s = pcall(cjson.decode, m)
  if ok and type(s) == 'table' and s.socketId and s.socketId ~= ARGV[2] then return -1 end
end
`;
export const NEWER_SOCKET_LIVE = -1;
