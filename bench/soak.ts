/**
 * Soak test: runs gatecast as a child process against a throw-away `mariadbd` for N minutes
 * under churn of every kind (clients, topics, values, point sets), with slow clients, dead peers,
 * malformed frames, one database restart and one stall, then prints one summary and exits 1
 * when a healthy client did not end on the database's final values.
 *
 * Usage: `deno task soak -- --minutes 10 [--clients 60] [--units 20]`
 */

import mysql from "mysql2/promise";
import { parseArgs } from "node:util";
import { createTestDatabase, startThrowawayMariadb } from "../tests/support/mysql.ts";
import { startGatecastOnConfig } from "../tests/support/process.ts";
import { RawClient } from "../tests/support/raw_ws.ts";

const { values: args } = parseArgs({
  // `deno task soak -- --minutes 1` passes the "--" on.
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    minutes: { type: "string", default: "10" },
    clients: { type: "string", default: "60" },
    units: { type: "string", default: "20" },
  },
});
const MINUTES = Number(args.minutes);
const HEALTHY = Number(args.clients);
const UNITS = Number(args.units);
if (!(MINUTES > 0) || !(HEALTHY > 0) || !(UNITS > 1)) {
  console.error("soak: --minutes, --clients and --units must be positive numbers (units at least 2)");
  Deno.exit(2);
}
const RUN_MS = MINUTES * 60_000;
const POLL_MS = 500;
const QUERY_TIMEOUT_MS = 1500;
const ADDRESSES_PER_UNIT = 6;
const CODES = ["ua", "ub", "ia"] as const;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)];
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)}s`;
const note = (what: string) => console.error(`[soak ${elapsed()}] ${what}`);

// --- database -------------------------------------------------------------------------------
note("starting a throw-away mariadbd");
const mariadb = await startThrowawayMariadb();
// Interrupted: do not leave the throw-away server running.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    mariadb.pause(false);
    mariadb.stop().finally(() => Deno.exit(130));
  });
}
const schema = await createTestDatabase(mariadb.info);
// A pool reconnects after the restart, unlike the test database's one admin connection.
const pool = mysql.createPool({ ...mariadb.info, database: schema.settings.database, connectionLimit: 4 });
const db = {
  query: async (sql: string, params: unknown[] = []) => (await pool.query(sql, params))[0],
};
const long = "x".repeat(120); // long names make the legacy arrays big, so slow clients fill up
const points = [];
for (let unit = 1; unit <= UNITS; unit++) {
  for (let a = 0; a < ADDRESSES_PER_UNIT; a++) {
    for (const code of CODES) {
      points.push({
        unit,
        code,
        address: `U${unit}A${a}`,
        name: `${code} ${long}`,
        rename: `${code} ${long}`,
      });
    }
  }
}
await schema.addPoints(points);
for (let unit = 1; unit <= UNITS; unit++) {
  for (let a = 0; a < ADDRESSES_PER_UNIT; a++) await schema.setData(`U${unit}A${a}`, { ua: 1, ub: 2, ia: 3 });
}

// --- server ---------------------------------------------------------------------------------
const serverProcess = await startGatecastOnConfig({
  pollIntervalMs: POLL_MS,
  queryTimeoutMs: QUERY_TIMEOUT_MS,
  sendBufferSoftBytes: 64 << 10,
  sendBufferHardBytes: 1 << 20,
  slowClientGraceMs: 3000,
  keepAliveSeconds: 4,
  // Every client comes from 127.0.0.1, slow ones linger until dropped: room above the per-address default.
  maxConnectionsPerAddress: 1000,
  logLevel: "info",
  databases: { plant: schema.settings },
});
const configPath = serverProcess.configPath;
const port = serverProcess.port;
const httpUrl = `http://127.0.0.1:${port}`;
const wsUrl = `ws://127.0.0.1:${port}/ws`;
const rssMiB = () => serverProcess.rssMiB();
const rss = { start: rssMiB(), peak: 0, end: 0 };
const rssTimer = setInterval(() => rss.peak = Math.max(rss.peak, rssMiB()), 1000);

// --- healthy clients: read everything, keep each topic's state, churn their topics -----------
type PointState = Map<string, unknown>; // "address|code" -> value

