/**
 * The leaseholder's report of a group's database health (lib/cluster/database_report.ts): a
 * report survives encode → decode exactly, with and without an error, and every malformed one is
 * refused with a message naming what is wrong.
 */

import assert from "node:assert/strict";
import {
  DATABASE_REPORT_VERSION,
  DatabaseReportError,
  decodeDatabaseReport,
  encodeDatabaseReport,
} from "../../lib/cluster/database_report.ts";

Deno.test("a database report survives encode and decode, with an error and without", () => {
  const good = { node: "a", fence: 7, lastGoodPoll: 1_764_000_000_000, error: undefined };
  assert.deepEqual(decodeDatabaseReport(encodeDatabaseReport(good)), good);
  const failing = {
    node: "b",
    fence: 8,
    lastGoodPoll: 0,
    error: "database 'plant1' is unavailable: ECONNREFUSED",
  };
  assert.deepEqual(decodeDatabaseReport(encodeDatabaseReport(failing)), failing);
  assert.equal(JSON.parse(encodeDatabaseReport(good)).v, DATABASE_REPORT_VERSION);
  assert.equal("error" in JSON.parse(encodeDatabaseReport(good)), false);
});

Deno.test("a malformed database report is refused, naming what is wrong", () => {
  const valid = { v: DATABASE_REPORT_VERSION, node: "a", fence: 1, lastGoodPoll: 5 };
  const cases: [string, string][] = [
    ["{", "database report is not JSON"],
    ["[1]", "database report is not an object"],
    ["null", "database report is not an object"],
    [JSON.stringify({ ...valid, v: 2 }), "database report of version 2; this node reads 1"],
    [JSON.stringify({ ...valid, node: 3 }), "database report: node must be a string"],
    [JSON.stringify({ ...valid, fence: 1.5 }), "database report: fence must be an integer"],
    [
      JSON.stringify({ ...valid, lastGoodPoll: -1 }),
      "database report: lastGoodPoll must be a time in ms (0: never)",
    ],
    [
      JSON.stringify({ ...valid, lastGoodPoll: "5" }),
      "database report: lastGoodPoll must be a time in ms (0: never)",
    ],
    [JSON.stringify({ ...valid, error: 5 }), "database report: error must be a string when present"],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => decodeDatabaseReport(text), (error: unknown) => {
      assert.ok(error instanceof DatabaseReportError, text);
      assert.equal(error.message, message, text);
      return true;
    });
  }
});
