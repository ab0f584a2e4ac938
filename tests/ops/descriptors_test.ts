/**
 * The descriptor watch: counting accepted connections in /proc's TCP tables, the default warning
 * threshold, a real half-sent request raising `gatecast_unaccounted_connections` and the warning
 * (WebSockets and answered requests do not count), the warning's spacing, and the one line it
 * logs under least privilege, where Deno refuses /proc.
 */

import assert from "node:assert/strict";
import {
  acceptedConnections,
  DescriptorWatch,
  unaccountedWarningThreshold,
} from "../../lib/ops/descriptors.ts";
import { RESERVED_DESCRIPTORS } from "../../lib/net/limits.ts";
import { Logger } from "../../lib/ops/log.ts";
import { startTestApp, waitFor } from "../support/app.ts";
import { startGatecastWithConfig } from "../support/process.ts";
import { TestClient } from "../support/ws_client.ts";

const encoder = new TextEncoder();

// Port 4053 is 0FD5. Columns: sl local remote st queues tr retrnsmt uid timeout inode ...
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0FD5 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0FD5 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 5002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:0FD5 0100007F:D432 01 00000000:00000000 00:00000000 00000000  1000        0 5003 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:0FD5 0100007F:D433 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:0FD5 0100007F:D434 06 00000000:00000000 03:00000F1B 00000000     0        0 0 3 0000000000000000
   5: 0100007F:D431 0100007F:0FD5 01 00000000:00000000 00:00000000 00000000  1000        0 5004 1 0000000000000000 20 4 30 10 -1
   6: 0100007F:0CEA 0100007F:D435 01 00000000:00000000 00:00000000 00000000  1000        0 5005 1 0000000000000000 20 4 30 10 -1
`;
const TCP6 =
  `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0FD5 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 6001 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:0FD5 0000000000000000FFFF00000100007F:D440 01 00000000:00000000 00:00000000 00000000  1000        0 6002 1 0000000000000000 20 4 30 10 -1
`;

Deno.test("accepted connections are the held sockets on the port, not the listener, the queue, closed ones or clients", () => {
  // Lines 1 and 2 are held; 3 waits to be accepted, 4 is TIME_WAIT, 5 is a client of the port, 6 another port.
  assert.equal(acceptedConnections(TCP, 4053), 2);
  assert.equal(acceptedConnections(TCP6, 4053), 1);
  assert.equal(acceptedConnections(TCP, 3306), 1);
  assert.equal(acceptedConnections(TCP, 80), 0);
  assert.equal(acceptedConnections("", 4053), 0);
});

Deno.test("the default warning threshold is half the descriptors the connection cap leaves free", () => {
  assert.equal(unaccountedWarningThreshold(65_536, 10_000), 27_768);
  assert.equal(unaccountedWarningThreshold(256, 102), 77);
  assert.equal(unaccountedWarningThreshold(100, 100), 1);
  assert.equal(unaccountedWarningThreshold(undefined, 10_000), RESERVED_DESCRIPTORS / 2);
});

/** Opens a TCP connection to `port` and sends a request line and one header, never the blank line. */
async function halfSentRequest(port: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encoder.encode(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`));
  return conn;
}

