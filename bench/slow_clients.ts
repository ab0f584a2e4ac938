/**
 * Slow-consumer benchmark: gatecast (a child process) serves 2000 reading clients, first alone,
 * then with 200 clients that never read (100 v1, 100 legacy, each on every topic). Reports the
 * server's RSS and the healthy clients' delivery latency and spread (latest minus earliest
 * arrival of the same update frame) in both phases, and the slow clients' drops by reason.
 *
 * Usage: `deno run -A bench/slow_clients.ts [--healthy 2000] [--slow 200] [--seconds 60]` (after 15 s of
 * warm-up, the first phase lasts `--seconds`, the second three times as long)
 * (MariaDB from tests/support/mysql.ts: `MYSQL_URL`, 127.0.0.1:3306, or a throw-away server).
 */

import { parseArgs } from "node:util";
import { createTestDatabase } from "../tests/support/mysql.ts";
import { startGatecastOnConfig } from "../tests/support/process.ts";
import { RawClient } from "../tests/support/raw_ws.ts";

const { values: args } = parseArgs({
  // `deno task soak -- --minutes 1` passes the "--" on.
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    healthy: { type: "string", default: "2000" },
    slow: { type: "string", default: "200" },
    seconds: { type: "string", default: "60" },
  },
});
const HEALTHY = Number(args.healthy);
const SLOW = Number(args.slow);
const PHASE_MS = Number(args.seconds) * 1000;
const UNITS = 20;
const ADDRESSES = 10; // × 3 codes = 30 points per unit
const POLL_MS = 500;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (what: string) => console.error(`[slow_clients] ${what}`);

const db = await createTestDatabase();
const rows: unknown[] = [];
const data: unknown[] = [];
for (let unit = 1; unit <= UNITS; unit++) {
  for (let a = 0; a < ADDRESSES; a++) {
    for (const code of ["ua", "ub", "ia"]) {
      rows.push([
        unit,
        code,
        code,
        `${code} ${"n".repeat(60)}`,
        `U${unit}A${a} ${code}`,
        1,
        `U${unit}A${a}`,
        1,
        "modbus",
        "a",
      ]);
    }
    data.push([`U${unit}A${a}`, 0, 0, 0]);
  }
}
await db.query(
  "INSERT INTO archive_device (unit_id, code, recode, name, `rename`, show_id, gateway_address, gateway_id, lot_type, status) VALUES ?",
  [rows],
);
await db.query("INSERT INTO device_data_real (equip_address, ua, ub, ia) VALUES ?", [data]);

const serverProcess = await startGatecastOnConfig({
  pollIntervalMs: POLL_MS,
  logLevel: "info",
  // Every client comes from 127.0.0.1: lift the per-address limit above the bench's 2,200.
  maxConnections: 20_000,
  maxConnectionsPerAddress: 20_000,
  databases: { plant: db.settings },
});
const config = serverProcess.configPath;
const port = serverProcess.port;
const http = `http://127.0.0.1:${port}`;
const rssMiB = () => serverProcess.rssMiB();

