/**
 * Logging: one JSON object per line with time, level, msg and fields, filtered by level.
 */

import assert from "node:assert/strict";
import { Logger } from "../lib/log.ts";

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
