/**
 * The Redis keys and channels of a cluster, all under its prefix, and the Lua scripts that
 * change a lease, or publish under one, atomically (Redis runs them with `EVAL`, on the server).
 * Pure.
 *
 * | key / channel | type | what |
 * |---|---|---|
 * | `<p>lease:<db>/<handle>` | string, PX | the node that polls the group |
 * | `<p>fence:<db>/<handle>` | counter | incremented by each new lease: the fence, part of the topics' epoch |
 * | `<p>interest:<db>/<handle>` | sorted set | `[node, unit]` of every node's topics, scored by expiry (ms) |
 * | `<p>state:<db>/<handle>` | hash, PX | each topic's latest shared state (`shared_state.ts`) |
 * | `<p>health:<db>/<handle>` | string, PX | the leaseholder's report of the group's database (`database_report.ts`) |
 * | `<p>nodes` | sorted set | the nodes, scored by expiry (ms) |
 * | `<p>states:<db>/<handle>` | channel | each poll's changes of the group, as its leaseholder polled them, in one message (`shared_state.ts` `readStateBatch`) |
 * | `<p>wake` | channel | "poll this group now" to its leaseholder (a new topic, a notify) |
 */

/** Key and channel names of one cluster. */
export class ClusterKeys {
  /** @param prefix the cluster's prefix (`cluster.prefix`, default `gatecast:`) */
  constructor(readonly prefix: string) {}

  /** The lease of a group (`db/handle`). */
  lease(group: string): string {
    return `${this.prefix}lease:${group}`;
  }

  /** The fencing counter of a group. */
  fence(group: string): string {
    return `${this.prefix}fence:${group}`;
  }

  /** The nodes' topics of a group. */
  interest(group: string): string {
    return `${this.prefix}interest:${group}`;
  }

  /** The latest shared state of each topic of a group. */
  state(group: string): string {
    return `${this.prefix}state:${group}`;
  }

  /** The leaseholder's report of a group's database health. */
  health(group: string): string {
    return `${this.prefix}health:${group}`;
  }

  /** The live nodes. */
  get nodes(): string {
    return `${this.prefix}nodes`;
  }

  /** The channel of a group's changed states, one message a poll. */
  states(group: string): string {
    return `${this.prefix}states:${group}`;
  }

  /** The channel of poll requests to leaseholders. */
  get wake(): string {
    return `${this.prefix}wake`;
  }
}

/** KEYS[1] lease, KEYS[2] fence; ARGV[1] node, ARGV[2] ms. Takes a free lease: the new fence, or 0. */
export const ACQUIRE_SCRIPT = `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0`;

/** KEYS[1] lease; ARGV[1] node, ARGV[2] ms. Extends the node's own lease: 1, or 0 when it is not the node's. */
export const RENEW_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`;

/** KEYS[1] lease; ARGV[1] node. Gives the node's own lease up: 1, or 0 when it is not the node's. */
export const RELEASE_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

/**
 * KEYS[1] lease, KEYS[2] state hash; ARGV[1] node, ARGV[2] the group's states channel, then
 * (topic key, whole state, change) triples (`shared_state.ts` `encodeState`, `encodeChange`).
 * While the lease is the node's, keeps each whole state in the hash and publishes the changes
 * in ONE message on the channel, a line a key and a line a change, in order (`shared_state.ts`
 * `readStateBatch`): the number of states published; 0 (nothing written, nothing published)
 * for no triples or when the lease is not the node's, so that a node that lost its lease
 * publishes nothing.
 */
export const PUBLISH_SCRIPT = `if #ARGV < 5 or redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local fields, lines = {}, {}
for i = 3, #ARGV, 3 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
  lines[#lines + 1] = ARGV[i]
  lines[#lines + 1] = ARGV[i + 2]
end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('PUBLISH', ARGV[2], table.concat(lines, '\\n'))
return #lines / 2`;
