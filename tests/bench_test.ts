/**
 * The benchmark harness (`deno task bench`) at tiny sizes: gatecast and the ceiling run as
 * their own processes, load generators count frames, and the report holds every field. No
 * timing is asserted here; the targets live in bench/README.md.
 */

import assert from "node:assert/strict";
import { testServer } from "./support/mysql.ts";
import { pickRows } from "../bench/row_plant.ts";
import { percentile, summarize } from "../bench/latency.ts";

async function runBench(scenarios: string): Promise<Record<string, unknown>> {
  const server = await testServer();
  const json = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const result = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "bench/main.ts",
        "--smoke",
        "--scenarios",
        scenarios,
        "--mysql-url",
        `mysql://${server.user}:${server.password}@${server.host}:${server.port}`,
        "--json",
        json,
      ],
      cwd: new URL("../", import.meta.url).pathname,
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.ok(result.success, new TextDecoder().decode(result.stderr));
    return JSON.parse(await Deno.readTextFile(json));
  } finally {
    await Deno.remove(json);
  }
}

Deno.test("the fan-out scenario delivers every tick to every client of gatecast and of the ceiling", async () => {
  // deno-lint-ignore no-explicit-any
  const report: any = await runBench("fanout");
  const { gatecast, ceiling } = report.fanout;
  for (const server of [gatecast, ceiling]) {
    assert.equal(server.dropped, 0);
    assert.equal(server.missedFrames, 0);
    assert.ok(server.completeTicks > 0, `no complete tick in ${JSON.stringify(server)}`);
    // CPU per frame is the window's CPU over its frames: the CPU share (1% = 10,000 µs a second)
    // over the frame rate, both rounded to 0.1 in the report. /proc counts CPU in 10 ms steps, so
    // a tiny run may have used none; then both sides are 0.
    const { cpuMicrosPerFrame, serverCpuPercent, framesPerSecond } = server;
    const fromShare = serverCpuPercent * 10_000 / framesPerSecond;
    const rounding = (500 + 0.1 * cpuMicrosPerFrame) / framesPerSecond + 0.01;
    assert.ok(
      Math.abs(cpuMicrosPerFrame - fromShare) <= rounding,
      `${cpuMicrosPerFrame} µs a frame, but ${serverCpuPercent}% CPU at ${framesPerSecond} frames a second`,
    );
  }
  // Both servers send the same frame, every point's new value. Over a 1 s window the values'
  // decimals (.25, .5, .75 or none, the same in every point of a frame) can differ by 3 bytes a point.
  const sizeGap = Math.abs(gatecast.meanFrameBytes - ceiling.meanFrameBytes) / ceiling.meanFrameBytes;
  assert.ok(sizeGap < 0.1, `frames of ${gatecast.meanFrameBytes} and ${ceiling.meanFrameBytes} bytes`);
  assert.equal(report.fanout.pointsPerTopic, 20);
  assert.deepEqual(report.targets.map((t: { target: string }) => t.target), [
    "4 clients x 2 topics: CPU/frame <= 1.25x ceiling",
  ]);
});

Deno.test("the deltas scenario sends nothing when nothing changes and the changed values otherwise", async () => {
  // deno-lint-ignore no-explicit-any
  const report: any = await runBench("deltas");
  const [none, some, all] = report.deltas.results;
  assert.equal(report.deltas.points, 200);
  assert.deepEqual([none.changedPercent, some.changedPercent, all.changedPercent], [0, 5, 100]);
  assert.equal(none.frames, 0);
  assert.equal(none.bytesPerTick, 0);
  assert.ok(some.bytesPerTick > 0 && some.bytesPerTick < all.bytesPerTick);
  assert.ok(all.bytesPerTick < report.deltas.snapshotBytes);
});

Deno.test("the rows scenario runs one query a poll for every site and sends each poll's changes as updates", async () => {
  // deno-lint-ignore no-explicit-any
  const report: any = await runBench("rows");
  const rows = report.rows;
  assert.deepEqual([rows.units, rows.rowsPerUnit, rows.columns, rows.clients], [3, 4, 6, 3]);
  assert.equal(rows.changedRowsPerTick, 3);
  // The test server may be shared, so its Com_select counts others too; gatecast's own count is exact.
  assert.equal(rows.gatecastQueriesPerTick, 1);
  assert.ok(rows.comSelectPerTick >= 1);
  assert.equal(rows.polls, 3);
  assert.equal(rows.skippedTicks, 0);
  // Every poll saw one batch of changes: a tick with frames per poll, all of them updates.
  assert.equal(rows.tickMs.ticks, rows.polls);
  assert.equal(rows.clientSnapshots, 0);
  assert.ok(rows.framesPerTick >= 1 && rows.framesPerTick <= 3, `${rows.framesPerTick} frames a tick`);
  assert.equal(rows.clientFramesPerTick, rows.framesPerTick);
  assert.ok(rows.bytesPerTick > 0);
  assert.equal(rows.dropped, 0);
  assert.deepEqual(report.targets.map((t: { target: string }) => t.target), [
    "3 units x 4 rows x 6 columns: 1 query/tick",
    "3 units x 4 rows x 6 columns: tick p99 <= 200 ms",
  ]);
});

