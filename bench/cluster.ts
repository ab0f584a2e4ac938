/**
 * The `cluster` scenario of `deno task bench` (bench/main.ts): gatecast nodes sharing one poll per
 * (database, handle) group through Redis (lib/cluster/cluster.ts), each node its own process.
 *
 * - **share**: N nodes (3), C clients on each (one load process per node), U units (300) on the
 *   bench plant's `real` handle; node k's clients cover two thirds of the units (thirds k and k+1),
 *   so every unit is wanted by two nodes and the union is all of them. Each layout
 *   ({@link ShareLayout}) sets the topics per client (one, or a dashboard's several), the fraction
 *   of device rows changed every tick, the interval, and the groups: one, or each third of the
 *   units in a database of its own (three groups: with leases spread, each node polls one; the
 *   three databases are names for the same bench database). Measured over a window of polls, and the
 *   same load (the same three load processes and topic lists) on ONE plain node, for each layout:
 *   database queries per tick over the whole cluster
 *   (the throw-away mariadbd's `Com_select`, and the nodes' `gatecast_db_queries_total` summed),
 *   Redis messages and the states they carry per tick (`gatecast_cluster_messages_sent_total`,
 *   `gatecast_cluster_states_sent_total`, summed) against the changed topics per tick (distinct
 *   `seq`s seen by one watcher client per node), and CPU per delivered frame of every node
 *   against the single node (raw, and above an idle window of the same nodes; CPU from each
 *   thread's `schedstat`, in nanoseconds, not `/proc/<pid>/stat`'s 10 ms ticks). And against a
 *   second reference: as many plain nodes as the cluster has, load process k on plain node k, all
 *   at once (each polling its own topics): the same clients, topics and machine load as the
 *   cluster without it. Cluster node k against plain node k is the cluster's own cost a frame;
 *   the plain nodes against the single node are what spreading the clients costs, whatever
 *   shares the polls (each changed topic's poll, diff and encode over a third of the frames).
 * - **failover**: the leaseholder (found by `/healthz` `cluster.leases`) is killed with SIGKILL and
 *   one value per third of the units is changed in the database at once; measured: time from the
 *   kill until the watchers on the surviving nodes have applied every new value (by the protocol's
 *   rule: a snapshot sets the base, an update applies only at the same epoch and seq + 1, anything
 *   else is answered by subscribing again), against leaseMs + 2 ticks; and what the first frame of
 *   each topic after the kill was (a fresh snapshot in a new epoch, an update in a new epoch, a seq
 *   gap, or seq + 1).
 * - **scale**: two cluster nodes on ONE port (`reusePort`: the kernel spreads the connections over
 *   both listeners) against one node, the same two load processes either way: frames/s and CPU per
 *   frame for 1 node with C clients, 2 nodes with C clients each (each node's share of the clients
 *   read from its own sockets in `/proc`), and 1 node with 2C clients, every value of T topics
 *   changing every tick.
 *
 * Redis: `REDIS_URL`, else 127.0.0.1:6379, else a throw-away `redis-server`
 * (tests/support/redis.ts); every run uses its own key prefix and deletes its keys at the end.
 */

import mysql from "mysql2/promise";
import { createClient } from "redis";
import { freePort, type ServerInfo } from "../tests/support/mysql.ts";
import { LOCAL_REDIS, parseRedisUrl, redisAnswers, startThrowawayRedis } from "../tests/support/redis.ts";
import { type BenchPlant, CODES_PER_DEVICE, createBenchPlant } from "./plant.ts";
import { machineCpuTicks, rssBytes, threadCpuMicros } from "./process_stats.ts";
import { acceptedConnections, LoadProcess, type ServerProcess, startGatecast } from "./processes.ts";
import { PUBLISH_BATCH } from "../lib/cluster/cluster.ts";
import type { LoadReport } from "./load_client.ts";

/** One way the clients hold the units and the values change; the share part measures each. */
export interface ShareLayout {
  /** Its name in the report. */
  name: string;
  /** Topics each load client subscribes to (a dashboard shows several units). */
  topicsPerClient: number;
  /** Share of the device rows changed every tick (every column of each). */
  changedFraction: number;
  intervalMs: number;
  /** Polls measured with nothing changing (the nodes' fixed cost). */
  idleTicks: number;
  /** Polls measured with values changing. */
  ticks: number;
  /** Groups the units fall in: 1, or 3 (each third of the units a database of its own). */
  groups: 1 | 3;
}

/** Sizes of the scenario; bench/main.ts picks full, quick or smoke. */
export interface ClusterSizes {
  /** Nodes of the cluster (the share and failover parts). */
  nodes: number;
  /** Load clients on each node. */
  clientsPerNode: number;
  /** Units subscribed over the whole cluster (a multiple of 3). */
  units: number;
  /** Devices (of ten points) per unit. */
  devices: number;
  /** The share part's layouts; the failover runs on the first one's nodes. */
  layouts: ShareLayout[];
  leaseMs: number;
  /** Time after the last client subscribed before anything is measured. */
  warmupMs: number;
  /** The failover gives up after this long. */
  failoverTimeoutMs: number;
  scale: {
    /** Clients on each node; the 1-node run with twice as many is run too. */
    clientsPerNode: number;
    topics: number;
    devices: number;
    intervalMs: number;
    warmupMs: number;
    windowMs: number;
  };
}

