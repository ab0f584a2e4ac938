/**
 * The connection cap: derived from the open-file limit (pure), and enforced by a real server
 * started with `ulimit -n 64`: over the cap upgrades get 503 with `Retry-After`, and the
 * listener keeps serving HTTP and, once clients leave, new upgrades.
 */

import assert from "node:assert/strict";
import { connectionCap, FD_HEADROOM, parseOpenFileLimit } from "../lib/fd_limit.ts";
import { delay } from "./support/app.ts";
import { startGatecastOnConfig } from "./support/process.ts";
import { RawClient } from "./support/raw_ws.ts";

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max processes             127890               127890               processes
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

Deno.test("the soft open-file limit is read from /proc/self/limits text", () => {
  assert.deepEqual(parseOpenFileLimit(LIMITS), 1024);
  assert.deepEqual(parseOpenFileLimit(LIMITS.replace("1024  ", "unlimited")), undefined);
  assert.deepEqual(parseOpenFileLimit("nothing here"), undefined);
});

Deno.test("the connection cap leaves room for open files, database pools and headroom", () => {
  assert.deepEqual(connectionCap(0, 1024, 20, 8).cap, 1024 - 20 - 8 - FD_HEADROOM);
  assert.deepEqual(connectionCap(100, 1024, 20, 8), {
    cap: 100,
    openFileLimit: 1024,
    openAtStart: 20,
    database: 8,
  });
  assert.deepEqual(connectionCap(5000, 1024, 20, 8).lowered, 5000);
  assert.deepEqual(connectionCap(5000, 1024, 20, 8).cap, 980);
  assert.deepEqual(connectionCap(0, undefined, 20, 8).cap, 10_000);
  assert.deepEqual(connectionCap(0, 30, 20, 8).cap, 1);
});

Deno.test("with ulimit -n 64, upgrades over the cap get 503 with Retry-After and the listener keeps serving", async () => {
  const server = await startGatecastOnConfig({
    pollIntervalMs: 1000,
    databases: { demo: { driver: "sqlite", path: ":memory:" } },
  }, { openFiles: 64 });
  const { child, listening } = server;
  const clients: RawClient[] = [];
  try {
    assert.deepEqual(listening.openFileLimit, 64);
    const cap = listening.maxConnections as number;
    const port = server.port;
    assert.ok(cap > 0 && cap < 64 - FD_HEADROOM, `cap ${cap}`);
    for (let i = 0; i < cap; i++) {
      const client = await RawClient.open(port);
      assert.deepEqual(client.answer.status, 101, `connection ${i + 1} of ${cap}`);
      clients.push(client);
    }
    for (let i = 0; i < 3; i++) {
      const refused = await RawClient.open(port);
      assert.deepEqual(refused.answer.status, 503);
      assert.deepEqual(refused.answer.headers.get("retry-after"), "5");
      assert.deepEqual(JSON.parse(refused.answer.body), {
        error: `the server holds its maximum of ${cap} connections`,
      });
      refused.destroy();
    }
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.ok(health.status === 200 || health.status === 503);
    assert.deepEqual((await health.json()).connections, cap);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /gatecast_upgrades_refused_total\{reason="connection_cap"\} 3/);
    for (const client of clients.splice(0, 2)) client.destroy();
    await delay(300);
    const again = await RawClient.open(port);
    assert.deepEqual(again.answer.status, 101);
    clients.push(again);
    for (const client of clients.splice(0)) client.destroy();
    assert.deepEqual(await server.stop(), 0);
  } finally {
    for (const client of clients) client.destroy();
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await server.exited;
    await Deno.remove(server.configPath);
  }
});
