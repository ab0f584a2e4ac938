/**
 * `deno run --allow-all bench/latency.ts`: how long a committed UPDATE takes to reach a
 * subscribed WebSocket client as an `update` frame, in three modes (issue 12):
 *
 *   polling   pollIntervalMs 1000, nothing but the interval poll
 *   notify    pollIntervalMs 1000, `POST /notify` for the topic right after each commit
 *   binlog    pollIntervalMs 30000, `databases.<code>.binlog` wakes the handle on the row event
 *
 * and, with binlog on and nothing changing, how many queries the database ran for gatecast's own
 * login between safety polls (USER_STATISTICS, and gatecast's `gatecast_db_queries_total`).
 *
 * Everything runs on 127.0.0.1: a throw-away `mariadbd` with a row-based binlog, gatecast as the
 * real program (`main.ts --config`) once per mode, one client and one writer in this process.
 * The probe table has more rows than a mode makes changes, and change i sets row i to a value
 * never used before, so every change is seen by some poll and is matched to its frame by value
 * although a poll may carry many. A change's latency runs from the moment its autocommit UPDATE
 * returned (the commit is acknowledged) to the frame's arrival. Changes are spread at random
 * 20-50 ms apart, so that they do not all land on one poll. Bounded: the whole run is given up
 * after {@link DEADLINE_MS}.
 *
 *   deno run --allow-all bench/latency.ts                      three modes, 200 changes each
 *   deno run --allow-all bench/latency.ts --changes 300 --idle-seconds 10 --json out.json
 */

import { parseArgs } from "node:util";
import mysql from "mysql2/promise";
import type { MysqlSettings } from "../lib/config/config.ts";
import { createTestDatabase, type TestDatabase } from "../tests/support/mysql.ts";
import { freePort, startThrowawayMariadb, type ThrowawayMariadb } from "../tests/support/servers.ts";
import { type ServerProcess, startGatecast } from "./processes.ts";

/** The whole run is given up after this long: it must not outlive its caller's patience. */
const DEADLINE_MS = 170_000;
/** The options `mariadbd` needs for row events (the test setup). */
const BINLOG_ARGS = ["--log-bin", "--binlog-format=ROW", "--server-id=1"];
/** gatecast's replica id; the throw-away server is id 1. */
const REPLICA_SERVER_ID = 4242;
const DB_CODE = "bench";
const HANDLE = "probe";
const TOPIC = `${DB_CODE}/${HANDLE}`;
/** Rows of the probe table; a mode's changes each take their own row, so it must make fewer. */
const PROBE_ROWS = 1000;
/** A frame later than this after its commit counts as lost. */
const ARRIVAL_TIMEOUT_MS = 5_000;

/** The three ways a change can reach gatecast. */
export const MODES = ["polling", "notify", "binlog"] as const;
/** One of {@link MODES}. */
export type Mode = typeof MODES[number];

const INTERVALS: Record<Mode, number> = { polling: 1000, notify: 1000, binlog: 30_000 };

/** Percentiles of a set of samples in milliseconds, rounded to 0.1 ms. */
export interface Summary {
  /** Samples summarized. */
  readonly count: number;
  /** Median (nearest rank). */
  readonly p50: number;
  /** 99th percentile (nearest rank). */
  readonly p99: number;
  /** Largest sample. */
  readonly max: number;
  /** Arithmetic mean. */
  readonly mean: number;
}

/**
 * Nearest-rank percentile of ascending `sorted` samples: the smallest sample with at least p% of
 * the samples at or below it; NaN for no samples.
 *
 * @example
 * ```ts
 * percentile([1, 2, 3, 4], 50); // 2
 * percentile([1, 2, 3, 4], 99); // 4
 * ```
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1];
}

/**
 * p50, p99, max and mean of samples in any order, rounded to 0.1; NaN fields for none.
 *
 * @example
 * ```ts
 * summarize([3, 1, 2]); // { count: 3, p50: 2, p99: 3, max: 3, mean: 2 }
 * ```
 */
