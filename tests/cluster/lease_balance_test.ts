/**
 * Which lease a node hands over (lib/cluster/lease_balance.ts): to the live node with the fewest
 * leases among those interested, only when it holds two fewer, one at a time, the same choice
 * on every node.
 */

import assert from "node:assert/strict";
import { chooseHandover, type LedGroup } from "../../lib/cluster/lease_balance.ts";

const led = (entries: Record<string, string[]>): LedGroup[] =>
  Object.entries(entries).map(([group, nodes]) => ({ group, interested: new Set(nodes) }));

Deno.test("a node holding every lease hands one to a node holding none", () => {
  const groups = led({ "p1/real": ["b", "c"], "p2/real": ["b"], "p3/real": ["c"] });
  assert.deepEqual(chooseHandover(3, groups, new Map([["b", 0], ["c", 0]])), { group: "p1/real", to: "b" });
});

Deno.test("no handover between nodes one lease apart, or equal: leases settle within one", () => {
  const groups = led({ "p1/real": ["b"], "p2/real": ["b"] });
  assert.equal(chooseHandover(2, groups, new Map([["b", 1]])), undefined);
  assert.equal(chooseHandover(2, groups, new Map([["b", 2]])), undefined);
  assert.equal(chooseHandover(1, groups, new Map([["b", 0]])), undefined);
});

Deno.test("the least loaded interested node takes it; a node without topics in the group is never chosen", () => {
  const groups = led({ "p1/real": ["b"], "p2/real": ["c"] });
  const loads = new Map([["b", 2], ["c", 1], ["d", 0]]);
  assert.deepEqual(chooseHandover(4, groups, loads), { group: "p2/real", to: "c" });
});

Deno.test("a node missing from the loads (not live) is not handed anything", () => {
  const groups = led({ "p1/real": ["b"], "p2/real": ["b"] });
  assert.equal(chooseHandover(2, groups, new Map()), undefined);
  assert.equal(chooseHandover(2, groups, new Map([["c", 0]])), undefined);
});

Deno.test("ties go to the node, then the group, first by name, whatever the order given", () => {
  const loads = new Map([["c", 0], ["b", 0]]);
  const one = led({ "p2/real": ["c", "b"], "p1/real": ["c"] });
  const other = led({ "p1/real": ["c"], "p2/real": ["b", "c"] });
  assert.deepEqual(chooseHandover(3, one, loads), { group: "p2/real", to: "b" });
  assert.deepEqual(chooseHandover(3, other, loads), { group: "p2/real", to: "b" });
  assert.deepEqual(chooseHandover(3, led({ "p2/real": ["b"], "p1/real": ["b"] }), loads), {
    group: "p1/real",
    to: "b",
  });
});

Deno.test("handovers chosen one after another spread six leases over three nodes two each, and stop", () => {
  const groups = ["p1/real", "p2/real", "p3/real", "p4/real", "p5/real", "p6/real"];
  const holders = new Map(groups.map((group) => [group, "a"]));
  const nodes = ["a", "b", "c"];
  const count = (node: string) => [...holders.values()].filter((holder) => holder === node).length;
  let handovers = 0;
  for (let round = 0; round < 20; round++) {
    let moved = false;
    for (const node of nodes) {
      const mine = groups.filter((group) => holders.get(group) === node);
      const others = nodes.filter((other) => other !== node);
      const choice = chooseHandover(
        mine.length,
        mine.map((group) => ({ group, interested: new Set(others) })),
        new Map(others.map((other) => [other, count(other)])),
      );
      if (choice !== undefined) {
        holders.set(choice.group, choice.to);
        handovers++;
        moved = true;
      }
    }
    if (!moved) break;
  }
  assert.deepEqual(nodes.map(count), [2, 2, 2]);
  assert.equal(handovers, 4, "each lease moved once at most: four of a's six");
});
