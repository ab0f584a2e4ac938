/**
 * Half-sent requests against gatecast: how many connections whose request headers never finish
 * it takes to stop new clients. `Deno.serve` hands a connection to gatecast only once its headers
 * are complete and has no header timeout, so each such connection holds one descriptor the
 * connection cap cannot see. For each open-file limit, gatecast (`main.ts`, the least privilege of
 * `deno task start`) runs under `ulimit -n <limit>`, optionally with as many WebSockets open as its
 * cap allows; the script opens half-sent requests one at a time until a new client is refused,
 * then probes new clients for a few seconds, checks the WebSockets are still served, releases the
 * half-sent requests and times the recovery. It also holds one half-sent request for
 * `--hold-seconds` and reports whether gatecast still keeps it.
 *
 * Usage: `deno run -A bench/half_sent.ts [--limits 256,1024] [--hold-seconds 5]`
 */

import { parseArgs } from "node:util";
import { startGatecastWithConfig } from "../tests/support/process.ts";

const { values: args } = parseArgs({
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    limits: { type: "string", default: "256,1024" },
    "hold-seconds": { type: "string", default: "5" },
  },
});
const LIMITS = args.limits.split(",").map(Number);
const HOLD_MS = Number(args["hold-seconds"]) * 1000;
const PROBE_MS = 5000;

const encoder = new TextEncoder();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (what: string) => console.error(`[half_sent] ${what}`);

/** Opens a connection and sends a request line and one header, never the blank line. */
async function halfSent(port: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(encoder.encode(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`));
  } catch (error) {
    conn.close();
    throw error;
  }
  return conn;
}

/** One new client: `GET /healthz`, answered within a second, or why not. */
async function probe(port: number): Promise<string> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/healthz`, {
      signal: AbortSignal.timeout(1000),
      headers: { connection: "close" },
    });
    await response.body?.cancel();
    return String(response.status);
  } catch (error) {
    return (error as Error).name === "TimeoutError" ? "timeout" : (error as Error).name;
  }
}

function descriptors(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

async function openWebSockets(port: number, count: number): Promise<WebSocket[]> {
  return await Promise.all(Array.from({ length: count }, () =>
    new Promise<WebSocket>((resolve, reject) => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`, "gatecast.v1");
      socket.onopen = () => resolve(socket);
      socket.onerror = () => reject(new Error("a WebSocket did not open"));
    })));
}

async function pong(socket: WebSocket): Promise<boolean> {
  const answered = new Promise<boolean>((resolve) => {
    socket.onmessage = (event) => resolve(JSON.parse(event.data).type === "pong");
    setTimeout(() => resolve(false), 2000);
  });
  socket.send(JSON.stringify({ type: "ping", id: 1 }));
  return await answered;
}

async function run(limit: number, fillCap: boolean) {
  const server = await startGatecastWithConfig(
    { host: "127.0.0.1", port: 0, databases: {}, auth: { mode: "none" }, maxConnectionsPerAddress: 100_000 },
    limit,
  );
  try {
    const cap = server.listening.maxConnections as number;
    const sockets = await openWebSockets(server.port, fillCap ? cap : 1);
    const before = descriptors(server.pid);
    const held: Deno.TcpConn[] = [];
    let refusal = "";
    while (held.length < 2 * limit) {
      try {
        held.push(await halfSent(server.port));
      } catch (error) {
        refusal = (error as Error).name;
        break;
      }
    }
    const atRefusal = descriptors(server.pid);
    // New clients while the half-sent requests stay: the listener comes back every second and dies
    // at the next accept.
    const probes: string[] = [];
    const probeEnd = Date.now() + PROBE_MS;
    while (Date.now() < probeEnd) {
      probes.push(await probe(server.port));
      await sleep(100);
    }
    const served = probes.filter((p) => p === "200").length;
    const webSocketsServed = await pong(sockets[0]);
    for (const conn of held) conn.close();
    const released = Date.now();
    while ((await probe(server.port)) !== "200") await sleep(20);
    const recoveryMs = Date.now() - released;
    const failures = server.stderr.filter((line) => line.includes('"msg":"listener failed')).length;
    for (const socket of sockets) socket.close();
    return {
      openFileLimit: limit,
      connectionCap: cap,
      webSockets: sockets.length,
      descriptorsBefore: before,
      halfSentAtRefusal: held.length,
      refusedWith: refusal,
      descriptorsAtRefusal: atRefusal,
      newClientsServed: `${served} of ${probes.length} in ${PROBE_MS / 1000} s`,
      webSocketsStillServed: webSocketsServed,
      listenerFailures: failures,
      recoveryMs,
    };
  } finally {
    await server.stop();
  }
}

/** Whether gatecast still holds a half-sent request after `ms`: the read ends only if it closes. */
async function holdOne(ms: number) {
  const server = await startGatecastWithConfig({
    host: "127.0.0.1",
    port: 0,
    databases: {},
    auth: { mode: "none" },
  });
  try {
    const conn = await halfSent(server.port);
    const closed = conn.read(new Uint8Array(1024)).then(() => true, () => true);
    const still = await Promise.race([closed.then(() => false), sleep(ms).then(() => true)]);
    conn.close();
    await closed;
    return { heldSeconds: ms / 1000, stillOpen: still };
  } finally {
    await server.stop();
  }
}

const results = [];
for (const limit of LIMITS) {
  for (const fillCap of [false, true]) {
    log(`ulimit -n ${limit}, ${fillCap ? "WebSockets at the cap" : "one WebSocket"}`);
    results.push(await run(limit, fillCap));
    log(JSON.stringify(results.at(-1)));
  }
}
log(`holding one half-sent request for ${HOLD_MS / 1000} s`);
const hold = await holdOne(HOLD_MS);
console.log(JSON.stringify({ results, hold }, null, 2));