export const CLUSTER_FULL: ClusterSizes = {
  nodes: 3,
  clientsPerNode: 1000,
  units: 300,
  devices: 2,
  layouts: [
    {
      name: "one topic a client",
      topicsPerClient: 1,
      changedFraction: 0.25,
      intervalMs: 250,
      idleTicks: 40,
      ticks: 80,
      groups: 1,
    },
    {
      name: "dashboards of 10 topics",
      topicsPerClient: 10,
      changedFraction: 0.1,
      intervalMs: 1000,
      idleTicks: 10,
      ticks: 20,
      groups: 1,
    },
    {
      name: "one topic a client, 3 groups",
      topicsPerClient: 1,
      changedFraction: 0.25,
      intervalMs: 250,
      idleTicks: 40,
      ticks: 80,
      groups: 3,
    },
    {
      name: "dashboards of 10 topics, 3 groups",
      topicsPerClient: 10,
      changedFraction: 0.1,
      intervalMs: 1000,
      idleTicks: 10,
      ticks: 20,
      groups: 3,
    },
  ],
  leaseMs: 3000,
  warmupMs: 3000,
  failoverTimeoutMs: 20_000,
  scale: { clientsPerNode: 1500, topics: 20, devices: 4, intervalMs: 100, warmupMs: 2000, windowMs: 10_000 },
};

export const CLUSTER_QUICK: ClusterSizes = {
  nodes: 3,
  clientsPerNode: 300,
  units: 90,
  devices: 2,
  layouts: [
    {
      name: "one topic a client",
      topicsPerClient: 1,
      changedFraction: 0.25,
      intervalMs: 250,
      idleTicks: 12,
      ticks: 20,
      groups: 1,
    },
    {
      name: "dashboards of 10 topics",
      topicsPerClient: 10,
      changedFraction: 0.1,
      intervalMs: 1000,
      idleTicks: 3,
      ticks: 5,
      groups: 1,
    },
    {
      name: "one topic a client, 3 groups",
      topicsPerClient: 1,
      changedFraction: 0.25,
      intervalMs: 250,
      idleTicks: 12,
      ticks: 20,
      groups: 3,
    },
  ],
  leaseMs: 3000,
  warmupMs: 1000,
  failoverTimeoutMs: 15_000,
  scale: { clientsPerNode: 400, topics: 20, devices: 4, intervalMs: 100, warmupMs: 1000, windowMs: 3000 },
};

export const CLUSTER_SMOKE: ClusterSizes = {
  nodes: 3,
  clientsPerNode: 6,
  units: 6,
  devices: 1,
  layouts: [
    {
      name: "one topic a client",
      topicsPerClient: 1,
      changedFraction: 0.5,
      intervalMs: 500,
      idleTicks: 2,
      ticks: 3,
      groups: 1,
    },
    {
      name: "dashboards of 2 topics, 3 groups",
      topicsPerClient: 2,
      changedFraction: 0.5,
      intervalMs: 500,
      idleTicks: 2,
      ticks: 3,
      groups: 3,
    },
  ],
  leaseMs: 1500,
  warmupMs: 500,
  failoverTimeoutMs: 10_000,
  scale: { clientsPerNode: 4, topics: 2, devices: 1, intervalMs: 200, warmupMs: 300, windowMs: 1000 },
};

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
const GROUP = "bench/real";

/** The database of group `g` (0-based) of a layout: `bench`, `bench2`, `bench3`. */
function databaseName(g: number): string {
  return g === 0 ? "bench" : `bench${g + 1}`;
}

// --- Redis ---

/** The Redis of the run: `REDIS_URL`, else 127.0.0.1:6379, else a throw-away server. */
async function findRedis(): Promise<{ url: string; source: string; stop(): Promise<void> }> {
  const fromEnv = Deno.env.get("REDIS_URL");
  if (fromEnv) {
    const info = parseRedisUrl(fromEnv);
    if (!(await redisAnswers(fromEnv))) {
      throw new Error(`REDIS_URL (${info.host}:${info.port}) does not answer`);
    }
    return { url: fromEnv, source: "REDIS_URL", stop: async () => {} };
  }
  if (await redisAnswers(LOCAL_REDIS.url)) {
    return { url: LOCAL_REDIS.url, source: "127.0.0.1:6379", stop: async () => {} };
  }
  const redis = await startThrowawayRedis();
  return { url: redis.url, source: `throw-away redis-server on ${redis.port}`, stop: () => redis.stop() };
}

/** Deletes every key of the run's prefix. */
async function deleteKeys(url: string, prefix: string): Promise<number> {
  const client = createClient({ url });
  client.on("error", () => {});
  await client.connect();
  let deleted = 0;
  try {
    for await (const batch of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 500 })) {
      const keys = (Array.isArray(batch) ? batch : [batch]) as string[];
      if (keys.length > 0) deleted += await client.del(keys);
    }
  } finally {
    client.destroy();
  }
  return deleted;
}

// --- Nodes ---

interface ClusterConfig {
  redis: string;
  prefix: string;
  node: string;
  leaseMs: number;
}

/** How the nodes poll: the interval, and the groups (databases, all names of the bench database). */
interface Polling {
  intervalMs: number;
  groups: number;
}

async function writeNodeConfig(
  plant: BenchPlant,
  port: number,
  { intervalMs, groups }: Polling,
  cluster?: ClusterConfig,
  reusePort = false,
): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "gatecast-bench-cluster-", suffix: ".json" });
  const { driver: _, ...database } = plant.settings;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      host: "127.0.0.1",
      port,
      reusePort,
      pollIntervalMs: intervalMs,
      logLevel: "warn",
      maxConnections: 20_000,
      maxConnectionsPerAddress: 20_000,
      auth: { mode: "none" },
      databases: Object.fromEntries(Array.from({ length: groups }, (_, g) => [databaseName(g), database])),
      ...(cluster ? { cluster } : {}),
    }),
  );
  return path;
}

/** A gatecast process of the scenario. */
interface Node {
  readonly name: string;
  readonly server: ServerProcess;
  readonly config: string;
  killed: boolean;
}

