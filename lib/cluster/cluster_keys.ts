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
 * | `<p>state:<db>/<handle>` | hash, PX | each topic's last whole shared state, and its latest values since (`shared_state.ts`) |
 * | `<p>health:<db>/<handle>` | string, PX | the leaseholder's report of the group's database (`database_report.ts`) |
 * | `<p>db-health:<db>` | string, PX | the same report of the database, by any leaseholder of one of its groups: for the nodes without topics in it |
 * | `<p>nodes` | sorted set | the nodes, scored by expiry (ms) |
 * | `<p>load:<node>` | string (a count), PX | the number of leases the node holds (`lease_balance.ts`) |
 * | `<p>states:<db>/<handle>` | channel | each poll's changes of the group, as its leaseholder polled them, in one message (`shared_state.ts` `readStateBatch`) |
 * | `<p>wake` | channel | "poll this group now" to its leaseholder (a new topic, a notify) |
 */

import { valuesField } from "./shared_state.ts";

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

  /** The latest report of a database's health by the leaseholder of any of its groups. */
  databaseHealth(db: string): string {
    return `${this.prefix}db-health:${db}`;
  }

  /** The live nodes. */
  get nodes(): string {
    return `${this.prefix}nodes`;
  }

  /** The number of leases a node holds, as it last said (or as a handover changed it). */
  load(node: string): string {
    return `${this.prefix}load:${node}`;
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

/**
 * KEYS[1] lease, KEYS[2] fence; ARGV[1] node, ARGV[2] ms. Takes a free lease: the new fence. A
 * lease that is already the node's (another node handed it over, {@link HANDOVER_SCRIPT}) is
 * extended and its fence returned. 0 when another node holds it.
 */
export const ACQUIRE_SCRIPT = `local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  local fence = redis.call('GET', KEYS[2])
  if fence then return tonumber(fence) end
  return redis.call('INCR', KEYS[2])
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('INCR', KEYS[2])`;

/**
 * KEYS[1] lease, KEYS[2] fence, KEYS[3] the giver's load, KEYS[4] the taker's load; ARGV[1] the
 * giver, ARGV[2] the taker, ARGV[3] ms. Hands the giver's lease to the taker under a new fence
 * (so that nothing the giver sends later is taken for the taker's) and moves one from the
 * giver's load to the taker's: the new fence. 0 when the lease is not the giver's, or the
 * taker's load is gone (a node not seen for a while is not handed anything).
 */
export const HANDOVER_SCRIPT =
  `if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('EXISTS', KEYS[4]) == 0 then
  return 0
end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('DECR', KEYS[3]) end
redis.call('INCR', KEYS[4])
return fence`;

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
 * (topic key, kind, text) triples, as `shared_state.ts` `encodeChange` makes them: kind `state`
 * for a whole state, `values` for values alone (a poll that changed nothing else). While the lease is the node's, keeps each whole state under its topic's key in the
 * hash (clearing the values kept beside it) and each values under the topic's values field
 * (`valuesField`), and publishes every text in ONE message on the channel, a line a key and a
 * line a text, in order (`shared_state.ts` `readStateBatch`; of two texts of one topic, the
 * hash keeps the later): the number of states published;
 * 0 (nothing written, nothing published) for no triples or when the lease is not the node's,
 * so that a node that lost its lease publishes nothing.
 */
export const PUBLISH_SCRIPT = `if #ARGV < 5 or redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local kept, cleared, lines = {}, {}, {}
for i = 3, #ARGV, 3 do
  local key, text = ARGV[i], ARGV[i + 2]
  local values = key .. '${valuesField("")}'
  if ARGV[i + 1] == 'values' then
    kept[values], cleared[values] = text, nil
  else
    kept[key], kept[values], cleared[values] = text, nil, true
  end
  lines[#lines + 1] = key
  lines[#lines + 1] = text
end
local fields, gone = {}, {}
for field, text in pairs(kept) do
  fields[#fields + 1] = field
  fields[#fields + 1] = text
end
for field in pairs(cleared) do gone[#gone + 1] = field end
redis.call('HSET', KEYS[2], unpack(fields))
if #gone > 0 then redis.call('HDEL', KEYS[2], unpack(gone)) end
redis.call('PUBLISH', ARGV[2], table.concat(lines, '\\n'))
return #lines / 2`;
