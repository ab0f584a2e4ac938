/**
 * Keep-alive over real sockets: a peer that never answers pings is closed within two periods
 * and counted once as `no_pong`; a peer that answers stays; a peer whose TCP connection vanishes
 * is released with its subscriptions.
 */

import assert from "node:assert/strict";
import { delay, startTestApp, waitFor } from "../support/app.ts";
import { RawClient } from "../support/raw_ws.ts";

const NO_DB = { demo: { driver: "sqlite", path: ":memory:" } };

Deno.test("a peer that never answers pings is closed within two keep-alive periods and counted once as no_pong", async () => {
  const app = await startTestApp(NO_DB, { keepAliveSeconds: 1 });
  const silent = await RawClient.open(app.port, { protocol: "gatecast.v1" });
  const answering = await RawClient.open(app.port, { protocol: "gatecast.v1" });
  let answeringOpen = true;
  const reader = (async () => {
    while (answeringOpen) {
      const frame = await answering.read(60_000, true).catch(() => null);
      if (!frame || frame.opcode === 8) break;
    }
  })();
  try {
    await waitFor("two connections", () => app.metrics.value("gatecast_connections") === 2);
    const opened = Date.now();
    await waitFor("the silent peer removed", () => app.metrics.value("gatecast_connections") === 1, 5000);
    assert.ok(Date.now() - opened <= 2000, `removed after ${Date.now() - opened} ms`);
    const close = await silent.read(1000, false);
    assert.deepEqual(close?.opcode, 8);
    assert.deepEqual(close?.code, 1001);
    await delay(1500); // the answering peer outlives another period
    assert.deepEqual(app.metrics.value("gatecast_connections"), 1);
    assert.deepEqual(app.metrics.value("gatecast_clients_dropped_total", { reason: "no_pong" }), 1);
  } finally {
    answeringOpen = false;
    silent.destroy();
    answering.destroy();
    await reader;
    await app.stop();
  }
});

Deno.test("a peer whose TCP connection vanishes is removed with its subscriptions", async () => {
  const app = await startTestApp(NO_DB, { keepAliveSeconds: 60 });
  const client = await RawClient.open(app.port, { protocol: "gatecast.v1" });
  try {
    await client.sendText(JSON.stringify({ type: "subscribe", id: 1, topic: "demo/real/1" }));
    await client.sendText(JSON.stringify({ type: "subscribe", id: 2, topic: "demo/real/2" }));
    await waitFor("two subscriptions", () => app.registry.subscriptionCount === 2);
    client.destroy();
    await waitFor("the connection removed", () => app.metrics.value("gatecast_connections") === 0);
    assert.deepEqual(app.registry.subscriptionCount, 0);
    assert.deepEqual(app.registry.topicCount, 0);
  } finally {
    client.destroy();
    await app.stop();
  }
});