/** Starts `count` nodes, each on a port of its own, or all on one port with `reusePort`. */
async function startNodes(
  plant: BenchPlant,
  count: number,
  polling: Polling,
  cluster?: { redis: string; prefix: string; leaseMs: number },
  reusePort = false,
): Promise<Node[]> {
  const nodes: Node[] = [];
  const shared = reusePort ? freePort() : undefined;
  try {
    for (let i = 0; i < count; i++) {
      const port = shared ?? freePort();
      const name = String.fromCharCode(97 + i); // a, b, c, ...
      const config = await writeNodeConfig(
        plant,
        port,
        polling,
        cluster && { ...cluster, node: name },
        reusePort,
      );
      nodes.push({ name, server: await startGatecast(config, port), config, killed: false });
    }
  } catch (error) {
    await stopNodes(nodes);
    throw error;
  }
  return nodes;
}

async function stopNodes(nodes: Node[]): Promise<void> {
  await Promise.all(nodes.map(async (node) => {
    await node.server.stop();
    await Deno.remove(node.config).catch(() => {});
  }));
}

/** `/metrics` of a node, as name{labels} → value. */
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

/** The sum of every series of a family (`name` and `name{...}`). */
function family(metrics: Map<string, number>, name: string): number {
  let total = 0;
  for (const [key, value] of metrics) if (key === name || key.startsWith(`${name}{`)) total += value;
  return total;
}

interface ClusterHealth {
  node: string;
  redis: string;
  leases: string[];
  peers: number;
}

async function health(port: number): Promise<ClusterHealth | undefined> {
  const response = await fetch(`http://127.0.0.1:${port}/healthz`);
  const body = await response.json();
  return body.cluster;
}

const POLLS = "gatecast_poll_duration_seconds_count";

/**
 * How long before a window's last poll is due its wait begins. A poll that ends earlier than that
 * (its start delayed more than this) makes the window one poll longer; the polls are counted.
 */
const SCRAPE_LEAD_MS = 40;

/** Resolves just after the node's next poll of the bench group has ended. */
async function pollEnded(port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const seen = family(await scrape(port), POLLS);
  while (family(await scrape(port), POLLS) === seen) {
    if (Date.now() > deadline) throw new Error(`cluster: no poll on port ${port} within ${timeoutMs} ms`);
    await delay(10);
  }
}

// --- A watcher: one client per node holding that node's topics, following the protocol's rule ---

interface Point {
  address: string;
  code: string;
  value: number | null;
}

interface Base {
  epoch: string;
  seq: number;
}

/** What the first frame of a topic after a moment was. */
type FirstFrame =
  | "snapshot-new-epoch"
  | "snapshot-same-epoch"
  | "update-new-epoch"
  | "update-gap"
  | "update-next";

class Watcher {
  private readonly socket: WebSocket;
  private readonly bases = new Map<string, Base>();
  /** `topic epoch seq` of every update applied, with the poll's ts. */
  readonly updates: { topic: string; epoch: string; seq: number; ts: number }[] = [];
  /** Values applied: topic → `address/code` → value. */
  private readonly values = new Map<string, Map<string, number | null>>();
  private readonly waiters: { done: () => boolean; resolve: () => void }[] = [];
  private mark: { bases: Map<string, Base>; first: Map<string, FirstFrame> } | undefined;
  resubscribes = 0;
  snapshots = 0;
  closed = false;
  private nextId = 1;

  constructor(port: number, readonly topics: string[]) {
    this.socket = new WebSocket(`ws://127.0.0.1:${port}/ws`, "gatecast.v1");
    this.socket.onmessage = (event) => this.receive(event.data as string);
    this.socket.onclose = () => this.closed = true;
  }

  /** Opens, subscribes to every topic and waits for a snapshot of each. */
  async start(timeoutMs = 30_000): Promise<void> {
    await new Promise((resolve, reject) => {
      this.socket.onopen = resolve;
      this.socket.onerror = () => reject(new Error("watcher: connection failed"));
    });
    this.socket.send(JSON.stringify({ type: "subscribe", id: this.nextId++, topics: this.topics }));
    await this.until(() => this.topics.every((t) => this.bases.has(t)), timeoutMs, "every snapshot");
  }