export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const round = (n: number) => Math.round(n * 10) / 10;
  const mean = sorted.length === 0 ? NaN : sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return {
    count: sorted.length,
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.at(-1) ?? NaN),
    mean: round(mean),
  };
}

/** What one mode measured. */
export interface ModeResult {
  readonly mode: Mode;
  readonly pollIntervalMs: number;
  /** Changes committed. */
  readonly changes: number;
  /** Changes whose frame never arrived within {@link ARRIVAL_TIMEOUT_MS}. */
  readonly lost: number;
  /** Commit acknowledged → `update` frame received. */
  readonly latencyMs: Summary;
  /** Round trip of the UPDATE itself, for scale. */
  readonly updateMs: Summary;
  /** `update` frames received; fewer than changes when one poll carried several. */
  readonly updateFrames: number;
  /** Snapshots after the first (a reshape); expected 0. */
  readonly extraSnapshots: number;
  /** Polls of the probe group gatecast ran during the changes. */
  readonly polls: number;
  /** SELECTs the server ran for gatecast's login meanwhile (USER_STATISTICS): the polls' queries. */
  readonly serverSelects: number;
}

/** What the idle window measured (binlog on, nothing changing). */
export interface IdleResult {
  readonly seconds: number;
  readonly pollIntervalMs: number;
  /** SELECTs the server ran for gatecast's login (USER_STATISTICS). */
  readonly serverSelects: number;
  /** gatecast's own count of its queries. */
  readonly gatecastQueries: number;
  /** Polls gatecast ran (`gatecast_poll_duration_seconds_count`). */
  readonly polls: number;
}

/** One complete run: every mode, then the idle window, with the machine's load around it. */
export interface LatencyRun {
  readonly startedAt: string;
  readonly loadBefore: string;
  readonly loadAfter: string;
  readonly modes: ModeResult[];
  readonly idle: IdleResult;
}

/** Children alive now, stopped by the deadline too. */
const running = new Set<{ stop(): Promise<void> }>();

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
const loadAverage = () => Deno.readTextFileSync("/proc/loadavg").trim();
const oneMinuteLoad = (loadavg: string) => Number(loadavg.split(" ")[0]);

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

/** Sum of every series of a metric whose labels contain `label` (e.g. `db="bench"`). */
function total(metrics: Map<string, number>, name: string, label = ""): number {
  let sum = 0;
  for (const [series, value] of metrics) {
    const bare = series.split("{")[0];
    if (bare === name && series.includes(label)) sum += value;
  }
  return sum;
}

async function writeConfig(settings: MysqlSettings, port: number, mode: Mode): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "gatecast-latency-", suffix: ".json" });
  const { driver: _, ...database } = settings;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      host: "127.0.0.1",
      port,
      pollIntervalMs: INTERVALS[mode],
      logLevel: "warn",
      auth: { mode: "none" },
      databases: {
        [DB_CODE]: mode === "binlog" ? { ...database, binlog: { serverId: REPLICA_SERVER_ID } } : database,
      },
      handles: {
        [HANDLE]: {
          sql: "SELECT id, v FROM latency_probe ORDER BY id",
          key: ["id"],
          tables: ["latency_probe"],
        },
      },
    }),
  );
  return path;
}

/** Polls `check` every 50 ms until it holds; throws naming `what` after `timeoutMs`. */
async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(50);
  }
}

/** A gatecast.v1 client subscribed to the probe topic, noting when each value arrives. */
class ProbeClient {
  /** Value → arrival time (performance.now()). */
  readonly arrivals = new Map<number, number>();
  updateFrames = 0;
  snapshots = 0;
  private readonly socket: WebSocket;
  private waiters = new Map<number, () => void>();

