/**
 * The listener when descriptors run out: requests whose headers never finish are invisible to
 * the connection cap (Deno.serve has no header timeout), so under a low open-file limit they
 * exhaust the descriptors and new clients are refused; the failure line says how many
 * connections the server held, against its cap, and the listener comes back once they go.
 * (The flood of completed upgrades under the same limit is in limits_test.ts.) With `reusePort`, two
 * listeners share one address and port and the kernel hands new connections to both; without it the
 * second is refused.
 */

import assert from "node:assert/strict";
import { Listener } from "../../lib/net/listener.ts";
import { Logger } from "../../lib/ops/log.ts";
import { waitFor } from "../support/app.ts";
import { startGatecastWithConfig } from "../support/process.ts";

const encoder = new TextEncoder();
const OPEN_FILES = 256;

Deno.test("half-sent requests under the cap exhaust the descriptors and stop new clients until they close", async () => {
  const server = await startGatecastWithConfig(
    { host: "127.0.0.1", port: 0, databases: {}, auth: { mode: "none" } },
    OPEN_FILES,
  );
  const held: Deno.TcpConn[] = [];
  try {
    // 256 - 128 reserved - 26 (a tenth) = 102
    assert.equal(server.listening.maxConnections, 102);
    // Until a new client is refused: no listener (refused), or closed in the accept queue (reset).
    let refused: unknown;
    while (held.length < 2 * OPEN_FILES) {
      try {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
        held.push(conn);
        await conn.write(encoder.encode(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n`));
      } catch (error) {
        refused = error;
        break;
      }
    }
    assert.ok(
      refused instanceof Deno.errors.ConnectionRefused || refused instanceof Deno.errors.ConnectionReset,
      `refused with ${refused}`,
    );
    // Every descriptor the process has, but those it held at start, went to a half-sent request.
    assert.ok(held.length > OPEN_FILES - 40, `new clients refused after ${held.length} half-sent requests`);
    const failure = () =>
      server.stderr.find((line) => line.includes('"msg":"listener failed; listening again soon"'));
    await waitFor("the failure line", () => failure() !== undefined);
    const failed = JSON.parse(failure()!);
    assert.match(failed.error, /Too many open files/);
    assert.deepEqual(
      [failed.connections, failed.connectionCap, failed.openFileLimit],
      [0, 102, OPEN_FILES],
    );

    for (const conn of held.splice(0)) conn.close();
    await waitFor("new clients to be served again", async () => {
      try {
        return (await fetch(`${server.httpUrl}/healthz`)).status === 200;
      } catch {
        return false;
      }
    }, 10_000);
    assert.ok(server.stderr.every((line) => !line.includes("Uncaught")), "no uncaught error");
  } finally {
    for (const conn of held) conn.close();
    await server.stop();
  }
});

/** The body of `GET /` sent on a connection of its own, so that the kernel picks a listener for it. */
async function getOnNewConnection(port: number): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encoder.encode(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`));
  const response = await new Response(conn.readable).text();
  return response.slice(response.indexOf("\r\n\r\n") + 4);
}

/**
 * `Deno.serve({ reusePort: true })` exits the process unless Deno runs with `--unstable-net` (Deno 2.9), which
 * also exposes `Deno.listenDatagram`: without it the test is reported ignored instead of ending the run.
 */
const UNSTABLE_NET = "listenDatagram" in Deno;

Deno.test({
  name: "two listeners with reusePort bind one address and port, and new connections reach both",
  ignore: !UNSTABLE_NET,
}, async () => {
  const logger = new Logger("error");
  const answer = (name: string) => () => new Response(name);
  const first = await Listener.start(
    { hostname: "127.0.0.1", port: 0, reusePort: true },
    answer("first"),
    logger,
  );
  try {
    const second = await Listener.start(
      { hostname: "127.0.0.1", port: first.addr.port, reusePort: true },
      answer("second"),
      logger,
    );
    try {
      assert.equal(second.addr.port, first.addr.port);
      // The kernel spreads connections by a hash of their addresses: a few new ones reach both.
      const served = new Set<string>();
      for (let i = 0; i < 200 && served.size < 2; i++) served.add(await getOnNewConnection(first.addr.port));
      assert.deepEqual([...served].sort(), ["first", "second"]);
    } finally {
      await second.listener.stop();
    }
  } finally {
    await first.listener.stop();
  }
});

Deno.test("without reusePort a second listener on a bound port fails with AddrInUse", async () => {
  const logger = new Logger("error");
  const handler = () => new Response("ok");
  const first = await Listener.start({ hostname: "127.0.0.1", port: 0 }, handler, logger);
  try {
    await assert.rejects(
      Listener.start({ hostname: "127.0.0.1", port: first.addr.port }, handler, logger),
      Deno.errors.AddrInUse,
    );
  } finally {
    await first.listener.stop();
  }
});
