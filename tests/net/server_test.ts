/**
 * HTTP routes and the WebSocket handshake of a started server: `/healthz`, `/metrics`, 404 and
 * 405 with JSON bodies, the `gatecast.v1` subprotocol however the client lists it, and the log of
 * refused upgrades during a flood.
 */

import assert from "node:assert/strict";
import { offeredProtocols } from "../../lib/net/server.ts";
import { startTestApp, type TestApp, waitFor } from "../support/app.ts";
import { freePort } from "../support/mysql.ts";
import { RawClient } from "../support/raw_ws.ts";
import { TestClient } from "../support/ws_client.ts";

async function withApp(fn: (app: TestApp) => Promise<void>, databases: Record<string, unknown> = {
  demo: { driver: "sqlite", path: ":memory:" },
}): Promise<void> {
  const app = await startTestApp(databases as Parameters<typeof startTestApp>[0]);
  try {
    await fn(app);
  } finally {
    await app.stop();
  }
}

/** Sends a raw WebSocket upgrade and returns the status line and headers of the answer. */
async function rawUpgrade(port: number, path: string, protocolHeader?: string) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const lines = [
      `GET ${path} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
      ...(protocolHeader === undefined ? [] : [`Sec-WebSocket-Protocol: ${protocolHeader}`]),
      "",
      "",
    ];
    await conn.write(new TextEncoder().encode(lines.join("\r\n")));
    let text = "";
    const buffer = new Uint8Array(4096);
    while (!text.includes("\r\n\r\n")) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    const [status, ...headerLines] = text.split("\r\n\r\n")[0].split("\r\n");
    const headers = new Map(headerLines.map((line) => {
      const i = line.indexOf(":");
      return [line.slice(0, i).toLowerCase(), line.slice(i + 1).trim()] as const;
    }));
    return { status, headers };
  } finally {
    conn.close();
  }
}

Deno.test("offeredProtocols splits the header on commas with or without spaces", () => {
  assert.deepEqual(offeredProtocols("gatecast.v1"), ["gatecast.v1"]);
  assert.deepEqual(offeredProtocols("a, gatecast.v1"), ["a", "gatecast.v1"]);
  assert.deepEqual(offeredProtocols("a,gatecast.v1"), ["a", "gatecast.v1"]);
  assert.deepEqual(offeredProtocols(" a ,, b ,"), ["a", "b"]);
});

Deno.test("offeredProtocols of no header or an empty one is no protocol", () => {
  assert.deepEqual(offeredProtocols(null), []);
  assert.deepEqual(offeredProtocols(""), []);
  assert.deepEqual(offeredProtocols(" , "), []);
});

Deno.test("GET /healthz answers 200 with a JSON report when every database polls", async () => {
  await withApp(async (app) => {
    await waitFor("a good probe", () => app.poller.health.get("demo")!.lastGoodPoll > 0);
    const response = await fetch(`${app.httpUrl}/healthz`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "application/json");
    const body = await response.json();
    assert.equal(body.status, "ok");
    assert.equal(body.connections, 0);
    assert.equal(body.topics, 0);
    assert.equal(typeof body.uptimeSeconds, "number");
    assert.deepEqual(Object.keys(body.databases), ["demo"]);
    assert.equal(body.databases.demo.healthy, true);
  });
});

Deno.test("GET /healthz answers 503 naming the database that does not answer", async () => {
  await withApp(async (app) => {
    await waitFor("a failed probe", () => app.poller.health.get("dead")!.error !== undefined);
    const response = await fetch(`${app.httpUrl}/healthz`);
    assert.equal(response.status, 503);
    const body = await response.json();
    assert.equal(body.status, "degraded");
    assert.deepEqual(body.databases.dead, {
      lastGoodPoll: null,
      healthy: false,
      error: "database 'dead' is unavailable: ECONNREFUSED",
    });
    assert.equal(body.databases.demo.healthy, true);
    assert.ok(!JSON.stringify(body).includes("hunter2"));
  }, {
    demo: { driver: "sqlite", path: ":memory:" },
    dead: { host: "127.0.0.1", port: freePort(), user: "root", password: "hunter2", database: "iot" },
  });
});

Deno.test("GET /metrics answers Prometheus text with the connection, topic and tick series", async () => {
  await withApp(async (app) => {
    const client = await TestClient.open(app.wsUrl, "gatecast.v1");
    try {
      await waitFor(
        "the connection",
        async () => (await (await fetch(`${app.httpUrl}/healthz`)).json()).connections === 1,
      );
      const response = await fetch(`${app.httpUrl}/metrics`);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
      const text = await response.text();
      assert.ok(text.includes("# TYPE gatecast_connections gauge\ngatecast_connections 1\n"), text);
      assert.ok(text.includes("# TYPE gatecast_topics gauge\ngatecast_topics 0\n"), text);
      assert.ok(text.includes("# TYPE gatecast_subscriptions gauge\ngatecast_subscriptions 0\n"), text);
      assert.match(text, /^gatecast_ticks_total \d+$/m);
    } finally {
      await client.close();
    }
  });
});

Deno.test("an unknown path answers 404 with a JSON error naming it", async () => {
  await withApp(async (app) => {
    const response = await fetch(`${app.httpUrl}/nope`);
    assert.equal(response.status, 404);
    assert.equal(response.headers.get("content-type"), "application/json");
    assert.deepEqual(await response.json(), { error: "no route /nope" });
  });
});

Deno.test("a method other than GET or HEAD answers 405 with a JSON error naming it", async () => {
  await withApp(async (app) => {
    for (const method of ["POST", "PUT", "DELETE"]) {
      const response = await fetch(`${app.httpUrl}/healthz`, {
        method,
        body: method === "DELETE" ? undefined : "x",
      });
      assert.equal(response.status, 405, method);
      assert.deepEqual(await response.json(), { error: `${method} is not allowed; use GET` });
    }
  });
});

Deno.test("HEAD /healthz answers like GET without a body", async () => {
  await withApp(async (app) => {
    await waitFor("a good probe", () => app.poller.health.get("demo")!.lastGoodPoll > 0);
    const response = await fetch(`${app.httpUrl}/healthz`, { method: "HEAD" });
    assert.equal(response.status, 200);
    assert.equal(await response.text(), "");
  });
});

Deno.test("GET / answers an HTML page naming the WebSocket endpoint", async () => {
  await withApp(async (app) => {
    const response = await fetch(`${app.httpUrl}/`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type")!, /^text\/html/);
    assert.ok((await response.text()).includes("/ws"));
  });
});

Deno.test("a client offering gatecast.v1 gets it selected; a client offering nothing gets none", async () => {
  await withApp(async (app) => {
    const v1 = await TestClient.open(app.wsUrl, ["other", "gatecast.v1"]);
    assert.equal(v1.socket.protocol, "gatecast.v1");
    await v1.close();
    const plain = await TestClient.open(app.wsUrl);
    assert.equal(plain.socket.protocol, "");
    await plain.close();
    const root = await TestClient.open(`ws://127.0.0.1:${app.port}/`, "gatecast.v1");
    assert.equal(root.socket.protocol, "gatecast.v1");
    await root.close();
  });
});

