/**
 * `deno task bench`: gatecast under load, in its own process, against a minimal Deno broadcast
 * server (the ceiling) under the same load, on loopback, bounded in time. Prints a table and
 * the JSON of every measurement; `--json <file>` also writes the JSON to a file.
 *
 *   deno task bench                      every scenario at full size (a few minutes)
 *   deno task bench --quick              every scenario, small and short
 *   deno task bench --scenarios fanout,db
 *   deno task bench --scenarios rows                         a custom handle, 1,000 units x 20 rows
 *   deno task bench --scenarios latency                      commit to client: polling, /notify, binlog
 *   deno task bench --scenarios fanout --profile /tmp/prof   gatecast runs with --cpu-prof
 *   deno task bench --scenarios fanout --staggered-joins     each subscriber of a topic at its own seq
 *   deno task bench --scenarios cluster                      3 nodes through Redis, failover, 2 nodes vs 1
 *
 * Scenarios: `fanout` (gatecast and the ceiling), `crowd` (idle RSS per connection, then a
 * push to all of them), `db` (queries and duration per tick), `rows` (a handle of the
 * configuration at 1,000 units: queries, tick, frames and CPU per tick), `deltas` (bytes per tick),
 * `startup` (time to listening), `latency` (commit to client by polling, `/notify` and binlog, in
 * bench/latency.ts), `cluster` (three nodes sharing one poll through Redis: queries, Redis messages,
 * CPU per frame, failover, two nodes against one; in bench/cluster.ts). The database is a throw-away
 * `mariadbd`, so that its `Com_select` counts only gatecast's queries, unless `--mysql-url` names one.
 */

import { parseArgs } from "node:util";
import { freePort, type ServerInfo, startThrowawayMariadb } from "../tests/support/mysql.ts";
import type { MysqlSettings } from "../lib/config/config.ts";
import { type BenchPlant, CODES_PER_DEVICE, createBenchPlant } from "./plant.ts";
import { createRowPlant, siteName, TANK_COLUMNS, TANKS_SQL } from "./row_plant.ts";
import { cpuMicros, machineCpuTicks, rssBytes, rssOverWindow } from "./process_stats.ts";
import {
  gatecastFlags,
  LoadProcess,
  type ServerProcess,
  startCeiling,
  startGatecast,
  timeToListening,
} from "./processes.ts";
import type { LoadReport, TickArrivals } from "./load_client.ts";
import type { LatencyRun } from "./latency.ts";
import { CLUSTER_FULL, CLUSTER_QUICK, CLUSTER_SMOKE, clusterScenario, clusterTargets } from "./cluster.ts";

/** MariaDB's own default InnoDB buffer pool: the bench plant (30 MiB at 1,000 units) fits in it. */
const MARIADB_DEFAULT_BUFFER_POOL_MIB = 128;

const SCENARIOS = ["fanout", "crowd", "db", "rows", "deltas", "startup", "latency", "cluster"] as const;
type Scenario = typeof SCENARIOS[number];

/** Sizes of every scenario; `--quick` shrinks them. */
const FULL = {
  fanout: { clients: 2000, topics: 20, bytes: 5000, intervalMs: 100, warmupMs: 3000, windowMs: 10_000 },
  crowd: {
    idleCounts: [5000, 15_000],
    topics: 20,
    bytes: 2000,
    intervalMs: 1000,
    warmupMs: 3000,
    windowMs: 15_000,
    rssWindowMs: 30_000,
  },
  db: { units: [1, 100, 1000], devices: 20, intervalMs: 1000, ticks: 5 },
  rows: { units: 1000, rowsPerUnit: 20, changedFraction: 0.05, intervalMs: 1000, warmupTicks: 3, ticks: 20 },
  deltas: { devices: 20, fractions: [0, 0.05, 1], intervalMs: 200, ticks: 15 },
  startup: { runs: 5 },
  latency: { changes: 200, idleSeconds: 10 },
  cluster: CLUSTER_FULL,
};
const QUICK: typeof FULL = {
  fanout: { clients: 400, topics: 20, bytes: 5000, intervalMs: 100, warmupMs: 1500, windowMs: 4000 },
  crowd: {
    idleCounts: [1000, 3000],
    topics: 20,
    bytes: 2000,
    intervalMs: 1000,
    warmupMs: 2000,
    windowMs: 5000,
    rssWindowMs: 5000,
  },
  db: { units: [1, 100, 1000], devices: 20, intervalMs: 1000, ticks: 3 },
  rows: { units: 1000, rowsPerUnit: 20, changedFraction: 0.05, intervalMs: 1000, warmupTicks: 2, ticks: 8 },
  deltas: { devices: 20, fractions: [0, 0.05, 1], intervalMs: 200, ticks: 10 },
  startup: { runs: 3 },
  latency: { changes: 200, idleSeconds: 5 },
  cluster: CLUSTER_QUICK,
};