  private receive(text: string): void {
    const frame = JSON.parse(text);
    if (frame.type !== "snapshot" && frame.type !== "update") return;
    const topic: string = frame.topic;
    const base = this.bases.get(topic);
    if (this.mark && !this.mark.first.has(topic)) {
      const before = this.mark.bases.get(topic);
      const newEpoch = before === undefined || before.epoch !== frame.epoch;
      this.mark.first.set(
        topic,
        frame.type === "snapshot"
          ? (newEpoch ? "snapshot-new-epoch" : "snapshot-same-epoch")
          : newEpoch
          ? "update-new-epoch"
          : frame.seq === before!.seq + 1
          ? "update-next"
          : "update-gap",
      );
    }
    if (frame.type === "snapshot") {
      this.snapshots++;
      this.bases.set(topic, { epoch: frame.epoch, seq: frame.seq });
      const values = new Map<string, number | null>();
      for (const p of frame.points as Point[]) values.set(`${p.address}/${p.code}`, p.value);
      this.values.set(topic, values);
    } else {
      if (base === undefined || base.epoch !== frame.epoch || frame.seq !== base.seq + 1) {
        // Not applicable: drop it and subscribe again, as a client of the protocol does.
        this.bases.delete(topic);
        this.resubscribes++;
        this.socket.send(JSON.stringify({ type: "subscribe", id: this.nextId++, topic }));
        return;
      }
      this.bases.set(topic, { epoch: frame.epoch, seq: frame.seq });
      this.updates.push({ topic, epoch: frame.epoch, seq: frame.seq, ts: frame.ts });
      const values = this.values.get(topic)!;
      for (const p of frame.changes as Point[]) values.set(`${p.address}/${p.code}`, p.value);
    }
    for (const waiter of [...this.waiters]) {
      if (waiter.done()) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  }

  /** Resolves when `done()` holds (checked after every frame), rejects after `timeoutMs`. */
  until(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        done,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`watcher: no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  value(topic: string, address: string, code: string): number | null | undefined {
    return this.values.get(topic)?.get(`${address}/${code}`);
  }

  /** From now on, the first frame of each topic is classified against the bases of now. */
  markNow(): void {
    this.mark = { bases: new Map(this.bases), first: new Map() };
  }

  firstFrames(): Record<FirstFrame | "none", number> {
    const counts = {
      "snapshot-new-epoch": 0,
      "snapshot-same-epoch": 0,
      "update-new-epoch": 0,
      "update-gap": 0,
      "update-next": 0,
      none: 0,
    };
    for (const topic of this.topics) {
      const first = this.mark?.first.get(topic);
      counts[first ?? "none"]++;
    }
    return counts;
  }

  close(): void {
    this.socket.close();
  }
}

// --- Helpers of the measurement ---

/** Unit `unit`'s topic, its group's database that of its share of `units` split in `groups`. */
function topicName(unit: number, groups = 1, units = unit): string {
  return `${databaseName(Math.floor((unit - 1) * groups / units))}/real/${unit}`;
}

/** The units of node `k` of 3 (thirds k and k+1); with more nodes, the same pattern modulo 3. */
function unitsOf(k: number, units: number): number[] {
  const third = units / 3;
  return Array.from({ length: 2 * third }, (_, i) => ((k % 3) * third + i) % units + 1);
}

async function connect(
  loader: LoadProcess,
  port: number,
  count: number,
  topics: string[],
  topicsPerClient = 1,
): Promise<void> {
  const reply = await loader.request<{ connected: number; failed: number }>({
    cmd: "connect",
    url: `ws://127.0.0.1:${port}/ws`,
    count,
    topics,
    firstIndex: 0,
    topicsPerClient,
  });
  if (reply.failed > 0) throw new Error(`cluster: ${reply.failed} of ${count} clients could not subscribe`);
}

/** Counters of every node at one moment. */
interface Snapshot {
  at: number;
  metrics: Map<string, number>[];
  cpu: number[];
  machine: { busy: number; total: number };
  selects: number;
}

async function snapshot(nodes: Node[], plant: BenchPlant): Promise<Snapshot> {
  const metrics = await Promise.all(nodes.map((n) => scrape(n.server.port)));
  return {
    at: Date.now(),
    metrics,
    cpu: nodes.map((n) => threadCpuMicros(n.server.pid)),
    machine: machineCpuTicks(),
    selects: await plant.selectCount(),
  };
}

/** One window of polls on a set of nodes: from just after a poll of `poller` to just after another. */
async function window(
  nodes: Node[],
  poller: Node,
  plant: BenchPlant,
  watchers: Watcher[],
  ticks: number,
  intervalMs: number,
) {
  await pollEnded(poller.server.port);
  const before = await snapshot(nodes, plant);
  const updatesBefore = watchers.map((w) => w.updates.length);
  // The polls end one interval apart: wait for the last one from just before it is due. Each
  // scrape of pollEnded is work of the measured node; over half an interval (one every 10 ms)
  // they raised the poller's CPU, most of all in the short idle window (bench/README.md).
  await delay(ticks * intervalMs - SCRAPE_LEAD_MS);
  await pollEnded(poller.server.port);
  const after = await snapshot(nodes, plant);
  await delay(Math.min(300, intervalMs / 3)); // the last poll's states reach the followers' watchers
  const delta = (i: number, name: string) => family(after.metrics[i], name) - family(before.metrics[i], name);
  const polls = sum(nodes.map((_, i) => delta(i, POLLS)));
  // Updates of polls inside the window: their `ts` is between the two scrapes.
  const changed = new Set<string>();
  watchers.forEach((w, i) => {
    for (const u of w.updates.slice(updatesBefore[i])) {
      if (u.ts > before.at && u.ts <= after.at) changed.add(`${u.topic} ${u.epoch} ${u.seq}`);
    }
  });
  const seconds = (after.at - before.at) / 1000;
  return {
    seconds,
    polls,
    /**
     * Poll intervals the window spans (it runs from the end of one of the poller's polls to the
     * end of another): counted by time, not by polls, so that a group polled twice shows.
     */
    ticks: Math.round(seconds * 1000 / intervalMs),
    pollsByNode: nodes.map((_, i) => delta(i, POLLS)),
    comSelect: after.selects - before.selects,
    gatecastQueries: sum(nodes.map((_, i) => delta(i, "gatecast_db_queries_total"))),
    queriesByNode: nodes.map((_, i) => delta(i, "gatecast_db_queries_total")),
    messagesSent: nodes.map((_, i) => delta(i, "gatecast_cluster_messages_sent_total")),
    messagesReceived: nodes.map((_, i) => delta(i, "gatecast_cluster_messages_received_total")),
    statesSent: nodes.map((_, i) => delta(i, "gatecast_cluster_states_sent_total")),
    statesReceived: nodes.map((_, i) => delta(i, "gatecast_cluster_states_received_total")),
    framesSent: nodes.map((_, i) => delta(i, "gatecast_frames_sent_total")),
    cpuMicros: nodes.map((_, i) => after.cpu[i] - before.cpu[i]),
    machineBusyPercent: round(
      (after.machine.busy - before.machine.busy) / (after.machine.total - before.machine.total) * 100,
    ),
    changedTopics: changed.size,
  };
}

type Window = Awaited<ReturnType<typeof window>>;