Deno.test("the rows driver picks distinct rows, a different draw each step and the same in every run", () => {
  const first = pickRows(20_000, 1000, 0);
  assert.equal(new Set(first).size, 1000);
  assert.ok(first.every((id) => Number.isInteger(id) && id >= 1 && id <= 20_000));
  assert.deepEqual(pickRows(20_000, 1000, 0), first);
  assert.notDeepEqual(pickRows(20_000, 1000, 1), first);
  assert.deepEqual(pickRows(5, 5, 3).sort((a, b) => a - b), [1, 2, 3, 4, 5]);
  assert.throws(() => pickRows(5, 6, 0), /6 rows asked of 5/);
});

Deno.test("the latency summary takes nearest-rank percentiles of unsorted samples", () => {
  assert.equal(percentile([1, 2, 3, 4], 50), 2);
  assert.equal(percentile([1, 2, 3, 4], 99), 4);
  assert.equal(percentile([7], 1), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
  // 1..200 shuffled: p50 is the 100th sample, p99 the 198th.
  const samples = Array.from({ length: 200 }, (_, i) => ((i * 37) % 200) + 1);
  assert.deepEqual(summarize(samples), { count: 200, p50: 100, p99: 198, max: 200, mean: 100.5 });
  assert.deepEqual(summarize([0.04, 0.16]), { count: 2, p50: 0, p99: 0.2, max: 0.2, mean: 0.1 });
  const none = summarize([]);
  assert.equal(none.count, 0);
  assert.ok(Number.isNaN(none.p50) && Number.isNaN(none.p99));
});

Deno.test("the cluster scenario measures every reference, polls each group once and survives a killed leaseholder", async () => {
  // deno-lint-ignore no-explicit-any
  const report: any = await runBench("cluster");
  const { layouts, failover } = report.cluster;
  assert.equal(layouts.length, 2);
  for (const layout of layouts) {
    const { single, independent, cluster, groups } = layout;
    assert.deepEqual(single.nodes.map((n: { role: string }) => n.role), ["plain"]);
    assert.deepEqual(independent.nodes.map((n: { role: string }) => n.role), ["plain", "plain", "plain"]);
    // Every group has one leaseholder, which runs the group's queries (at most two a poll);
    // followers poll nothing.
    const leases = cluster.nodes.flatMap((n: { leases: string[] }) => n.leases);
    assert.equal(leases.length, groups, JSON.stringify(cluster.nodes));
    for (const node of cluster.nodes.filter((n: { role: string }) => n.role === "follower")) {
      assert.equal(node.polls, 0, JSON.stringify(node));
    }
    for (const node of cluster.nodes.filter((n: { role: string }) => n.role === "leaseholder")) {
      assert.ok(node.polls > 0 && node.queriesPerPoll > 0 && node.queriesPerPoll <= 2, JSON.stringify(node));
    }
    assert.ok(cluster.changedTopicsPerTick > 0, JSON.stringify(cluster));
    // Ticks are the poll intervals the window spans (one more when its last poll came late), not
    // polls over groups, which a group polled twice would inflate.
    assert.ok(cluster.ticks === layout.ticks || cluster.ticks === layout.ticks + 1, JSON.stringify(cluster));
    // Each node compared with its own plain node, and each plain node with the single one.
    assert.equal(layout.cpuPerFrameVsIndependent.length, 3);
    assert.equal(layout.independentVsSingle.length, 3);
  }
  // The query and Redis targets are counts, not timings: they hold at any size.
  const counted = report.targets.filter((t: { target: string }) => /queries|Redis states/.test(t.target));
  assert.equal(counted.length, 3 * layouts.length);
  for (const t of counted) assert.ok(t.ok, JSON.stringify(t));
  // The leaseholder killed: another node took the group, every survivor's watcher applied each
  // new value, and each topic's first frame after the kill was a snapshot or the next seq (never
  // a gap, nor an update in a new epoch); no client dropped.
  assert.notEqual(failover.newLeaseholder, failover.killed);
  assert.equal(failover.survivorClientsDropped, 0);
  for (const seen of failover.seenMs) {
    assert.ok(seen.msFromKill.length > 0 && seen.msFromKill.every(Number.isFinite), JSON.stringify(seen));
  }
  for (const first of failover.firstFrames) {
    assert.deepEqual(
      [first.none, first["update-gap"], first["update-new-epoch"]],
      [0, 0, 0],
      JSON.stringify(first),
    );
  }
});