/** Tiny sizes that only prove the harness works (`--smoke`, used by tests/bench_test.ts). */
const SMOKE: typeof FULL = {
  fanout: { clients: 4, topics: 2, bytes: 1000, intervalMs: 100, warmupMs: 300, windowMs: 1000 },
  crowd: {
    idleCounts: [4, 8],
    topics: 2,
    bytes: 1000,
    intervalMs: 200,
    warmupMs: 300,
    windowMs: 1000,
    rssWindowMs: 1000,
  },
  db: { units: [1, 2], devices: 2, intervalMs: 200, ticks: 3 },
  rows: { units: 3, rowsPerUnit: 4, changedFraction: 0.25, intervalMs: 300, warmupTicks: 1, ticks: 3 },
  deltas: { devices: 20, fractions: [0, 0.05, 1], intervalMs: 200, ticks: 3 },
  startup: { runs: 1 },
  latency: { changes: 20, idleSeconds: 2 },
  cluster: CLUSTER_SMOKE,
};

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

/** One `update` change entry of the benchmark's plant, to size frames in bytes. */
const CHANGE_BYTES = JSON.stringify({ address: "U10D10", code: "c0", value: 110.35 }).length + 1;

/** Devices per unit so that an update of every value is about `bytes` long. */
function devicesFor(bytes: number): number {
  return Math.max(1, Math.round(bytes / CHANGE_BYTES / CODES_PER_DEVICE));
}

/** What a bench configuration may add to the defaults. */
interface ConfigExtras {
  /** Default `warn`. */
  logLevel?: string;
  /** The configuration's `handles` section; default none. */
  handles?: Record<string, unknown>;
}

async function writeConfig(
  plant: { readonly settings: MysqlSettings },
  port: number,
  intervalMs: number,
  { logLevel = "warn", handles }: ConfigExtras = {},
): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "gatecast-bench-", suffix: ".json" });
  const { driver: _, ...database } = plant.settings;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      host: "127.0.0.1",
      port,
      pollIntervalMs: intervalMs,
      logLevel,
      // Every client comes from 127.0.0.1; gatecast still keeps the cap under its open-file limit.
      maxConnections: 20_000,
      maxConnectionsPerAddress: 20_000,
      auth: { mode: "none" },
      databases: { bench: database },
      ...(handles ? { handles } : {}),
    }),
  );
  return path;
}

/** gatecast's `/metrics`, as name{labels} → value. */
async function scrape(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line === "") continue;
    const space = line.lastIndexOf(" ");
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Each tick's arrivals over every load process, in the order of the ticks. */
function mergeTicks(reports: LoadReport[]): TickArrivals[] {
  const merged = new Map<number, TickArrivals>();
  for (const report of reports) {
    for (const tick of report.ticks) {
      const seen = merged.get(tick.ts);
      if (!seen) merged.set(tick.ts, { ...tick });
      else {
        seen.first = Math.min(seen.first, tick.first);
        seen.last = Math.max(seen.last, tick.last);
        seen.count += tick.count;
      }
    }
  }
  return [...merged.values()].sort((a, b) => a.ts - b.ts);
}

/** Spread between the first and last client receiving each tick, over every load process. */
function spreads(reports: LoadReport[], clients: number) {
  // The window cuts the first and last tick: leave them out.
  const ticks = mergeTicks(reports).slice(1, -1);
  const complete = ticks.filter((t) => t.count >= clients);
  const spread = complete.map((t) => t.last - t.first).sort((a, b) => a - b);
  // A frame's `ts` is taken when the poll's queries have returned, just before the fan-out.
  const fanoutMs = complete.map((t) => t.last - t.ts);
  return {
    meanFanoutMs: round(fanoutMs.reduce((a, b) => a + b, 0) / Math.max(1, fanoutMs.length)),
    ticks: ticks.length,
    completeTicks: complete.length,
    missedFrames: ticks.reduce((sum, t) => sum + Math.max(0, clients - t.count), 0),
    spreadP50Ms: round(percentile(spread, 50)),
    spreadP99Ms: round(percentile(spread, 99)),
    spreadMaxMs: round(spread.at(-1) ?? NaN),
  };
}

/** Opens `clients` clients over `topics` topics, split over the load processes. */
async function connectAll(loaders: LoadProcess[], port: number, clients: number, topics: string[], from = 0) {
  const share = Math.ceil(clients / loaders.length);
  const started = performance.now();
  const replies = await Promise.all(loaders.map((loader, i) => {
    const first = from + i * share;
    const count = Math.max(0, Math.min(share, from + clients - first));
    return loader.request<{ connected: number; failed: number }>({
      cmd: "connect",
      url: `ws://127.0.0.1:${port}/ws`,
      count,
      topics,
      firstIndex: first,
    });
  }));
  const failed = replies.reduce((sum, r) => sum + r.failed, 0);
  if (failed > 0) throw new Error(`${failed} of ${clients} clients could not connect and subscribe`);
  return performance.now() - started;
}