  private constructor(socket: WebSocket) {
    this.socket = socket;
    socket.onmessage = (event) => {
      const now = performance.now();
      const frame = JSON.parse(event.data as string);
      if (frame.type === "update") {
        this.updateFrames++;
        for (const row of frame.upsert) this.arrived(row.v, now);
      } else if (frame.type === "snapshot") {
        this.snapshots++;
        for (const row of frame.rows) this.arrived(row.v, now);
      } else if (frame.type === "stale" || frame.type === "error") {
        console.error(`latency: the client got ${event.data}`);
      }
    };
  }

  private arrived(value: number, now: number) {
    if (this.arrivals.has(value)) return;
    this.arrivals.set(value, now);
    this.waiters.get(value)?.();
    this.waiters.delete(value);
  }

  /** Opens a client, subscribes and waits for the first snapshot. */
  static async open(port: number): Promise<ProbeClient> {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`, "gatecast.v1");
    await new Promise<void>((resolve, reject) => {
      socket.onopen = () => resolve();
      socket.onerror = () => reject(new Error(`no WebSocket on port ${port}`));
    });
    const client = new ProbeClient(socket);
    socket.send(JSON.stringify({ type: "subscribe", id: 1, topic: TOPIC }));
    await waitFor("the first snapshot", () => Promise.resolve(client.snapshots > 0));
    return client;
  }

  /** Resolves when `value` has arrived, or after `timeoutMs` (then it stays missing). */
  until(value: number, timeoutMs: number): Promise<void> {
    if (this.arrivals.has(value)) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.waiters.set(value, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  async close() {
    if (this.socket.readyState === WebSocket.CLOSED) return;
    const closed = new Promise((r) => this.socket.onclose = r);
    this.socket.close();
    await Promise.race([closed, delay(2000)]);
  }
}

/** Runs one mode against a fresh gatecast process. */
async function runMode(
  mode: Mode,
  db: TestDatabase,
  gatecastLogin: MysqlSettings,
  selects: () => Promise<number>,
  changes: number,
  base: number,
): Promise<ModeResult> {
  const port = freePort();
  const config = await writeConfig(gatecastLogin, port, mode);
  let gatecast: ServerProcess | undefined;
  let client: ProbeClient | undefined;
  const writer = await mysql.createConnection({
    host: db.settings.host,
    port: db.settings.port,
    user: db.settings.user,
    password: db.settings.password,
    database: db.settings.database,
  });
  try {
    gatecast = await startGatecast(config, port);
    running.add(gatecast);
    if (mode === "binlog") {
      await waitFor("binlog following", async () => {
        const health = await (await fetch(`http://127.0.0.1:${port}/healthz`)).json();
        return health.databases[DB_CODE].binlog === "following";
      });
    }
    client = await ProbeClient.open(port);
    const pollsBefore = total(
      await scrape(port),
      "gatecast_poll_duration_seconds_count",
      `db="${DB_CODE}"`,
    );
    const selectsBefore = await selects();
    const committed = new Map<number, number>();
    const updateMs: number[] = [];
    const notifies: Promise<void>[] = [];
    for (let i = 0; i < changes; i++) {
      const value = base + i;
      const sent = performance.now();
      await writer.query("UPDATE latency_probe SET v = ? WHERE id = ?", [value, (i % PROBE_ROWS) + 1]);
      const done = performance.now();
      committed.set(value, done);
      updateMs.push(done - sent);
      if (mode === "notify") {
        notifies.push(
          fetch(`http://127.0.0.1:${port}/notify`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ topics: [TOPIC] }),
          }).then(async (response) => {
            const body = await response.text();
            if (response.status !== 202) throw new Error(`POST /notify answered ${response.status}: ${body}`);
          }),
        );
      }
      await delay(20 + Math.random() * 30);
    }
    await Promise.all(notifies);
    const last = base + changes - 1;
    await client.until(last, mode === "binlog" ? ARRIVAL_TIMEOUT_MS : INTERVALS[mode] + ARRIVAL_TIMEOUT_MS);
    // Any value still missing had its chance by now: the last one arrived (or timed out).
    await Promise.all([...committed.keys()].map((value) => client!.until(value, 100)));
    const latencies: number[] = [];
    for (const [value, at] of committed) {
      const arrived = client.arrivals.get(value);
      if (arrived !== undefined) latencies.push(arrived - at);
    }
    const pollsAfter = total(
      await scrape(port),
      "gatecast_poll_duration_seconds_count",
      `db="${DB_CODE}"`,
    );
    return {
      mode,
      pollIntervalMs: INTERVALS[mode],
      changes,
      lost: changes - latencies.length,
      latencyMs: summarize(latencies),
      updateMs: summarize(updateMs),
      updateFrames: client.updateFrames,
      extraSnapshots: client.snapshots - 1,
      polls: pollsAfter - pollsBefore,
      serverSelects: (await selects()) - selectsBefore,
    };
  } finally {
    await client?.close();
    if (gatecast) running.delete(gatecast);
    await gatecast?.stop();
    await writer.end().catch(() => {});
    await Deno.remove(config).catch(() => {});
  }
}