class HealthyClient {
  socket!: WebSocket;
  readonly held = new Set<number>();
  readonly state = new Map<number, PointState>();
  readonly lastSeq = new Map<number, number>();
  seqErrors = 0;
  closedEarly = false;
  private nextId = 1;

  async open(): Promise<void> {
    this.socket = new WebSocket(wsUrl, "gatecast.v1");
    this.socket.onmessage = (event) => this.receive(JSON.parse(event.data));
    this.socket.onclose = () => {
      if (!stopping) this.closedEarly = true;
    };
    await new Promise((resolve, reject) => {
      this.socket.onopen = resolve;
      this.socket.onerror = reject;
    });
  }

  /** Units whose latest `subscribe` is not acknowledged yet: frames of an earlier subscription are ignored. */
  private readonly awaiting = new Map<number, number>();

  subscribe(unit: number): void {
    this.held.add(unit);
    this.state.delete(unit);
    this.lastSeq.delete(unit);
    const id = this.nextId++;
    this.awaiting.set(unit, id);
    this.socket.send(JSON.stringify({ type: "subscribe", id, topic: `plant/real/${unit}` }));
  }

  unsubscribe(unit: number): void {
    this.held.delete(unit);
    this.state.delete(unit);
    this.socket.send(JSON.stringify({ type: "unsubscribe", id: this.nextId++, topic: `plant/real/${unit}` }));
  }

  // deno-lint-ignore no-explicit-any
  private receive(frame: any): void {
    const unit = Number(String(frame.topic ?? "").split("/")[2]);
    if (!this.held.has(unit)) return; // a frame sent before our unsubscribe arrived
    if (frame.type === "subscribed" && this.awaiting.get(unit) === frame.id) this.awaiting.delete(unit);
    if (this.awaiting.has(unit)) return; // a frame of the subscription before the latest subscribe
    if (frame.type === "snapshot") {
      if (frame.seq !== 1 && frame.seq !== (this.lastSeq.get(unit) ?? 0) + 1) this.seqErrors++;
      this.lastSeq.set(unit, frame.seq);
      // deno-lint-ignore no-explicit-any
      this.state.set(unit, new Map(frame.points.map((p: any) => [`${p.address}|${p.code}`, p.value])));
    } else if (frame.type === "update") {
      if (frame.seq !== (this.lastSeq.get(unit) ?? 0) + 1) this.seqErrors++;
      this.lastSeq.set(unit, frame.seq);
      const state = this.state.get(unit);
      if (!state) return void this.seqErrors++;
      for (const change of frame.changes) state.set(`${change.address}|${change.code}`, change.value);
    }
  }
}

let stopping = false;
const healthy: HealthyClient[] = [];
for (let i = 0; i < HEALTHY; i++) {
  const client = new HealthyClient();
  await client.open();
  const units = new Set<number>();
  while (units.size < 3) units.add(1 + Math.floor(Math.random() * UNITS));
  for (const unit of units) client.subscribe(unit);
  healthy.push(client);
}
note(`${HEALTHY} healthy clients subscribed`);

const counts = { churned: 0, churnFailures: 0, malformed: 0, slowOpened: 0, deadOpened: 0, topicMoves: 0 };
const loops: Promise<void>[] = [];
function every(ms: number, what: () => Promise<void> | void): void {
  loops.push((async () => {
    while (!stopping) {
      await sleep(ms * (0.5 + Math.random()));
      if (stopping) break;
      try {
        await what();
      } catch (error) {
        note(`loop error: ${(error as Error).message}`);
      }
    }
  })());
}

// topic churn: a healthy client drops a topic and takes another
every(200, () => {
  const client = pick(healthy);
  const held = [...client.held];
  if (held.length > 1) client.unsubscribe(pick(held));
  client.subscribe(1 + Math.floor(Math.random() * UNITS));
  counts.topicMoves++;
});

// client churn: connect, subscribe, wait for the snapshot, leave (v1 and legacy)
every(1000, async () => {
  const legacy = Math.random() < 0.3;
  const socket = new WebSocket(wsUrl, legacy ? [] : ["gatecast.v1"]);
  const got = new Promise<boolean>((resolve) => {
    socket.onmessage = () => resolve(true);
    socket.onclose = () => resolve(false);
    setTimeout(() => resolve(false), 5000);
  });
  await new Promise((resolve) => socket.onopen = resolve);
  const unit = 1 + Math.floor(Math.random() * UNITS);
  socket.send(
    legacy
      ? `{'unit_id': ${unit}, 'handle': 'real', 'db_code': 'plant', 'config': ''}`
      : JSON.stringify({ type: "subscribe", id: 1, topic: `plant/real/${unit}` }),
  );
  if (!(await got)) counts.churnFailures++;
  socket.close();
  counts.churned++;
});

