/**
 * The listener when descriptors run out: requests whose headers never finish are invisible to
 * the connection cap (Deno.serve has no header timeout), so under a low open-file limit they
 * exhaust the descriptors and new clients are refused; the failure line says how many
 * connections the server held, against its cap, and the listener comes back once they go.
 * (The flood of completed upgrades under the same limit is in limits_test.ts.)
 */

import assert from "node:assert/strict";
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