/** Per node: role, frames, CPU per frame raw and above the idle window's rate. */
function perNode(nodes: Node[], roles: string[], leases: string[][], active: Window, idle: Window) {
  const ticks = Math.max(1, active.ticks);
  return nodes.map((node, i) => {
    const frames = active.framesSent[i];
    const idleCpuInActive = idle.cpuMicros[i] / idle.seconds * active.seconds;
    return {
      node: node.name,
      role: roles[i],
      leases: leases[i],
      polls: active.pollsByNode[i],
      queriesPerPoll: round(active.queriesByNode[i] / Math.max(1, active.pollsByNode[i]), 2),
      framesPerTick: round(frames / ticks),
      cpuPercent: round(active.cpuMicros[i] / 10_000 / active.seconds),
      idleCpuPercent: round(idle.cpuMicros[i] / 10_000 / idle.seconds),
      cpuMicrosPerFrame: round(active.cpuMicros[i] / Math.max(1, frames)),
      cpuMicrosPerFrameAboveIdle: round((active.cpuMicros[i] - idleCpuInActive) / Math.max(1, frames)),
      messagesSentPerTick: round(active.messagesSent[i] / ticks, 2),
      messagesReceivedPerTick: round(active.messagesReceived[i] / ticks, 2),
      statesSentPerTick: round(active.statesSent[i] / ticks, 2),
      statesReceivedPerTick: round(active.statesReceived[i] / ticks, 2),
      rssMiB: node.killed ? undefined : round(rssBytes(node.server.pid) / 2 ** 20),
    };
  });
}

/** One node's part of a share measurement ({@link perNode}). */
type NodeShare = ReturnType<typeof perNode>[number];

function totals(active: Window) {
  const ticks = Math.max(1, active.ticks);
  return {
    polls: active.polls,
    ticks: active.ticks,
    comSelect: active.comSelect,
    comSelectPerTick: round(active.comSelect / ticks, 2),
    gatecastQueriesPerTick: round(active.gatecastQueries / ticks, 2),
    changedTopicsPerTick: round(active.changedTopics / ticks, 2),
    redisMessagesSentPerTick: round(sum(active.messagesSent) / ticks, 2),
    redisStatesSentPerTick: round(sum(active.statesSent) / ticks, 2),
    framesPerTick: round(sum(active.framesSent) / ticks, 1),
    machineBusyPercent: active.machineBusyPercent,
  };
}

// --- The share and failover parts ---

interface LoadRun {
  nodes: Node[];
  loaders: LoadProcess[];
  watchers: Watcher[];
}

/**
 * Starts `count` nodes (cluster mode when `cluster`), the load and one watcher per load process:
 * one load process per cluster node, load process k on node k % count, each with the clients and
 * topics it has in every run.
 */
async function startLoad(
  plant: BenchPlant,
  sizes: ClusterSizes,
  layout: ShareLayout,
  count: number,
  cluster?: { redis: string; prefix: string; leaseMs: number },
): Promise<LoadRun> {
  const nodes = await startNodes(plant, count, layout, cluster);
  const loaders = Array.from({ length: sizes.nodes }, () => new LoadProcess());
  const watchers: Watcher[] = [];
  const run = { nodes, loaders, watchers };
  try {
    await Promise.all(loaders.map(async (loader, k) => {
      const node = nodes[k % nodes.length];
      const topics = unitsOf(k, sizes.units).map((unit) => topicName(unit, layout.groups, sizes.units));
      await connect(loader, node.server.port, sizes.clientsPerNode, topics, layout.topicsPerClient);
      const watcher = new Watcher(node.server.port, topics);
      watchers[k] = watcher;
      await watcher.start();
    }));
    await Promise.all(loaders.map((l) => l.request({ cmd: "measure" })));
    return run;
  } catch (error) {
    await stopLoad(run);
    throw error;
  }
}

async function stopLoad({ nodes, loaders, watchers }: LoadRun): Promise<void> {
  for (const w of watchers) w?.close();
  await Promise.all(loaders.map((l) => l.stop()));
  await stopNodes(nodes);
}

/**
 * The share measurement on a running set of nodes: an idle window of the nodes and clients
 * (nothing changing), whose CPU rate is each node's fixed cost, then a window of values changing.
 * The idle window comes first: one right after the changes carried their deferred cost (a
 * follower's CPU read 1.93-2.30% in the first 8 s after the changes stopped, 0.55-0.73% in the
 * next two and 0.76-0.88% before them; bench/README.md), which the "above idle" figures then took
 * away.
 */
async function share(
  run: LoadRun,
  plant: BenchPlant,
  sizes: ClusterSizes,
  layout: ShareLayout,
  poller: Node,
  roles: string[],
  leases: string[][],
) {
  const { intervalMs } = layout;
  await delay(sizes.warmupMs);
  const idle = await window(run.nodes, poller, plant, run.watchers, layout.idleTicks, intervalMs);
  const stopDriver = plant.drive(layout.changedFraction, intervalMs);
  let active;
  try {
    await delay(intervalMs * 1.5);
    active = await window(run.nodes, poller, plant, run.watchers, layout.ticks, intervalMs);
  } finally {
    await stopDriver();
  }
  return { idle, active, nodes: perNode(run.nodes, roles, leases, active, idle), ...totals(active) };
}

/** The leaseholder of the bench group, by `/healthz`. */
async function leaseholder(nodes: Node[], timeoutMs = 10_000): Promise<Node> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    for (const node of nodes.filter((n) => !n.killed)) {
      if ((await health(node.server.port))?.leases.includes(GROUP)) return node;
    }
    if (Date.now() > deadline) throw new Error(`cluster: no node holds the lease of ${GROUP}`);
    await delay(50);
  }
}

/**
 * The leases of every node once they are spread (`groups` of them, each node holding as many as
 * the others give or take one: after the handovers of lib/cluster/lease_balance.ts).
 */
async function spreadLeases(nodes: Node[], groups: number, timeoutMs = 20_000): Promise<string[][]> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const leases = await Promise.all(nodes.map(async (n) => (await health(n.server.port))?.leases ?? []));
    const counts = leases.map((l) => l.length);
    if (sum(counts) === groups && Math.max(...counts) - Math.min(...counts) <= 1) return leases;
    if (Date.now() > deadline) throw new Error(`cluster: leases not spread: ${JSON.stringify(leases)}`);
    await delay(50);
  }
}

