/**
 * Lua shared by the scripts that take a connection apart: the hard destroy's (./session-store.ts)
 * and the sweep's cleanup (./sweep-store.ts). `shapes` is the decoded `connectionShapes` argument
 * (./keys.ts), so no key shape is written here.
 */

/** Takes the connection out of each room's presence members and index (no leave broadcast). */
export const LEAVE_PRESENCE = `
local function leavePresence(cid, rooms, shapes)
  for _, room in ipairs(rooms) do
    redis.call('HDEL', shapes.members.p .. room .. shapes.members.s, cid)
    redis.call('LREM', shapes.index.p .. room .. shapes.index.s, 0, cid)
  end
end
`;

/**
 * Deletes the connection's subscriptions (per room and namespace, per user) and its rooms and
 * users hashes; returns how many keys went.
 */
export const PURGE_SUBSCRIPTIONS = `
local function purgeSubscriptions(roomsKey, usersKey, shapes)
  local n = 0
  for _, room in ipairs(redis.call('HKEYS', roomsKey)) do
    for _, ns in ipairs(shapes.roomSubscriptions) do
      n = n + redis.call('DEL', ns.p .. room .. ns.s)
    end
  end
  for _, client in ipairs(redis.call('HKEYS', usersKey)) do
    n = n + redis.call('DEL', shapes.userSubscriptions.p .. client .. shapes.userSubscriptions.s)
  end
  return n + redis.call('DEL', roomsKey, usersKey)
end
`;