/** Binlog on, one subscriber, nothing changing: the queries the database sees over `seconds`. */
async function runIdle(
  gatecastLogin: MysqlSettings,
  selects: () => Promise<number>,
  seconds: number,
): Promise<IdleResult> {
  const port = freePort();
  const config = await writeConfig(gatecastLogin, port, "binlog");
  let gatecast: ServerProcess | undefined;
  let client: ProbeClient | undefined;
  try {
    gatecast = await startGatecast(config, port);
    running.add(gatecast);
    await waitFor("binlog following", async () => {
      const health = await (await fetch(`http://127.0.0.1:${port}/healthz`)).json();
      return health.databases[DB_CODE].binlog === "following";
    });
    client = await ProbeClient.open(port);
    await delay(500); // the subscription's first poll is over
    const before = { selects: await selects(), metrics: await scrape(port) };
    await delay(seconds * 1000);
    const after = { selects: await selects(), metrics: await scrape(port) };
    const queries = (m: Map<string, number>) => total(m, "gatecast_db_queries_total", `db="${DB_CODE}"`);
    const polls = (m: Map<string, number>) => total(m, "gatecast_poll_duration_seconds_count");
    return {
      seconds,
      pollIntervalMs: INTERVALS.binlog,
      serverSelects: after.selects - before.selects,
      gatecastQueries: queries(after.metrics) - queries(before.metrics),
      polls: polls(after.metrics) - polls(before.metrics),
    };
  } finally {
    await client?.close();
    if (gatecast) running.delete(gatecast);
    await gatecast?.stop();
    await Deno.remove(config).catch(() => {});
  }
}

/** Every mode, then the idle window, on one throw-away server. */
async function runAll(server: ThrowawayMariadb, changes: number, idleSeconds: number): Promise<LatencyRun> {
  const startedAt = new Date().toISOString();
  const loadBefore = loadAverage();
  const db = await createTestDatabase(server.info);
  try {
    await db.query("CREATE TABLE latency_probe (id INT PRIMARY KEY, v INT NOT NULL)");
    const rows = Array.from({ length: PROBE_ROWS }, (_, i) => `(${i + 1}, 0)`).join(", ");
    await db.query(`INSERT INTO latency_probe VALUES ${rows}`);
    const login = await db.dedicatedUser();
    await db.query(`GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '${login.settings.user}'@'%'`);
    const modes: ModeResult[] = [];
    for (const [i, mode] of MODES.entries()) {
      modes.push(await runMode(mode, db, login.settings, login.selects, changes, (i + 1) * 100_000));
    }
    const idle = await runIdle(login.settings, login.selects, idleSeconds);
    return { startedAt, loadBefore, loadAfter: loadAverage(), modes, idle };
  } finally {
    await db.drop();
  }
}