async function failover(run: LoadRun, plant: BenchPlant, sizes: ClusterSizes, { intervalMs }: ShareLayout) {
  const { nodes, watchers } = run;
  const admin = await mysql.createConnection({
    host: plant.settings.host,
    port: plant.settings.port,
    user: plant.settings.user,
    password: plant.settings.password,
    database: plant.settings.database,
  });
  try {
    await delay(intervalMs * 1.5); // the driver's last change has reached everyone
    const holder = await leaseholder(nodes);
    const k = nodes.indexOf(holder);
    const survivors = nodes.map((_, i) => i).filter((i) => i !== k);
    for (const i of survivors) watchers[i].markNow();
    // One changed value per third of the units: each survivor holds two of them.
    const third = sizes.units / 3;
    const changes = [0, 1, 2].map((t) => ({
      unit: t * third + 1,
      value: 50_000 + t + Math.floor(Math.random() * 1000) + 0.5,
    }));
    const loaderBefore = await Promise.all(run.loaders.map((l) => l.request<LoadReport>({ cmd: "report" })));
    const killedAt = performance.now();
    Deno.kill(holder.server.pid, "SIGKILL");
    holder.killed = true;
    for (const c of changes) {
      await admin.query("UPDATE device_data_real SET c0 = ? WHERE equip_address = ?", [
        c.value,
        `U${c.unit}D1`,
      ]);
    }
    const changedAtMs = round(performance.now() - killedAt);
    // The new leaseholder, as /healthz shows it.
    const leaseWatch = (async () => {
      const next = await leaseholder(nodes, sizes.failoverTimeoutMs);
      return { node: next.name, ms: round(performance.now() - killedAt) };
    })();
    const seen = await Promise.all(survivors.map(async (i) => {
      const watcher = watchers[i];
      const mine = changes.filter((c) => watcher.topics.includes(topicName(c.unit)));
      const times = await Promise.all(mine.map(async (c) => {
        try {
          await watcher.until(
            () => watcher.value(topicName(c.unit), `U${c.unit}D1`, "c0") === c.value,
            sizes.failoverTimeoutMs,
            `new value of ${topicName(c.unit)}`,
          );
          return round(performance.now() - killedAt);
        } catch {
          return NaN;
        }
      }));
      return { node: nodes[i].name, topics: mine.map((c) => topicName(c.unit)), msFromKill: times };
    }));
    const newLease = await leaseWatch.catch(() => undefined);
    await delay(intervalMs * 2);
    const leasesAfter = await Promise.all(survivors.map(async (i) => await health(nodes[i].server.port)));
    const loaderAfter = await Promise.all(
      survivors.map((i) => run.loaders[i].request<LoadReport>({ cmd: "report" })),
    );
    const all = seen.flatMap((s) => s.msFromKill);
    const worst = all.some(Number.isNaN) ? NaN : Math.max(...all);
    const bound = sizes.leaseMs + 2 * intervalMs;
    return {
      killed: holder.name,
      leaseMs: sizes.leaseMs,
      intervalMs,
      boundMs: bound,
      changesCommittedMs: changedAtMs,
      newLeaseholder: newLease?.node,
      leaseTakenMs: newLease?.ms,
      seenMs: seen,
      worstMs: worst,
      withinBound: worst <= bound,
      leasesAfter: leasesAfter.map((h) => ({ node: h?.node, leases: h?.leases, peers: h?.peers })),
      firstFrames: survivors.map((i) => ({ node: nodes[i].name, ...watchers[i].firstFrames() })),
      resubscribes: sum(survivors.map((i) => watchers[i].resubscribes)),
      survivorClientsDropped: sum(survivors.map((i, j) => loaderAfter[j].dropped - loaderBefore[i].dropped)),
      survivorClientsOpen: sum(loaderAfter.map((r) => r.open)),
    };
  } finally {
    await admin.end().catch(() => {});
  }
}

// --- The scale part: two nodes on one port (reusePort) against one node ---