// malformed frames of every kind
const MALFORMED: (string | Uint8Array)[] = [
  "{not json",
  "[1,2,3]",
  '{"type":"launch"}',
  '{"type":"subscribe","topic":"plant/real/0"}',
  '{"type":"subscribe","topic":"nodb/real/1"}',
  '{"type":"subscribe","topic":"plant/nohandle/1"}',
  "{'unit_id': 1, 'handle': 'real', 'db_code': __import__('os')}",
  new Uint8Array([1, 2, 3]),
  "x".repeat(70_000),
];
every(2000, async () => {
  const socket = new WebSocket(wsUrl, "gatecast.v1");
  await new Promise((resolve) => socket.onopen = resolve);
  const closed = new Promise((resolve) => socket.onclose = resolve);
  socket.send(pick(MALFORMED));
  await Promise.race([closed, sleep(300)]);
  socket.close();
  await closed;
  counts.malformed++;
});

// slow clients: subscribe to every unit (legacy: the whole array every tick) and never read;
// they repeat a subscription now and then, which keeps them clear of the keep-alive, so that
// the send-buffer limits are what removes them
const slow: RawClient[] = [];
every(15_000, async () => {
  const client = await RawClient.open(port);
  const subscribeAll = async () => {
    for (let unit = 1; unit <= UNITS; unit++) {
      await client.sendText(`{"unit_id": ${unit}, "handle": "real", "db_code": "plant"}`);
    }
  };
  await subscribeAll();
  slow.push(client);
  counts.slowOpened++;
  (async () => {
    while (!stopping) {
      await sleep(1000);
      await subscribeAll();
    }
  })().catch(() => {}); // closed by the server
});

// dead peers: connect, then neither read nor answer pings
const dead: RawClient[] = [];
every(10_000, async () => {
  dead.push(await RawClient.open(port));
  counts.deadOpened++;
});

// value churn and point-set churn
let valueWrites = 0;
every(100, async () => {
  const unit = 1 + Math.floor(Math.random() * UNITS);
  const address = `U${unit}A${Math.floor(Math.random() * ADDRESSES_PER_UNIT)}`;
  await db.query(`UPDATE device_data_real SET ${pick(CODES)} = ? WHERE equip_address = ?`, [
    Math.round(Math.random() * 100000) / 100,
    address,
  ]).catch(() => {}); // the database may be down or stalled right now
  valueWrites++;
});
every(20_000, async () => {
  const unit = 1 + Math.floor(Math.random() * UNITS);
  await db.query(
    "UPDATE archive_device SET status = IF(status = 'a', 'd', 'a') WHERE unit_id = ? AND code = ? LIMIT 1",
    [unit, pick(CODES)],
  ).catch(() => {});
});

// one restart and one stall
const faults = (async () => {
  await sleep(RUN_MS * 0.4);
  if (stopping) return;
  note("stopping mariadbd for 5 s");
  await mariadb.stop();
  await sleep(5000);
  await mariadb.restart();
  note("mariadbd restarted");
  await sleep(RUN_MS * 0.3);
  if (stopping) return;
  note(`stalling mariadbd (SIGSTOP) for ${2 * QUERY_TIMEOUT_MS + 1000} ms`);
  mariadb.pause(true);
  await sleep(2 * QUERY_TIMEOUT_MS + 1000);
  mariadb.pause(false);
  note("mariadbd resumed");
})();

// progress
const progress = setInterval(() => note(`rss ${rssMiB().toFixed(0)} MiB, ${counts.churned} churned`), 60_000);

await sleep(RUN_MS);
note("stopping the load; letting the last values settle");
stopping = true;
await Promise.all([...loops, faults]);
clearInterval(progress);
for (const client of [...slow, ...dead]) client.destroy();
await sleep(6 * POLL_MS);