// Arrival times of each update frame, per topic and ts, over the healthy clients.
let arrivals = new Map<string, number[]>();
let frames = 0;
const sockets: WebSocket[] = [];
for (let i = 0; i < HEALTHY; i++) {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`, "gatecast.v1");
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = reject;
  });
  socket.onmessage = (event) => {
    const now = performance.now() + performance.timeOrigin;
    const text = event.data as string;
    if (!text.startsWith('{"type":"update"')) return;
    frames++;
    const frame = JSON.parse(text);
    const key = `${frame.topic}@${frame.ts}`;
    let list = arrivals.get(key);
    if (!list) arrivals.set(key, list = []);
    list.push(now - frame.ts);
  };
  socket.send(JSON.stringify({ type: "subscribe", id: 1, topic: `plant/real/${(i % UNITS) + 1}` }));
  sockets.push(socket);
}
log(`${HEALTHY} healthy clients subscribed`);

let churning = true;
const churn = (async () => {
  while (churning) {
    await db.query("UPDATE device_data_real SET ua = ua + 1, ub = ub + 1, ia = ia + 1");
    await sleep(POLL_MS);
  }
})();

/** Memory of all TCP sockets of the machine, from /proc/net/sockstat (pages of 4 KiB). */
function tcpMemMiB(): number {
  const pages = /TCP: .* mem (\d+)/.exec(Deno.readTextFileSync("/proc/net/sockstat"))?.[1];
  return Math.round(Number(pages ?? 0) * 4096 / 2 ** 20);
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

async function phase(name: string, ms: number) {
  arrivals = new Map();
  frames = 0;
  let peak = 0;
  const rssEvery10s: number[] = [];
  const sampler = setInterval(() => peak = Math.max(peak, rssMiB()), 500);
  const tcpEvery10s: number[] = [];
  const tenSeconds = setInterval(() => {
    rssEvery10s.push(Math.round(rssMiB()));
    tcpEvery10s.push(tcpMemMiB());
  }, 10_000);
  await sleep(ms);
  clearInterval(sampler);
  clearInterval(tenSeconds);
  const spreads: number[] = [];
  const latencies: number[] = [];
  let complete = 0;
  for (const list of arrivals.values()) {
    if (list.length !== HEALTHY / UNITS) continue; // only frames every subscriber got in the phase
    complete++;
    list.sort((a, b) => a - b);
    spreads.push(list[list.length - 1] - list[0]);
    latencies.push(...list);
  }
  spreads.sort((a, b) => a - b);
  latencies.sort((a, b) => a - b);
  const result = {
    phase: name,
    rssPeakMiB: Math.round(peak),
    rssEndMiB: Math.round(rssMiB()),
    rssEvery10s,
    kernelTcpMiBEvery10s: tcpEvery10s,
    updateFrames: frames,
    completeUpdates: complete,
    spreadMs: {
      p50: Math.round(percentile(spreads, 0.5)),
      p99: Math.round(percentile(spreads, 0.99)),
      max: Math.round(spreads.at(-1) ?? 0),
    },
    latencyMs: {
      p50: Math.round(percentile(latencies, 0.5)),
      p99: Math.round(percentile(latencies, 0.99)),
      max: Math.round(latencies.at(-1) ?? 0),
    },
  };
  log(JSON.stringify(result));
  return result;
}

await sleep(15_000); // warm-up, not measured
const rssStart = Math.round(rssMiB());
const alone = await phase(`${HEALTHY} reading clients`, PHASE_MS);
const slow: RawClient[] = [];
for (let i = 0; i < SLOW; i++) {
  const legacy = i % 2 === 1;
  const client = await RawClient.open(port, legacy ? {} : { protocol: "gatecast.v1" });
  for (let unit = 1; unit <= UNITS; unit++) {
    await client.sendText(
      legacy
        ? `{"unit_id": ${unit}, "handle": "real", "db_code": "plant"}`
        : JSON.stringify({ type: "subscribe", id: unit, topic: `plant/real/${unit}` }),
    );
  }
  slow.push(client);
}
log(`${SLOW} non-reading clients subscribed to every topic`);
// Longer: on loopback the kernel absorbs up to tcp_rmem + tcp_wmem (here 32 + 4 MiB) per socket
// before the server's own buffer grows past the soft limit and the grace time starts.
const withSlow = await phase(`${HEALTHY} reading + ${SLOW} non-reading clients`, 3 * PHASE_MS);
const metrics = await (await fetch(`${http}/metrics`)).text();
const dropped = Object.fromEntries(
  [...metrics.matchAll(/^gatecast_clients_dropped_total\{reason="([^"]+)"\} (\d+)/gm)].map((
    m,
  ) => [m[1], Number(m[2])]),
);
const heldBack = Number(/^gatecast_frames_held_back_total (\d+)/m.exec(metrics)?.[1] ?? 0);

churning = false;
await churn;
for (const client of slow) client.destroy();
for (const socket of sockets) socket.close();
await serverProcess.stop();
await db.drop();
await Deno.remove(config);
console.log(
  JSON.stringify(
    { rssStartMiB: rssStart, phases: [alone, withSlow], slowDropped: dropped, heldBack },
    null,
    2,
  ),
);
Deno.exit(0);