/** Measures a server under the load processes' clients for a window. */
async function measure(server: ServerProcess, loaders: LoadProcess[], clients: number, windowMs: number) {
  await Promise.all(loaders.map((l) => l.request({ cmd: "measure" })));
  const cpuBefore = cpuMicros(server.pid);
  const machineBefore = machineCpuTicks();
  const started = performance.now();
  await delay(windowMs);
  const cpu = cpuMicros(server.pid) - cpuBefore;
  const machineAfter = machineCpuTicks();
  const seconds = (performance.now() - started) / 1000;
  const reports = await Promise.all(loaders.map((l) => l.request<LoadReport>({ cmd: "report" })));
  const frames = reports.reduce((sum, r) => sum + r.frames, 0);
  const chars = reports.reduce((sum, r) => sum + r.chars, 0);
  return {
    framesPerSecond: round(frames / seconds),
    meanFrameBytes: Math.round(chars / Math.max(1, frames)),
    cpuMicrosPerFrame: round(cpu / Math.max(1, frames), 2),
    serverCpuPercent: round(cpu / 10_000 / seconds),
    rssMiB: round(rssBytes(server.pid) / 2 ** 20),
    // Every process's share, this benchmark's included: other work on the machine shows here.
    machineBusyPercent: round(
      (machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total) * 100,
    ),
    dropped: reports.reduce((sum, r) => sum + r.dropped, 0),
    ...spreads(reports, clients),
  };
}

function topicNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `bench/real/${i + 1}`);
}

async function withLoaders<T>(fn: (loaders: LoadProcess[]) => Promise<T>): Promise<T> {
  const loaders = [new LoadProcess(), new LoadProcess()];
  try {
    return await fn(loaders);
  } finally {
    await Promise.all(loaders.map((l) => l.stop()));
  }
}

/**
 * Joins one client per topic per tick, so that each subscriber of a topic is at its own `seq`,
 * as in a server whose clients came at random times (`--staggered-joins`).
 */
async function joinOneTickApart(
  loaders: LoadProcess[],
  port: number,
  clients: number,
  topics: string[],
  intervalMs: number,
): Promise<number> {
  const started = performance.now();
  for (let from = 0; from < clients; from += topics.length) {
    await connectAll(loaders, port, Math.min(topics.length, clients - from), topics, from);
    await delay(intervalMs);
  }
  return performance.now() - started;
}

/** Whether fan-out clients join one tick apart (`--staggered-joins`). */
let staggeredJoins = false;

async function fanout(db: ServerInfo, sizes: typeof FULL.fanout) {
  const { clients, topics, bytes, intervalMs, warmupMs, windowMs } = sizes;
  const devices = devicesFor(bytes);
  const names = topicNames(topics);
  const run = async (start: () => Promise<ServerProcess>, driveDb?: BenchPlant) => {
    const server = await start();
    try {
      return await withLoaders(async (loaders) => {
        const stopDriver = driveDb?.drive(1, intervalMs / 2);
        try {
          const connectMs = staggeredJoins
            ? await joinOneTickApart(loaders, server.port, clients, names, intervalMs)
            : await connectAll(loaders, server.port, clients, names);
          await delay(warmupMs);
          return { connectMs: Math.round(connectMs), ...await measure(server, loaders, clients, windowMs) };
        } finally {
          await stopDriver?.();
        }
      });
    } finally {
      await server.stop();
    }
  };
  const plant = await createBenchPlant(db);
  try {
    await plant.fill(topics, devices);
    const port = freePort();
    const config = await writeConfig(plant, port, intervalMs);
    const gatecast = await run(() => startGatecast(config, port), plant);
    const ceilingPort = freePort();
    const ceiling = await run(() => startCeiling(ceilingPort, devices, intervalMs));
    return {
      clients,
      topics,
      pointsPerTopic: devices * CODES_PER_DEVICE,
      intervalMs,
      gatecast,
      ceiling,
      cpuPerFrameVsCeiling: round(gatecast.cpuMicrosPerFrame / ceiling.cpuMicrosPerFrame, 2),
    };
  } finally {
    await plant.drop();
  }
}

/**
 * Connects idle subscribed clients in steps (`idleCounts`) and measures the server's RSS per
 * connection after each: the median over `rssWindowMs`, minus the RSS before the first client.
 * gatecast and the ceiling are measured alike.
 */