// --- the verdict ----------------------------------------------------------------------------
const active = (await db.query(
  "SELECT unit_id, gateway_address, code FROM archive_device WHERE status = 'a'",
)) as { unit_id: number; gateway_address: string; code: string }[];
const data = (await db.query("SELECT * FROM device_data_real")) as Record<string, unknown>[];
const byAddress = new Map(data.map((row) => [row.equip_address as string, row]));
const expected = new Map<number, Map<string, unknown>>();
for (const row of active) {
  const unit = expected.get(row.unit_id) ?? new Map();
  unit.set(`${row.gateway_address}|${row.code}`, byAddress.get(row.gateway_address)?.[row.code] ?? null);
  expected.set(row.unit_id, unit);
}
let topicsChecked = 0;
const mismatches: string[] = [];
for (const [i, client] of healthy.entries()) {
  if (client.closedEarly) mismatches.push(`client ${i} was closed by the server`);
  for (const unit of client.held) {
    topicsChecked++;
    const want = expected.get(unit) ?? new Map();
    const got = client.state.get(unit);
    if (!got) {
      mismatches.push(`client ${i} unit ${unit}: no snapshot`);
      continue;
    }
    const same = got.size === want.size && [...want].every(([key, value]) => got.get(key) === value);
    if (!same) {
      mismatches.push(
        `client ${i} unit ${unit}: ${JSON.stringify([...got])} != ${JSON.stringify([...want])}`,
      );
    }
  }
}
const metrics = await (await fetch(`${httpUrl}/metrics`)).text();
rss.end = rssMiB();
clearInterval(rssTimer);

function metric(name: string): number {
  let sum = 0;
  for (const line of metrics.split("\n")) {
    if (line.startsWith(name + " ") || line.startsWith(name + "{")) sum += Number(line.split(" ").pop());
  }
  return sum;
}
const dropped: Record<string, number> = {};
for (const match of metrics.matchAll(/^gatecast_clients_dropped_total\{reason="([^"]+)"\} (\d+)/gm)) {
  dropped[match[1]] = Number(match[2]);
}

// graceful shutdown, timed
for (const client of healthy) client.socket.onclose = null;
const closeCodes = healthy.map((client) =>
  new Promise<number>((resolve) => client.socket.addEventListener("close", (e) => resolve(e.code)))
);
const termAt = performance.now();
serverProcess.child.kill("SIGTERM");
const exitCode = await serverProcess.exited;
const shutdownMs = Math.round(performance.now() - termAt);
const codes = await Promise.all(closeCodes);

const summary = {
  minutes: MINUTES,
  rssMiB: { start: Math.round(rss.start), peak: Math.round(rss.peak), end: Math.round(rss.end) },
  ticksRun: metric("gatecast_ticks_total"),
  ticksSkipped: metric("gatecast_ticks_skipped_total"),
  pollsDeferred: metric("gatecast_polls_deferred_total"),
  longestTickGapMs: Math.round(metric("gatecast_tick_gap_max_seconds") * 1000),
  dbErrors: metric("gatecast_poll_errors_total"),
  framesSent: metric("gatecast_frames_sent_total"),
  framesHeldBack: metric("gatecast_frames_held_back_total"),
  clientsDropped: dropped,
  churned: counts.churned,
  // churn clients that got no frame within 5 s (a legacy client gets nothing while its database is down)
  churnFailures: counts.churnFailures,
  malformedClients: counts.malformed,
  slowClientsOpened: counts.slowOpened,
  deadPeersOpened: counts.deadOpened,
  topicMoves: counts.topicMoves,
  valueWrites,
  healthyClients: HEALTHY,
  healthyTopicsChecked: topicsChecked,
  healthySeqErrors: healthy.reduce((n, c) => n + c.seqErrors, 0),
  healthyOnFinalValues: mismatches.length === 0,
  shutdown: { exitCode, ms: shutdownMs, closedWith1001: codes.filter((c) => c === 1001).length },
};
console.log(JSON.stringify(summary, null, 2));
for (const line of mismatches.slice(0, 10)) console.error(`mismatch: ${line}`);
for (const line of serverProcess.stderr.filter((l) => l.includes('"level":"error"')).slice(0, 5)) {
  note(`server error: ${line}`);
}
await pool.end().catch(() => {});
await schema.drop().catch(() => {});
await mariadb.stop();
await Deno.remove(mariadb.dir, { recursive: true }).catch(() => {});
await Deno.remove(configPath).catch(() => {});
Deno.exit(summary.healthyOnFinalValues && exitCode === 0 ? 0 : 1);