Deno.test("half-sent requests raise gatecast_unaccounted_connections and the warning; WebSockets and answered requests do not count", async () => {
  const app = await startTestApp({}, {}, undefined, { descriptorWatch: { intervalMs: 20, warnAt: 2 } });
  const unaccounted = () => app.metrics.value("gatecast_unaccounted_connections");
  const warnings = () =>
    app.logs.filter((line) => String(line.msg).startsWith("connections without a request"));
  const client = await TestClient.open(app.wsUrl);
  const half: Deno.TcpConn[] = [];
  try {
    // A request answered with `Connection: close` leaves nothing behind.
    const answered = await Deno.connect({ hostname: "127.0.0.1", port: app.port });
    await answered.write(encoder.encode("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    while ((await answered.read(new Uint8Array(4096))) !== null) { /* read to the server's close */ }
    answered.close();

    half.push(await halfSentRequest(app.port));
    await waitFor("one unaccounted connection", () => unaccounted() === 1);
    assert.equal(warnings().length, 0, "below the threshold of 2");
    half.push(await halfSentRequest(app.port));
    await waitFor("two unaccounted connections", () => unaccounted() === 2);
    await waitFor("the warning", () => warnings().length === 1);
    const { time: _, ...warning } = warnings()[0];
    assert.equal(typeof warning.openDescriptors, "number");
    assert.ok((warning.openDescriptors as number) > 4, `${warning.openDescriptors} descriptors`);
    assert.equal(typeof warning.openFileLimit, "number");
    assert.deepEqual({ ...warning, openDescriptors: 0, openFileLimit: 0 }, {
      level: "warn",
      msg:
        "connections without a request hold descriptors; new clients are refused once they run out (docs/operating.md)",
      unaccounted: 2,
      openDescriptors: 0,
      openFileLimit: 0,
      connections: 1,
      connectionCap: app.connectionCap,
      warnAt: 2,
    });
    assert.ok(app.metrics.value("gatecast_open_descriptors") >= 4);

    for (const conn of half.splice(0)) conn.close();
    await waitFor("no unaccounted connection", () => unaccounted() === 0);
    assert.equal(warnings().length, 1, "at most one warning a minute");
    assert.equal(app.metrics.value("gatecast_connections"), 1);
  } finally {
    for (const conn of half) conn.close();
    await client.close();
    await app.stop();
  }
});

Deno.test("the warning repeats at most once per interval while the condition lasts", async () => {
  // A bare listener whose accepted connection nobody accounts for.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const accepted = await listener.accept();
  const lines: Record<string, unknown>[] = [];
  let now = 0;
  const watch = await DescriptorWatch.start({
    port: listener.addr.port,
    logger: new Logger("info", (line) => lines.push(JSON.parse(line))),
    known: () => ({ webSockets: 0, requests: 0 }),
    connectionCap: () => 10,
    openFileLimit: 1024,
    intervalMs: 3_600_000, // samples only when the test asks
    warnAt: 1,
    warnEveryMs: 60_000,
    now: () => now,
  });
  try {
    assert.ok(watch, "this test runs with --allow-all");
    assert.equal((await watch.sample()).unaccounted, 1);
    assert.equal(lines.length, 1);
    now = 59_999;
    await watch.sample();
    assert.equal(lines.length, 1);
    now = 60_000;
    await watch.sample();
    assert.equal(lines.length, 2);
    assert.deepEqual([lines[1].unaccounted, lines[1].openFileLimit, lines[1].connectionCap], [1, 1024, 10]);
  } finally {
    await watch?.stop();
    accepted.close();
    client.close();
    listener.close();
  }
});

Deno.test("under least privilege the watch is off, says so in one line, and its gauges are absent", async () => {
  const server = await startGatecastWithConfig(
    { host: "127.0.0.1", port: 0, databases: {}, auth: { mode: "none" } },
    512,
  );
  try {
    const off = server.stderr.filter((line) => line.includes("descriptor watch off"));
    assert.equal(off.length, 1, server.stderr.join("\n"));
    const line = JSON.parse(off[0]);
    assert.deepEqual([line.level, line.msg], [
      "info",
      "descriptor watch off (Deno reads /proc only with --allow-all); count /proc/<pid>/fd from outside (docs/operating.md)",
    ]);
    const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text();
    assert.match(metrics, /^# TYPE gatecast_unaccounted_connections gauge$/m);
    assert.doesNotMatch(metrics, /^gatecast_unaccounted_connections /m);
    assert.doesNotMatch(metrics, /^gatecast_open_descriptors /m);
    assert.match(metrics, /^gatecast_open_file_limit 512$/m);
  } finally {
    await server.stop();
  }
});