async function idleSteps(
  pid: number,
  loaders: LoadProcess[],
  port: number,
  names: string[],
  sizes: typeof FULL.crowd,
) {
  const baseline = rssBytes(pid);
  const idle: {
    connections: number;
    connectMs: number;
    rssMiB: number;
    rssKiBPerConnection: number;
    rssKiBPerConnectionRange: [number, number];
    marginalKiBPerConnection: number | undefined;
  }[] = [];
  let connected = 0;
  for (const count of sizes.idleCounts) {
    const connectMs = await connectAll(loaders, port, count - connected, names, connected);
    connected = count;
    await delay(3000); // let the handshakes' garbage go
    const window = await rssOverWindow(pid, sizes.rssWindowMs);
    const perConnection = (bytes: number) => round((bytes - baseline) / 1024 / count, 2);
    const previous = idle.at(-1);
    idle.push({
      connections: count,
      connectMs: Math.round(connectMs),
      rssMiB: round(window.median / 2 ** 20),
      rssKiBPerConnection: perConnection(window.median),
      rssKiBPerConnectionRange: [perConnection(window.min), perConnection(window.max)],
      // Without the fixed cost of the first connections (heap growth): the slope.
      marginalKiBPerConnection: previous
        ? round((window.median / 2 ** 20 - previous.rssMiB) * 1024 / (count - previous.connections), 2)
        : undefined,
    });
  }
  return { baselineRssMiB: round(baseline / 2 ** 20), idle };
}

async function crowd(db: ServerInfo, sizes: typeof FULL.crowd) {
  const { idleCounts, topics, bytes, intervalMs, warmupMs, windowMs } = sizes;
  const plant = await createBenchPlant(db);
  const names = topicNames(topics);
  try {
    await plant.fill(topics, devicesFor(bytes));
    const port = freePort();
    const server = await startGatecast(await writeConfig(plant, port, intervalMs), port);
    try {
      return await withLoaders(async (loaders) => {
        await delay(1000);
        const { baselineRssMiB, idle } = await idleSteps(server.pid, loaders, port, names, sizes);
        const connected = Math.max(...idleCounts);
        const stopDriver = plant.drive(1, intervalMs / 2);
        try {
          await delay(warmupMs);
          const push = await measure(server, loaders, connected, windowMs);
          const metrics = await scrape(port);
          return {
            baselineRssMiB,
            idle,
            push: {
              clients: connected,
              topics,
              intervalMs,
              ...push,
              serverDropped: [...metrics].filter(([k]) => k.startsWith("gatecast_clients_dropped_total"))
                .reduce((sum, [, v]) => sum + v, 0),
            },
          };
        } finally {
          await stopDriver();
        }
      });
    } finally {
      await server.stop();
    }
  } finally {
    await plant.drop();
  }
}

/** The crowd's push, and the memory of its connections, on the ceiling: what this machine allows. */
async function crowdCeiling(sizes: typeof FULL.crowd) {
  const { idleCounts, topics, bytes, intervalMs, warmupMs, windowMs } = sizes;
  const clients = Math.max(...idleCounts);
  const port = freePort();
  const server = await startCeiling(port, devicesFor(bytes), intervalMs);
  try {
    return await withLoaders(async (loaders) => {
      await delay(1000);
      const { baselineRssMiB, idle } = await idleSteps(server.pid, loaders, port, topicNames(topics), sizes);
      await delay(warmupMs);
      return {
        baselineRssMiB,
        idle,
        push: { clients, ...await measure(server, loaders, clients, windowMs) },
      };
    });
  } finally {
    await server.stop();
  }
}

async function database(db: ServerInfo, sizes: typeof FULL.db) {
  const { units, devices, intervalMs, ticks } = sizes;
  const plant = await createBenchPlant(db);
  try {
    await plant.fill(Math.max(...units), devices);
    const port = freePort();
    const server = await startGatecast(await writeConfig(plant, port, intervalMs), port);
    const stopDriver = plant.drive(1, intervalMs);
    try {
      const results = [];
      for (const count of units) {
        results.push(
          await withLoaders(async (loaders) => {
            await connectAll(loaders, port, count, topicNames(count));
            await delay(intervalMs * 1.5);
            const polls = 'gatecast_poll_duration_seconds_count{db="bench"}';
            const seconds = 'gatecast_poll_duration_seconds_sum{db="bench"}';
            const skipped = 'gatecast_ticks_skipped_total{db="bench",handle="real"}';
            // Count from just after one poll ends to just after another, so that no poll's
            // queries straddle the window.
            const pollEnded = async () => {
              const seen = (await scrape(port)).get(polls);
              while ((await scrape(port)).get(polls) === seen) await delay(5);
            };
            await pollEnded();
            const before = await scrape(port);
            const selectsBefore = await plant.selectCount();
            const fanout = await measure(server, loaders, count, intervalMs * ticks);
            await pollEnded();
            const selects = await plant.selectCount() - selectsBefore;
            const after = await scrape(port);
            const pollCount = after.get(polls)! - before.get(polls)!;
            const queryMs = (after.get(seconds)! - before.get(seconds)!) / pollCount * 1000;
            await Promise.all(loaders.map((l) => l.request({ cmd: "close" })));
            return {
              units: count,
              pointsPerUnit: devices * CODES_PER_DEVICE,
              polls: pollCount,
              queriesPerPoll: round(selects / pollCount, 2),
              meanQueryMs: round(queryMs),
              meanFanoutMs: fanout.meanFanoutMs,
              meanTickMs: round(queryMs + fanout.meanFanoutMs),
              skippedTicks: (after.get(skipped) ?? 0) - (before.get(skipped) ?? 0),
              serverCpuPercent: fanout.serverCpuPercent,
            };
          }),
        );
      }
      return { intervalMs, results };
    } finally {
      await stopDriver();
      await server.stop();
    }
  } finally {
    await plant.drop();
  }
}

