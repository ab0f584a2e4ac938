/**
 * Logs: one JSON object per line (time, level, msg, fields), filtered by level; and a real
 * gatecast process whose database refuses its login logs the failure at warn, connections at
 * debug, and never a password, wherever the password came from.
 */

import assert from "node:assert/strict";
import { Logger } from "../lib/log.ts";
import { createTestDatabase } from "./support/mysql.ts";
import { waitFor } from "./support/app.ts";
import { startGatecastProcess } from "./support/process.ts";
import { TestClient } from "./support/ws_client.ts";

Deno.test("a Logger writes one JSON object per line with time, level, msg and fields, at or above its level", () => {
  const lines: string[] = [];
  const logger = new Logger("info", (line) => lines.push(line));
  logger.debug("not written", { conn: 1 });
  logger.info("listening", { host: "0.0.0.0", port: 4053 });
  logger.warn("database failing", { db: "plant1", error: "ECONNREFUSED" });
  logger.error("request failed");
  assert.deepEqual(lines.length, 3);
  const parsed = lines.map((line) => JSON.parse(line));
  for (const entry of parsed) assert.match(entry.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual(parsed.map(({ time: _, ...rest }) => rest), [
    { level: "info", msg: "listening", host: "0.0.0.0", port: 4053 },
    { level: "warn", msg: "database failing", db: "plant1", error: "ECONNREFUSED" },
    { level: "error", msg: "request failed" },
  ]);
  assert.deepEqual(Object.keys(parsed[0]).slice(0, 3), ["time", "level", "msg"]);
  assert.ok(lines.every((line) => !line.includes("\n")));
});

Deno.test("a gatecast process logs JSON lines only, connections at debug, a refused login at warn, and no password", async () => {
  const db = await createTestDatabase();
  const secrets = {
    file: `file-secret-${crypto.randomUUID()}`,
    env: `env-secret-${crypto.randomUUID()}`,
    url: `url-secret-${crypto.randomUUID()}`,
  };
  const { host, port, database } = db.settings;
  const user = "gatecast_nobody";
  const dir = await Deno.makeTempDir({ prefix: "gatecast-log-" });
  const configPath = `${dir}/gatecast.json`;
  await Deno.writeTextFile(
    configPath,
    JSON.stringify({
      host: "127.0.0.1",
      pollIntervalMs: 100,
      databases: {
        fromfile: { host, port, user, password: secrets.file, database },
        fromenv: { host, port, user, passwordEnv: "GATECAST_TEST_PASSWORD", database },
        fromurl: { url: `mysql://${user}:${secrets.url}@${host}:${port}/${database}` },
      },
    }),
  );
  const proc = await startGatecastProcess(
    new URL("../main.ts", import.meta.url).pathname,
    ["--allow-net", `--allow-read=${dir}`, "--allow-env=GATECAST_TEST_PASSWORD"],
    ["--config", configPath, "--port", "0", "--log-level", "debug"],
    { GATECAST_TEST_PASSWORD: secrets.env },
  );
  let exitCode: number | undefined;
  const seen: string[] = [];
  try {
    await waitFor(
      "three refused logins",
      () => proc.stderr.filter((l) => l.includes('"database failing"')).length === 3,
    );
    const client = await TestClient.open(`ws://127.0.0.1:${proc.port}/ws`, "gatecast.v1");
    for (const topic of ["fromfile/real/1", "fromenv/real/1", "fromurl/real/1"]) {
      client.send({ type: "subscribe", id: 1, topic });
      seen.push(await client.nextText()); // subscribed
      seen.push(await client.nextText()); // stale, with the failure's message
    }
    assert.deepEqual(seen.filter((text) => JSON.parse(text).type === "stale").length, 3);
    seen.push(await (await fetch(`${proc.httpUrl}/healthz`)).text());
    await client.close();
    await waitFor("the close to be logged", () => proc.stderr.some((l) => l.includes('"connection closed"')));
  } finally {
    exitCode = await proc.stop();
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
  assert.deepEqual(exitCode, 0);
  const entries = proc.stderr.map((line) => JSON.parse(line));
  for (const entry of entries) {
    assert.deepEqual(Object.keys(entry).slice(0, 3), ["time", "level", "msg"]);
    assert.ok(["debug", "info", "warn", "error"].includes(entry.level));
  }
  const failing = entries.filter((e) => e.msg === "database failing");
  assert.deepEqual(failing.map((e) => [e.level, e.db]).sort(), [
    ["warn", "fromenv"],
    ["warn", "fromfile"],
    ["warn", "fromurl"],
  ]);
  for (const e of failing) assert.match(e.error, /ER_ACCESS_DENIED_ERROR/);
  assert.deepEqual(entries.filter((e) => e.msg === "connection opened").map((e) => e.level), ["debug"]);
  assert.deepEqual(entries.filter((e) => e.msg === "connection closed").map((e) => e.level), ["debug"]);
  assert.deepEqual(entries[entries.length - 1].msg, "stopped");

  const everything = [...proc.stderr, ...proc.stdout, ...seen].join("\n");
  for (const secret of Object.values(secrets)) assert.ok(!everything.includes(secret), "a password leaked");
  // The scan above read real output: the failures and the database names are in it.
  assert.ok(everything.includes("ER_ACCESS_DENIED_ERROR") && everything.includes("fromurl"));
});