async function scale(db: ServerInfo, redis: string, prefix: string, sizes: ClusterSizes) {
  const { clientsPerNode, topics, devices, intervalMs, warmupMs, windowMs } = sizes.scale;
  const plant = await createBenchPlant(db);
  const names = Array.from({ length: topics }, (_, i) => topicName(i + 1));
  try {
    await plant.fill(topics, devices);
    const one = async (count: number, clientsEach: number) => {
      const nodes = await startNodes(
        plant,
        count,
        { intervalMs, groups: 1 },
        count > 1 ? { redis, prefix: `${prefix}scale:`, leaseMs: sizes.leaseMs } : undefined,
        count > 1,
      );
      const loaders = [new LoadProcess(), new LoadProcess()];
      const stopDriver = plant.drive(1, intervalMs / 2);
      try {
        // Two load processes either way, on the one port: with two nodes the kernel spreads the
        // connections over both listeners (SO_REUSEPORT hashes each connection's addresses).
        const total = clientsEach * count;
        await Promise.all(loaders.map((loader) => connect(loader, nodes[0].server.port, total / 2, names)));
        // Each node's share of the clients, from its own sockets (an HTTP request to the shared port
        // reaches either node, so /metrics cannot tell them apart).
        const connections = nodes.map((n) => acceptedConnections(n.server.pid, n.server.port));
        if (sum(connections) !== total) {
          throw new Error(`cluster scale: the nodes hold ${sum(connections)} connections, not ${total}`);
        }
        await delay(warmupMs);
        await Promise.all(loaders.map((l) => l.request({ cmd: "measure" })));
        const cpuBefore = nodes.map((n) => threadCpuMicros(n.server.pid));
        const machineBefore = machineCpuTicks();
        const started = performance.now();
        await delay(windowMs);
        const cpu = nodes.map((n, i) => threadCpuMicros(n.server.pid) - cpuBefore[i]);
        const machineAfter = machineCpuTicks();
        const seconds = (performance.now() - started) / 1000;
        const reports = await Promise.all(loaders.map((l) => l.request<LoadReport>({ cmd: "report" })));
        const received = sum(reports.map((r) => r.frames));
        const expected = total * (1000 / intervalMs);
        // Every client gets the same frames: a node's frames are its share of the clients'.
        const frames = connections.map((c) => received * c / total);
        return {
          nodes: count,
          clients: total,
          framesPerSecond: round(received / seconds),
          expectedFramesPerSecond: expected,
          meanFrameBytes: Math.round(sum(reports.map((r) => r.chars)) / Math.max(1, received)),
          cpuMicrosPerFrame: round(sum(cpu) / Math.max(1, received), 2),
          perNode: nodes.map((n, i) => ({
            node: n.name,
            clients: connections[i],
            framesPerSecond: round(frames[i] / seconds),
            cpuPercent: round(cpu[i] / 10_000 / seconds),
            cpuMicrosPerFrame: round(cpu[i] / Math.max(1, frames[i]), 2),
          })),
          machineBusyPercent: round(
            (machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total) * 100,
          ),
          dropped: sum(reports.map((r) => r.dropped)),
        };
      } finally {
        await stopDriver();
        await Promise.all(loaders.map((l) => l.stop()));
        await stopNodes(nodes);
      }
    };
    const single = await one(1, clientsPerNode);
    const two = await one(2, clientsPerNode);
    const singleDouble = await one(1, 2 * clientsPerNode);
    const ratio = round(two.cpuMicrosPerFrame / single.cpuMicrosPerFrame, 2);
    // One Deno process runs its JavaScript on one thread: a node delivers at most 1 s of CPU a second.
    const perCore = 1_000_000 / two.cpuMicrosPerFrame;
    return {
      reusePort: true,
      note: "two nodes on one port (reusePort): the kernel spreads the connections over both",
      topics,
      pointsPerTopic: devices * CODES_PER_DEVICE,
      intervalMs,
      oneNode: single,
      twoNodes: two,
      oneNodeDoubleLoad: singleDouble,
      framesPerSecondTwoVsOne: round(two.framesPerSecond / single.framesPerSecond, 2),
      cpuPerFrameTwoVsOne: ratio,
      /** The measured rate scaled to a machine fully busy (loaders included), as on this machine. */
      thisMachineFramesPerSecondAtFullCpu: Math.round(two.framesPerSecond * 100 / two.machineBusyPercent),
      /** One node per core at the 2-node CPU per frame, nothing else on the cores. */
      framesPerSecondPerCore: Math.round(perCore),
      predicted16CoresFramesPerSecond: Math.round(16 * perCore),
    };
  } finally {
    await plant.drop();
  }
}

// --- The scenario ---

/**
 * The share measurement on `count` plain nodes (no cluster section) under every load process,
 * load process k on node k % count: ONE node with all of the load, or one node a load process,
 * all at once (each polling its own topics).
 */
async function sharePlain(plant: BenchPlant, sizes: ClusterSizes, layout: ShareLayout, count: number) {
  const run = await startLoad(plant, sizes, layout, count);
  try {
    const { idle: _idle, active: _active, ...report } = await share(
      run,
      plant,
      sizes,
      layout,
      run.nodes[0],
      run.nodes.map(() => "plain"),
      run.nodes.map(() => []),
    );
    return { report, cpu: report.nodes };
  } finally {
    await stopLoad(run);
  }
}

/** Each node's CPU per frame as a multiple of `references[i]`'s, all CPU and above idle. */
function cpuPerFrameAgainst(nodes: readonly NodeShare[], references: readonly NodeShare[]) {
  return nodes.map((n, i) => {
    const reference = references[i];
    return {
      node: n.node,
      role: n.role,
      raw: round(n.cpuMicrosPerFrame / reference.cpuMicrosPerFrame, 2),
      aboveIdle: round(n.cpuMicrosPerFrameAboveIdle / reference.cpuMicrosPerFrameAboveIdle, 2),
    };
  });
}