Deno.test("gatecast.v1 is selected when the header lists protocols without spaces, as Node's ws sends", async () => {
  await withApp(async (app) => {
    const answer = await rawUpgrade(app.port, "/ws", "other,gatecast.v1");
    assert.equal(answer.status, "HTTP/1.1 101 Switching Protocols");
    assert.equal(answer.headers.get("sec-websocket-protocol"), "gatecast.v1");
    const none = await rawUpgrade(app.port, "/ws", "other");
    assert.equal(none.status, "HTTP/1.1 101 Switching Protocols");
    assert.equal(none.headers.get("sec-websocket-protocol"), undefined);
  });
});

Deno.test("a WebSocket upgrade on another path answers 404", async () => {
  await withApp(async (app) => {
    const answer = await rawUpgrade(app.port, "/socket");
    assert.equal(answer.status, "HTTP/1.1 404 Not Found");
  });
});

Deno.test("a flood of refused upgrades logs the first at once, then one summary per interval, each refusal counted", async () => {
  const intervalMs = 200;
  const app = await startTestApp(
    {},
    { maxConnections: 2, allowedOrigins: ["https://dash.example.com"] },
    undefined,
    { refusalSummaryMs: intervalMs },
  );
  const held = [await TestClient.open(app.wsUrl), await TestClient.open(app.wsUrl)];
  const refusalLines = () =>
    app.logs.filter((line) => line.msg === "upgrade refused" || line.msg === "upgrades refused");
  const logged = () => refusalLines().reduce((sum, line) => sum + ((line.refused as number) ?? 1), 0);
  try {
    const started = Date.now();
    // 300 upgrades over the cap, and 20 from a browser origin that is not allowed.
    const [overCap, badOrigin] = await Promise.all([
      Promise.all(Array.from({ length: 300 }, () => RawClient.open(app.port))),
      Promise.all(Array.from({ length: 20 }, async () => {
        const response = await fetch(app.httpUrl + "/ws", {
          headers: {
            upgrade: "websocket",
            connection: "Upgrade",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            "sec-websocket-version": "13",
            origin: "https://evil.example",
          },
        });
        await response.body?.cancel();
        return response.status;
      })),
    ]);
    for (const client of overCap) client.destroy();
    assert.deepEqual(new Set(overCap.map((client) => client.answer.status)), new Set([503]));
    assert.deepEqual(new Set(badOrigin), new Set([403]));
    assert.equal(app.metrics.value("gatecast_upgrades_refused_total", { reason: "connection_cap" }), 300);
    assert.equal(app.metrics.value("gatecast_upgrades_refused_total", { reason: "origin" }), 20);

    await waitFor("every refusal in the log", () => logged() === 320);
    const elapsed = Date.now() - started;
    const lines = refusalLines();
    assert.ok(
      lines.length <= 2 + Math.ceil(elapsed / intervalMs),
      `${lines.length} lines for 320 refusals in ${elapsed} ms: more than the first and one per interval`,
    );
    const [first, ...summaries] = lines;
    assert.deepEqual([first.msg, first.remote], ["upgrade refused", "127.0.0.1"]);
    assert.ok(summaries.length >= 1 && summaries.every((line) => line.msg === "upgrades refused"));
    const byReason = new Map<string, number>([[first.reason as string, 1]]);
    for (const line of summaries) {
      for (const entry of (line.byReason as string).split(" ")) {
        const [reason, n] = entry.split("=");
        byReason.set(reason, (byReason.get(reason) ?? 0) + Number(n));
      }
      assert.match(line.topAddresses as string, /^127\.0\.0\.1=\d+$/);
      assert.equal(line.intervalMs, intervalMs);
    }
    assert.deepEqual(Object.fromEntries(byReason), { connection_cap: 300, origin: 20 });
  } finally {
    await Promise.all(held.map((client) => client.close()));
    await app.stop();
  }
});
