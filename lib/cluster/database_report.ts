/**
 * A group's database health as the node that polls the group reports it (cluster mode). The
 * leaseholder writes one at each beat under the group's `health` key (`cluster_keys.ts`); a node
 * that follows the group reads it at its own beat, so that its `/healthz` knows whether the
 * database answers without a query of its own (the poller then does not probe it:
 * `Poller.adoptHealth`). JSON with a version; pure, no I/O.
 */

import type { DatabaseHealth } from "../hub/poller.ts";
import { readVersioned } from "./versioned_json.ts";

/** The version of the report's format; a report of another version is refused. */
export const DATABASE_REPORT_VERSION = 1;

/** What a leaseholder reports of a group's database. */
export interface DatabaseReport extends DatabaseHealth {
  /** The node that polls the group. */
  readonly node: string;
  /** Its lease fence for the group. */
  readonly fence: number;
}

/** A report that is not one of this version. */
export class DatabaseReportError extends Error {
  override name = "DatabaseReportError";
}

/** Encodes a leaseholder's report. */
export function encodeDatabaseReport(report: DatabaseReport): string {
  return JSON.stringify({
    v: DATABASE_REPORT_VERSION,
    node: report.node,
    fence: report.fence,
    lastGoodPoll: report.lastGoodPoll,
    ...(report.error === undefined ? {} : { error: report.error }),
  });
}

/**
 * Decodes a report another node wrote.
 *
 * @throws {DatabaseReportError} saying what is wrong: not JSON, another version, a field missing
 *   or of the wrong type.
 */
export function decodeDatabaseReport(text: string): DatabaseReport {
  const message = readVersioned(
    text,
    "database report",
    DATABASE_REPORT_VERSION,
    (text) => new DatabaseReportError(text),
  );
  const { node, fence, lastGoodPoll, error } = message;
  if (typeof node !== "string") throw new DatabaseReportError("database report: node must be a string");
  if (!Number.isSafeInteger(fence)) {
    throw new DatabaseReportError("database report: fence must be an integer");
  }
  if (!Number.isSafeInteger(lastGoodPoll) || (lastGoodPoll as number) < 0) {
    throw new DatabaseReportError("database report: lastGoodPoll must be a time in ms (0: never)");
  }
  if (error !== undefined && typeof error !== "string") {
    throw new DatabaseReportError("database report: error must be a string when present");
  }
  return { node, fence: fence as number, lastGoodPoll: lastGoodPoll as number, error };
}