export async function clusterScenario(db: ServerInfo, sizes: ClusterSizes) {
  if (sizes.units % 3 !== 0) throw new Error("cluster: units must be a multiple of 3");
  const redis = await findRedis();
  const prefix = `gatecast-bench-${crypto.randomUUID().slice(0, 8)}:`;
  const plant = await createBenchPlant(db);
  try {
    await plant.fill(sizes.units, sizes.devices);
    const layouts = [];
    let fail;
    for (const [i, layout] of sizes.layouts.entries()) {
      // ONE plain node under the same load: the same load processes and topic lists.
      console.error(`bench: cluster: ${layout.name}: one node...`);
      const single = await sharePlain(plant, sizes, layout, 1);
      // As many plain nodes as the cluster has, each with one cluster node's load, at once: the
      // same clients, topics and machine load as the cluster, every node polling its own topics.
      console.error(`bench: cluster: ${layout.name}: ${sizes.nodes} plain nodes at once...`);
      const independent = await sharePlain(plant, sizes, layout, sizes.nodes);
      console.error(`bench: cluster: ${layout.name}: ${sizes.nodes} nodes...`);
      const clusterRun = await startLoad(plant, sizes, layout, sizes.nodes, {
        redis: redis.url,
        prefix: `${prefix}${i}:`,
        leaseMs: sizes.leaseMs,
      });
      let shared;
      try {
        await delay(layout.intervalMs);
        const leases = await spreadLeases(clusterRun.nodes, layout.groups);
        const roles = leases.map((held) => held.length > 0 ? "leaseholder" : "follower");
        const holder = clusterRun.nodes[roles.indexOf("leaseholder")];
        shared = await share(clusterRun, plant, sizes, layout, holder, roles, leases);
        if (i === 0 && layout.groups === 1) {
          console.error("bench: cluster: failover...");
          fail = await failover(clusterRun, plant, sizes, layout);
        }
      } finally {
        await stopLoad(clusterRun);
      }
      const { idle: _i2, active: _a2, ...sharedReport } = shared;
      layouts.push({
        ...layout,
        clientsPerTopicPerNode: sizes.clientsPerNode * layout.topicsPerClient / ((2 * sizes.units) / 3),
        single: single.report,
        independent: independent.report,
        cluster: sharedReport,
        cpuPerFrameVsSingle: cpuPerFrameAgainst(shared.nodes, shared.nodes.map(() => single.cpu[0])),
        cpuPerFrameVsIndependent: cpuPerFrameAgainst(shared.nodes, independent.cpu),
        /** What spreading the clients costs without a cluster: each plain node against the one. */
        independentVsSingle: cpuPerFrameAgainst(independent.cpu, independent.cpu.map(() => single.cpu[0])),
      });
    }
    console.error("bench: cluster: 1 node against 2 on one port (reusePort)...");
    const scaled = await scale(db, redis.url, prefix, sizes);
    return {
      redis: redis.source,
      nodes: sizes.nodes,
      clientsPerNode: sizes.clientsPerNode,
      units: sizes.units,
      unitsPerNode: (2 * sizes.units) / 3,
      pointsPerUnit: sizes.devices * CODES_PER_DEVICE,
      leaseMs: sizes.leaseMs,
      layouts,
      failover: fail,
      scale: scaled,
    };
  } finally {
    await plant.drop();
    await deleteKeys(redis.url, prefix).catch(() => {});
    await redis.stop();
  }
}

/** The scenario's targets, as bench/main.ts's table shows them. */
// deno-lint-ignore no-explicit-any
export function clusterTargets(r: any): { target: string; measured: string; ok: boolean }[] {
  const rows: { target: string; measured: string; ok: boolean }[] = [];
  const add = (target: string, measured: string, ok: boolean) => rows.push({ target, measured, ok });
  type Ratio = { node: string; role: string; raw: number; aboveIdle: number };
  for (const layout of r.layouts) {
    const c = layout.cluster;
    const at = `${r.nodes} nodes x ${r.clientsPerNode} clients, ${r.units} units, ${layout.name}`;
    type NodeReport = { node: string; role: string; polls: number; queriesPerPoll: number };
    const holders: NodeReport[] = c.nodes.filter((n: NodeReport) => n.role === "leaseholder");
    const groups = layout.groups;
    add(
      `cluster (${at}): <= 2 queries/tick a group (${groups}), whole cluster`,
      `${c.comSelectPerTick} Com_select a tick, ${c.comSelect} over ${c.ticks} ticks (gatecast's ${c.gatecastQueriesPerTick}; one node ${layout.single.comSelectPerTick})`,
      // One poll of each group a tick, two queries each. The window is cut at one leaseholder's
      // polls: another group's poll can be under way at an edge, its queries already counted by
      // the server and not yet by its node, so up to one poll of each other group more.
      c.comSelect <= 2 * (groups * c.ticks + groups - 1),
    );
    add(
      `cluster (${layout.name}): <= 2 queries a poll of each group (its leaseholder's)`,
      c.nodes.map((n: NodeReport) => `${n.node} ${n.queriesPerPoll} over ${n.polls} polls`).join(", "),
      holders.length > 0 && holders.every((n) => n.queriesPerPoll <= 2),
    );
    add(
      `cluster (${layout.name}): Redis states/tick = changed topics/tick, one message a poll a group (not clients)`,
      `${c.redisMessagesSentPerTick} messages of ${c.redisStatesSentPerTick} states for ${c.changedTopicsPerTick} changed topics, ${c.framesPerTick} frames`,
      c.redisStatesSentPerTick <= c.changedTopicsPerTick * 1.1 + 1 &&
        c.redisMessagesSentPerTick <=
          groups * Math.ceil(c.redisStatesSentPerTick / groups / PUBLISH_BATCH) + 0.1,
    );
    const against: [string, Ratio[]][] = [
      ["one node", layout.cpuPerFrameVsSingle],
      [`its plain node of ${r.nodes} at once`, layout.cpuPerFrameVsIndependent],
    ];
    for (const [reference, ratios] of against) {
      add(
        `cluster (${layout.name}): CPU/frame of every node <= 1.3x ${reference} (all CPU)`,
        ratios.map((x) => `${x.node} ${x.role} ${x.raw}x`).join(", "),
        Math.max(...ratios.map((x) => x.raw)) <= 1.3,
      );
      add(
        `cluster (${layout.name}): CPU/frame of every node <= 1.3x ${reference} (above idle)`,
        ratios.map((x) => `${x.node} ${x.role} ${x.aboveIdle}x`).join(", "),
        // A node above idle by nothing (or less) is a window too short to say anything: not met.
        ratios.every((x) => x.aboveIdle > 0 && x.aboveIdle <= 1.3),
      );
    }
  }
  const s = r.scale;
  add(
    `2 nodes on one port (reusePort) x ${s.twoNodes.clients / 2} clients: CPU/frame <= 1.3x 1 node`,
    `${s.cpuPerFrameTwoVsOne}x at ${s.framesPerSecondTwoVsOne}x the frames/s`,
    s.cpuPerFrameTwoVsOne <= 1.3,
  );
  const f = r.failover;
  add(
    `cluster failover: kill to new value on survivors <= lease + 2 ticks (${f.boundMs} ms)`,
    `${f.worstMs} ms (lease taken at ${f.leaseTakenMs} ms)`,
    f.withinBound,
  );
  return rows;
}
