/**
 * Which lease a node hands over, so that the polling of a cluster's groups spreads over its
 * nodes: leases go to whichever node asks first (at a start, the first node up takes every
 * group), and a node polls its groups for every node's clients, so one node holding most
 * leases does most of the cluster's polling (bench/README.md). Pure: the cluster reads the
 * loads from Redis and runs the handover (`cluster.ts`, `cluster_keys.ts` `HANDOVER_SCRIPT`).
 */

/** A group this node leads, and the other nodes whose clients hold topics of it. */
export interface LedGroup {
  /** The group, `db/handle`. */
  readonly group: string;
  /** The other nodes with topics of the group: only they take its lease. */
  readonly interested: ReadonlySet<string>;
}

/** A lease to hand over. */
export interface Handover {
  /** The group, `db/handle`. */
  readonly group: string;
  /** The node that takes it. */
  readonly to: string;
}

/**
 * The one lease to hand over now, if any: to the live node holding the fewest leases among
 * those interested in a group this node leads, when it holds at least two fewer than this node.
 * Each handover then narrows the spread, and none can be answered by one back (after it, the
 * taker holds at most as many as the giver), so the leases settle within a difference of one.
 * Ties go to the node, then the group, first in name order, so that nodes agree.
 *
 * @param held the number of leases this node holds
 * @param led the groups this node leads
 * @param loads the number of leases of each other live node (a node not listed is not live)
 *
 * @example
 * ```ts
 * const led = [{ group: "plant1/real", interested: new Set(["b"]) }];
 * chooseHandover(3, led, new Map([["b", 0]])); // { group: "plant1/real", to: "b" }
 * chooseHandover(1, led, new Map([["b", 0]])); // undefined: one apart
 * ```
 */
export function chooseHandover(
  held: number,
  led: readonly LedGroup[],
  loads: ReadonlyMap<string, number>,
): Handover | undefined {
  let best: (Handover & { load: number }) | undefined;
  for (const { group, interested } of [...led].sort((a, b) => compare(a.group, b.group))) {
    for (const node of interested) {
      const load = loads.get(node);
      if (load === undefined || held - load < 2) continue;
      if (best === undefined || load < best.load || (load === best.load && compare(node, best.to) < 0)) {
        best = { group, to: node, load };
      }
    }
  }
  return best && { group: best.group, to: best.to };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