async function deltas(db: ServerInfo, sizes: typeof FULL.deltas) {
  const { devices, fractions, intervalMs, ticks } = sizes;
  const plant = await createBenchPlant(db);
  try {
    await plant.fill(1, devices);
    const port = freePort();
    const server = await startGatecast(await writeConfig(plant, port, intervalMs), port);
    try {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`, "gatecast.v1");
      const frames: string[] = [];
      socket.onmessage = (event) => frames.push(event.data);
      await new Promise((resolve) => socket.onopen = resolve);
      socket.send(JSON.stringify({ type: "subscribe", id: 1, topic: "bench/real/1" }));
      while (!frames.some((f) => f.startsWith('{"type":"snapshot"'))) await delay(10);
      const snapshotBytes = new TextEncoder().encode(frames.find((f) => f.startsWith('{"type":"snapshot"'))!)
        .length;
      const results = [];
      for (const fraction of fractions) {
        const stopDriver = plant.drive(fraction, intervalMs);
        await delay(intervalMs * 2);
        frames.length = 0;
        const before = await scrape(port);
        await delay(intervalMs * ticks);
        const after = await scrape(port);
        await stopDriver();
        const key = 'gatecast_poll_duration_seconds_count{db="bench"}';
        const polls = after.get(key)! - before.get(key)!;
        const bytes = frames.reduce((sum, f) => sum + new TextEncoder().encode(f).length, 0);
        results.push({
          changedPercent: fraction * 100,
          polls,
          frames: frames.length,
          bytesPerTick: Math.round(bytes / polls),
          percentOfSnapshot: round((bytes / polls) / snapshotBytes * 100, 2),
        });
        await delay(intervalMs * 2);
      }
      socket.close();
      return { points: devices * CODES_PER_DEVICE, snapshotBytes, results };
    } finally {
      await server.stop();
    }
  } finally {
    await plant.drop();
  }
}

const POLLS = 'gatecast_poll_duration_seconds_count{db="bench"}';
const POLL_SECONDS = 'gatecast_poll_duration_seconds_sum{db="bench"}';

/** One poll of the bench group as `/metrics` showed it. */
interface SeenPoll {
  /** When the scrape that first showed it returned (after its fan-out: both run in one task). */
  seenAt: number;
  /** Its duration (queries and building the rows), in ms; `NaN` when the scrape showed two at once. */
  ms: number;
  /** `/metrics` at that moment. */
  metrics: Map<string, number>;
}

/** How long {@link nextPoll} waits for a poll before the benchmark gives up. */
const POLL_WAIT_MS = 30_000;

/**
 * Waits for gatecast's next poll of the group to end: one scrape at `notBefore`, then one every
 * 20 ms, so that the scrapes cost gatecast little next to a tick (a handful a tick).
 */
async function nextPoll(port: number, last: Map<string, number>, notBefore: number): Promise<SeenPoll> {
  await delay(Math.max(0, notBefore - Date.now()));
  const deadline = Date.now() + POLL_WAIT_MS;
  while (true) {
    if (Date.now() > deadline) throw new Error(`rows: gatecast ran no poll within ${POLL_WAIT_MS} ms`);
    const metrics = await scrape(port);
    const polls = metrics.get(POLLS)! - (last.get(POLLS) ?? 0);
    if (polls > 0) {
      const ms = (metrics.get(POLL_SECONDS)! - (last.get(POLL_SECONDS) ?? 0)) * 1000;
      return { seenAt: Date.now(), ms: polls === 1 ? ms : NaN, metrics };
    }
    await delay(20);
  }
}

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
const sorted = (values: number[]) => values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);

/**
 * A handle of the configuration at scale: `units` sites of `rowsPerUnit` rows of six columns,
 * one client on every site's topic, and `changedFraction` of all rows updated in one batch
 * between two polls (half an interval after each poll ends). Over `ticks` polls: queries per
 * poll (the server's `Com_select` and gatecast's own count), the tick (the poll's queries and
 * rows, then the fan-out to the last client), frames and bytes sent, server CPU.
 */
async function customHandle(db: ServerInfo, sizes: typeof FULL.rows) {
  const { units, rowsPerUnit, changedFraction, intervalMs, warmupTicks, ticks } = sizes;
  const plant = await createRowPlant(db, units, rowsPerUnit);
  const changed = Math.round(plant.rows * changedFraction);
  try {
    const port = freePort();
    const handles = { tanks: { sql: TANKS_SQL, unit: "site", unitType: "string", key: ["tank_id"] } };
    const config = await writeConfig(plant, port, intervalMs, { handles });
    const server = await startGatecast(config, port);
    try {
      return await withLoaders(async (loaders) => {
        const topics = Array.from({ length: units }, (_, i) => `bench/tanks/${siteName(i + 1)}`);
        const connectMs = await connectAll(loaders, port, units, topics);
        // One batch of changes half an interval after each poll, so that every poll sees one.
        let seen = await nextPoll(port, await scrape(port), 0);
        const tick = async () => {
          await delay(intervalMs / 2 - (Date.now() - seen.seenAt));
          await plant.change(changed);
          // The next poll starts about an interval after this one did.
          const ms = Number.isNaN(seen.ms) ? 0 : seen.ms;
          seen = await nextPoll(port, seen.metrics, seen.seenAt - ms + intervalMs - 20);
          return seen;
        };
        for (let i = 0; i < warmupTicks; i++) await tick();
        await Promise.all(loaders.map((l) => l.request({ cmd: "measure" })));
        const start = seen;
        const statementsBefore = await plant.statementCounts();
        const cpuBefore = cpuMicros(server.pid);
        const machineBefore = machineCpuTicks();
        const polls: SeenPoll[] = [];
        for (let i = 0; i < ticks; i++) polls.push(await tick());
        const cpu = cpuMicros(server.pid) - cpuBefore;
        const machineAfter = machineCpuTicks();
        const statements = await plant.statementCounts();
        const end = polls.at(-1)!;
        await delay(intervalMs / 4); // the last tick's frames reach their clients
        const reports = await Promise.all(loaders.map((l) => l.request<LoadReport>({ cmd: "report" })));
        // The window's ticks: a frame's `ts` is taken when its poll's queries return, before
        // the scrape that showed the poll.
        const arrivals = mergeTicks(reports).filter((t) => t.ts > start.seenAt && t.ts <= end.seenAt);
        const tickMs: number[] = [];
        const fanoutMs: number[] = [];
        for (const arrival of arrivals) {
          const poll = polls.find((p) => p.seenAt >= arrival.ts);
          fanoutMs.push(arrival.last - arrival.ts);
          tickMs.push((poll?.ms ?? NaN) + arrival.last - arrival.ts);
        }
        const delta = (name: string) => end.metrics.get(name)! - start.metrics.get(name)!;
        const pollCount = delta(POLLS);
        const framesSent = delta("gatecast_frames_sent_total");
        const pollMs = sorted(polls.map((p) => p.ms));
        const ticksMs = sorted(tickMs);
        const fanouts = sorted(fanoutMs);
        return {
          units,
          rowsPerUnit,
          columns: TANK_COLUMNS,
          clients: units,
          changedRowsPerTick: changed,
          intervalMs,
          connectMs: Math.round(connectMs),
          polls: pollCount,
          skippedTicks: delta('gatecast_ticks_skipped_total{db="bench",handle="tanks"}') || 0,
          comSelectPerTick: round((statements.select - statementsBefore.select) / pollCount, 2),
          stmtExecutePerTick: round((statements.execute - statementsBefore.execute) / pollCount, 2),
          stmtPrepared: statements.prepare - statementsBefore.prepare,
          gatecastQueriesPerTick: round(delta('gatecast_db_queries_total{db="bench"}') / pollCount, 2),
          pollMs: { p50: round(percentile(pollMs, 50)), p99: round(percentile(pollMs, 99)) },
          fanoutMs: { p50: round(percentile(fanouts, 50)), p99: round(percentile(fanouts, 99)) },
          tickMs: {
            p50: round(percentile(ticksMs, 50)),
            p99: round(percentile(ticksMs, 99)),
            max: round(ticksMs.at(-1) ?? NaN),
            ticks: ticksMs.length,
          },
          framesPerTick: round(framesSent / pollCount),
          bytesPerTick: Math.round(delta("gatecast_sent_bytes_total") / pollCount),
          clientFramesPerTick: round(sum(arrivals.map((t) => t.count)) / pollCount),
          clientSnapshots: sum(reports.map((r) => r.snapshots)),
          cpuMsPerTick: round(cpu / 1000 / pollCount),
          cpuMicrosPerFrame: round(cpu / Math.max(1, framesSent), 1),
          serverCpuPercent: round(cpu / 10_000 / ((end.seenAt - start.seenAt) / 1000)),
          rssMiB: round(rssBytes(server.pid) / 2 ** 20),
          machineBusyPercent: round(
            (machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total) * 100,
          ),
          dropped: sum(reports.map((r) => r.dropped)),
        };
      });
    } finally {
      await server.stop();
    }
  } finally {
    await plant.drop();
  }
}

/**
 * Commit → client receipt in three modes (polling, `POST /notify`, binlog), and the queries of an
 * idle binlog-woken handle: bench/latency.ts, which starts its own mariadbd with the binlog on.
 */
async function latency(_db: ServerInfo, sizes: typeof FULL.latency): Promise<LatencyRun[]> {
  const out = await Deno.makeTempFile({ prefix: "gatecast-latency-", suffix: ".json" });
  try {
    const script = new URL("./latency.ts", import.meta.url).pathname;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        script,
        "--changes",
        String(sizes.changes),
        "--idle-seconds",
        String(sizes.idleSeconds),
        "--json",
        out,
      ],
      stdout: "inherit",
      stderr: "inherit",
    });
    const status = await child.output();
    if (!status.success) throw new Error(`bench/latency.ts exited with ${status.code}`);
    return JSON.parse(await Deno.readTextFile(out));
  } finally {
    await Deno.remove(out).catch(() => {});
  }
}

async function startup(db: ServerInfo, sizes: typeof FULL.startup) {
  const plant = await createBenchPlant(db);
  try {
    const config = await writeConfig(plant, freePort(), 1000, { logLevel: "info" });
    await timeToListening(config); // the first run fills Deno's module cache
    const runs = [];
    for (let i = 0; i < sizes.runs; i++) runs.push(round(await timeToListening(config)));
    const sorted = [...runs].sort((a, b) => a - b);
    return { runsMs: runs, medianMs: sorted[Math.floor(sorted.length / 2)] };
  } finally {
    await plant.drop();
  }
}

/** Each target: the measured value, the limit, and whether it holds. */
// deno-lint-ignore no-explicit-any
function targets(results: Record<string, any>) {
  const rows: { target: string; measured: string; ok: boolean }[] = [];
  const add = (target: string, measured: number | string, ok: boolean) =>
    rows.push({ target, measured: String(measured), ok });
  if (results.fanout) {
    add(
      `${results.fanout.clients} clients x ${results.fanout.topics} topics: CPU/frame <= 1.25x ceiling`,
      `${results.fanout.cpuPerFrameVsCeiling}x`,
      results.fanout.cpuPerFrameVsCeiling <= 1.25,
    );
  }
  if (results.crowd) {
    const push = results.crowd.push;
    const ceiling = results.crowdCeiling;
    add(
      `${push.clients} clients: p99 spread <= 150 ms`,
      `${push.spreadP99Ms} ms (ceiling ${ceiling?.push.spreadP99Ms} ms)`,
      push.spreadP99Ms <= 150,
    );
    add(
      `${push.clients} clients: none dropped`,
      push.dropped + push.serverDropped,
      push.dropped + push.serverDropped === 0,
    );
    results.crowd.idle.forEach((idle: { connections: number; rssKiBPerConnection: number }, i: number) => {
      add(
        `idle RSS at ${idle.connections} <= 24 KiB/conn`,
        `${idle.rssKiBPerConnection} KiB (ceiling ${ceiling?.idle[i]?.rssKiBPerConnection} KiB)`,
        idle.rssKiBPerConnection <= 24,
      );
    });
  }
  if (results.db) {
    for (const r of results.db.results) {
      add(`${r.units} units: <= 2 queries/poll`, r.queriesPerPoll, r.queriesPerPoll <= 2);
    }
    const biggest = results.db.results.at(-1);
    add(
      `${biggest.units} units tick <= 25% of interval`,
      `${biggest.meanTickMs} ms`,
      biggest.meanTickMs <= results.db.intervalMs / 4,
    );
  }
  if (results.latency) {
    const last: LatencyRun = results.latency.at(-1);
    const p99 = (mode: string) => last.modes.find((m) => m.mode === mode)!.latencyMs.p99;
    add(
      "commit to client, /notify after commit, 1000 ms interval: p99 <= 30 ms",
      `${p99("notify")} ms`,
      p99("notify") <= 30,
    );
    add(
      "commit to client, binlog, 30,000 ms interval: p99 <= 50 ms",
      `${p99("binlog")} ms`,
      p99("binlog") <= 50,
    );
    add(
      "binlog on, nothing changing: no poll queries between safety polls",
      `${last.idle.serverSelects} in ${last.idle.seconds} s`,
      last.idle.serverSelects === 0,
    );
  }
  if (results.rows) {
    const r = results.rows;
    const size = `${r.units} units x ${r.rowsPerUnit} rows x ${r.columns} columns`;
    add(
      `${size}: 1 query/tick`,
      `${r.comSelectPerTick} (gatecast's count ${r.gatecastQueriesPerTick})`,
      r.comSelectPerTick === 1,
    );
    add(`${size}: tick p99 <= 200 ms`, `${r.tickMs.p99} ms (p50 ${r.tickMs.p50} ms)`, r.tickMs.p99 <= 200);
  }
  if (results.deltas) {
    for (const r of results.deltas.results) {
      if (r.changedPercent === 0) add("0% changed: 0 bytes/tick", r.bytesPerTick, r.bytesPerTick === 0);
      if (r.changedPercent === 5) {
        add("5% changed: <= 10% of snapshot", `${r.percentOfSnapshot}%`, r.percentOfSnapshot <= 10);
      }
    }
  }
  if (results.cluster) rows.push(...clusterTargets(results.cluster));
  if (results.startup) {
    add("start to listening <= 300 ms", `${results.startup.medianMs} ms`, results.startup.medianMs <= 300);
  }
  return rows;
}

function printTable(rows: Record<string, unknown>[]): void {
  if (rows.length === 0) return;
  const keys = Object.keys(rows[0]);
  const width = keys.map((k) => Math.max(k.length, ...rows.map((r) => String(r[k]).length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(width[i])).join("  ");
  console.log(line(keys));
  for (const row of rows) console.log(line(keys.map((k) => String(row[k]))));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      smoke: { type: "boolean", default: false },
      scenarios: { type: "string", default: SCENARIOS.join(",") },
      "mysql-url": { type: "string" },
      json: { type: "string" },
      profile: { type: "string" },
      "staggered-joins": { type: "boolean", default: false },
    },
  });
  const chosen = values.scenarios!.split(",").map((s) => s.trim()) as Scenario[];
  for (const s of chosen) {
    if (!SCENARIOS.includes(s)) {
      throw new Error(`--scenarios: unknown scenario '${s}'; known: ${SCENARIOS.join(", ")}`);
    }
  }
  const sizes = values.smoke ? SMOKE : values.quick ? QUICK : FULL;
  staggeredJoins = values["staggered-joins"]!;
  if (values.profile) gatecastFlags.push("--cpu-prof", `--cpu-prof-dir=${values.profile}`);
  let mariadb;
  let db: ServerInfo;
  if (values["mysql-url"]) {
    const u = new URL(values["mysql-url"]);
    db = {
      host: u.hostname,
      port: Number(u.port || 3306),
      user: decodeURIComponent(u.username),
      password: decodeURIComponent(u.password),
    };
  } else {
    mariadb = await startThrowawayMariadb(MARIADB_DEFAULT_BUFFER_POOL_MIB);
    db = mariadb.info;
  }
  const results: Record<string, unknown> = {
    date: new Date().toISOString(),
    machine:
      `${Deno.build.os} ${Deno.build.arch}, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}`,
    sizes: values.smoke ? "smoke" : values.quick ? "quick" : "full",
    loadAverageAtStart: Deno.loadavg(),
  };
  const started = performance.now();
  try {
    const run = {
      fanout,
      crowd,
      db: database,
      rows: customHandle,
      deltas,
      startup,
      latency,
      cluster: clusterScenario,
    };
    for (const scenario of chosen) {
      console.error(`bench: ${scenario}...`);
      // deno-lint-ignore no-explicit-any
      results[scenario] = await run[scenario](db, sizes[scenario] as any);
      if (scenario === "crowd") results.crowdCeiling = await crowdCeiling(sizes.crowd);
    }
  } finally {
    await mariadb?.stop();
    if (mariadb) await Deno.remove(mariadb.dir, { recursive: true }).catch(() => {});
  }
  results.seconds = round((performance.now() - started) / 1000);
  results.loadAverageAtEnd = Deno.loadavg();
  const rows = targets(results);
  results.targets = rows;
  console.log(JSON.stringify(results, null, 2));
  console.log();
  printTable(rows.map((r) => ({ ...r, ok: r.ok ? "yes" : "NO" })));
  if (results.sizes !== "full") {
    console.log(`(${results.sizes} sizes: the targets are set for the full sizes)`);
  }
  if (values.json) await Deno.writeTextFile(values.json, JSON.stringify(results, null, 2) + "\n");
}

if (import.meta.main) await main();