/** The run as markdown: machine facts, a row per mode, the idle window. */
export function report(run: LatencyRun): string {
  const goal: Record<Mode, string> = { polling: "measured", notify: "p99 ≤ 30 ms", binlog: "p99 ≤ 50 ms" };
  const met = (r: ModeResult) =>
    r.mode === "polling"
      ? "—"
      : r.lost === 0 && r.latencyMs.p99 <= (r.mode === "notify" ? 30 : 50)
      ? "yes"
      : "**no**";
  const lines = [
    `Started ${run.startedAt}; nproc ${navigator.hardwareConcurrency}; /proc/loadavg before \`${run.loadBefore}\`, after \`${run.loadAfter}\`.`,
    "",
    "| mode | pollIntervalMs | changes | lost | p50 ms | p99 ms | max ms | update frames | polls | SELECTs | goal | met |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...run.modes.map((r) =>
      `| ${r.mode} | ${r.pollIntervalMs} | ${r.changes} | ${r.lost} | ${r.latencyMs.p50} | ${r.latencyMs.p99} | ${r.latencyMs.max} | ${r.updateFrames} | ${r.polls} | ${r.serverSelects} | ${
        goal[r.mode]
      } | ${met(r)} |`
    ),
    "",
    `Idle, binlog on (pollIntervalMs ${run.idle.pollIntervalMs}), ${run.idle.seconds} s without a change: ` +
    `${run.idle.serverSelects} SELECTs by gatecast's login (USER_STATISTICS), ${run.idle.gatecastQueries} ` +
    `queries by gatecast_db_queries_total, ${run.idle.polls} polls.`,
    `UPDATE round trip p50 ${run.modes[0].updateMs.p50} ms.`,
  ];
  return lines.join("\n");
}

async function main() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      changes: { type: "string", default: "200" },
      "idle-seconds": { type: "string", default: "10" },
      "retry-load": { type: "string", default: "1.5" },
      json: { type: "string" },
    },
  });
  const changes = Number(values.changes);
  const idleSeconds = Number(values["idle-seconds"]);
  const retryLoad = Number(values["retry-load"]);
  if (!Number.isInteger(changes) || changes < 1 || changes > PROBE_ROWS) {
    throw new Error(`--changes must be an integer from 1 to ${PROBE_ROWS}, got ${values.changes}`);
  }
  if (!(idleSeconds >= 1 && idleSeconds <= 30)) {
    throw new Error(`--idle-seconds must be from 1 to 30, got ${values["idle-seconds"]}`);
  }
  const deadline = setTimeout(async () => {
    console.error(`latency: gave up after ${DEADLINE_MS / 1000} s`);
    await Promise.allSettled([...running].map((child) => child.stop()));
    Deno.exit(1);
  }, DEADLINE_MS);
  // gatecast warns when it does not know its open-file limit; its wrapper raises it to the hard one.
  const hard = new TextDecoder().decode(
    (await new Deno.Command("sh", { args: ["-c", "ulimit -Hn"] }).output()).stdout,
  );
  Deno.env.set("GATECAST_OPEN_FILE_LIMIT", hard.trim());
  const server = await startThrowawayMariadb(128, undefined, BINLOG_ARGS);
  running.add(server);
  const runs: LatencyRun[] = [];
  try {
    runs.push(await runAll(server, changes, idleSeconds));
    const first = runs[0];
    if (Math.max(oneMinuteLoad(first.loadBefore), oneMinuteLoad(first.loadAfter)) > retryLoad) {
      console.error(`latency: load above ${retryLoad} during the run; running once more`);
      runs.push(await runAll(server, changes, idleSeconds));
    }
  } finally {
    await server.stop();
    await Deno.remove(server.dir, { recursive: true }).catch(() => {});
    clearTimeout(deadline);
  }
  for (const [i, run] of runs.entries()) console.log(`### Run ${i + 1}\n\n${report(run)}\n`);
  if (values.json) await Deno.writeTextFile(values.json, JSON.stringify(runs, null, 2));
}

if (import.meta.main) await main();
