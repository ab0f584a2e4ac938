/**
 * Logging: one JSON object per line with time, level, msg and fields, filtered by level; and a
 * real gatecast process whose database refuses its login logs the failure at warn, connections
 * at debug, and never a password, wherever the password came from.
 */

import assert from "node:assert/strict";
import { Logger } from "../../lib/ops/log.ts";
import { createTestDatabase } from "../support/mysql.ts";
import { waitFor } from "../support/app.ts";
import { startGatecastProcess } from "../support/process.ts";
import { TestClient } from "../support/ws_client.ts";

function capture(level: "debug" | "info" | "warn" | "error") {
  const lines: string[] = [];
  return { lines, logger: new Logger(level, (line) => lines.push(line)) };
}

Deno.test("a line is one JSON object with time, level, msg, then the fields", () => {
  const { lines, logger } = capture("info");
  logger.info("listening", { host: "127.0.0.1", port: 4053, ok: true, none: null });
  assert.equal(lines.length, 1);
  assert.ok(!lines[0].includes("\n"));
  const entry = JSON.parse(lines[0]);
  assert.deepEqual(Object.keys(entry), ["time", "level", "msg", "host", "port", "ok", "none"]);
  assert.equal(entry.level, "info");
  assert.equal(entry.msg, "listening");
  assert.equal(entry.host, "127.0.0.1");
  assert.equal(entry.port, 4053);
  assert.equal(entry.ok, true);
  assert.equal(entry.none, null);
  assert.equal(new Date(entry.time).toISOString(), entry.time);
});

Deno.test("lines below the logger's level are not written", () => {
  const { lines, logger } = capture("warn");
  logger.debug("d");
  logger.info("i");
  logger.warn("w");
  logger.error("e");
  assert.deepEqual(lines.map((l) => JSON.parse(l).level), ["warn", "error"]);
});

Deno.test("at debug level every level is written", () => {
  const { lines, logger } = capture("debug");
  logger.debug("d");
  logger.info("i");
  logger.warn("w");
  logger.error("e");
  assert.deepEqual(lines.map((l) => JSON.parse(l).msg), ["d", "i", "w", "e"]);
});

Deno.test("the level can be changed after construction", () => {
  const { lines, logger } = capture("error");
  logger.info("hidden");
  logger.level = "info";
  logger.info("shown");
  assert.deepEqual(lines.map((l) => JSON.parse(l).msg), ["shown"]);
});

Deno.test("undefined fields are left out and newlines in messages stay inside the one line", () => {
  const { lines, logger } = capture("info");
  logger.warn("database failing\nsecond line", { db: "plant1", error: undefined });
  assert.equal(lines.length, 1);
  assert.ok(!lines[0].includes("\n"));
  const entry = JSON.parse(lines[0]);
  assert.equal(entry.msg, "database failing\nsecond line");
  assert.ok(!("error" in entry));
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
      auth: { mode: "none" },
      databases: {
        fromfile: { host, port, user, password: secrets.file, database },
        fromenv: { host, port, user, passwordEnv: "GATECAST_TEST_PASSWORD", database },
        fromurl: { url: `mysql://${user}:${secrets.url}@${host}:${port}/${database}` },
      },
    }),
  );
  const proc = await startGatecastProcess(
    new URL("../../main.ts", import.meta.url).pathname,
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
