/**
 * A topic's state as the node that polls its group shares it (cluster mode): the message it
 * publishes on the topic's Redis channel after each change, and keeps in the group's state hash
 * so that a node whose client subscribes answers at once, without a query. JSON with a version;
 * pure, no I/O.
 *
 * Rows travel as their layout (columns, key, varying columns) and their cells row after row;
 * a cell with no value at all (`undefined`, only `real` makes those) is listed in `missing`,
 * since JSON has no `undefined`. The receiving node rebuilds the rows' shape from them.
 */

import { type Cell, LayoutError, layoutOf, rowKey, type RowSet, type Scalar } from "../handles/rows.ts";
import type { Stale } from "../hub/fanout.ts";
import type { Topic } from "../hub/registry.ts";
import { readVersioned } from "./versioned_json.ts";

/** The version of the message format; a message of another version is refused. */
export const SHARED_STATE_VERSION = 1;

/** A topic's state as decoded from another node's message. */
export interface SharedState {
  /** The topic's key (`db/handle/unit`). */
  readonly topic: string;
  /** The node that polled it. */
  readonly node: string;
  /** That node's lease fence for the topic's group: a message with a lower one is from a lease since lost. */
  readonly fence: number;
  /** The topic's sequence epoch. */
  readonly epoch: string;
  /** Number of the state in the epoch (the latest rows' number when `stale`). */
  readonly seq: number;
  /** Time of the poll that changed the rows, ms since the epoch. */
  readonly ts: number;
  /** The rows; absent when {@link stale}. */
  readonly rows?: RowSet;
  /** Why the topic cannot be served; absent when it can. */
  readonly stale?: Stale;
}

/** A message that is not a shared state of this version. */
export class SharedStateError extends Error {
  override name = "SharedStateError";
}

/**
 * Encodes a topic's current state, as the node that polls its group publishes it.
 *
 * @param topic a topic with rows or a `stale` reason
 * @param node this node's name
 * @param fence this node's lease fence for the topic's group
 */
export function encodeState(topic: Topic, node: string, fence: number): string {
  const feed = topic.feed;
  const head = {
    v: SHARED_STATE_VERSION,
    topic: topic.name.key,
    node,
    fence,
    epoch: feed.epoch,
    seq: feed.seq,
  };
  if (feed.stale !== undefined) {
    return JSON.stringify({
      ...head,
      ts: feed.ts,
      stale: { code: feed.stale.code, message: feed.stale.message },
    });
  }
  const rows = feed.rows;
  if (rows === undefined) throw new SharedStateError(`topic ${topic.name.key} has no state to share yet`);
  const layout = rows.shape.layout;
  const missing: number[] = [];
  for (let i = 0; i < rows.cells.length; i++) if (rows.cells[i] === undefined) missing.push(i);
  return JSON.stringify({
    ...head,
    ts: feed.ts,
    rows: {
      columns: layout.columns,
      key: layout.key,
      varying: layout.varying.map((index) => layout.columns[index]),
      cells: rows.cells,
      ...(missing.length > 0 ? { missing } : {}),
    },
  });
}

/**
 * Decodes another node's message.
 *
 * @throws {SharedStateError} saying what is wrong, for a message that is not JSON, of another
 *   version, or with a field missing or of the wrong type.
 */
export function decodeState(text: string): SharedState {
  const message = readVersioned(
    text,
    "shared state",
    SHARED_STATE_VERSION,
    (text) => new SharedStateError(text),
  );
  const head = {
    topic: field(message, "topic", "string"),
    node: field(message, "node", "string"),
    fence: field(message, "fence", "number"),
    epoch: field(message, "epoch", "string"),
    seq: field(message, "seq", "number"),
    ts: field(message, "ts", "number"),
  };
  if (message.stale !== undefined) {
    const stale = object(message.stale, "stale");
    return {
      ...head,
      stale: {
        code: field(stale, "code", "string", "stale."),
        message: field(stale, "message", "string", "stale."),
      },
    };
  }
  return { ...head, rows: decodeRows(object(message.rows, "rows")) };
}

function decodeRows(raw: Record<string, unknown>): RowSet {
  const columns = strings(raw.columns, "rows.columns");
  const key = strings(raw.key, "rows.key");
  const varying = strings(raw.varying, "rows.varying");
  if (!Array.isArray(raw.cells)) throw new SharedStateError("shared state: rows.cells must be an array");
  let layout;
  try {
    layout = layoutOf(columns, key, varying);
  } catch (error) {
    if (error instanceof LayoutError) throw new SharedStateError(`shared state: ${error.message}`);
    throw error;
  }
  const width = columns.length;
  if (width === 0 || raw.cells.length % width !== 0) {
    throw new SharedStateError(
      `shared state: ${raw.cells.length} cells do not make rows of ${width} columns`,
    );
  }
  const cells: Cell[] = raw.cells.map((cell, i) => {
    if (cell === null || ["string", "number", "boolean"].includes(typeof cell)) return cell as Scalar;
    throw new SharedStateError(`shared state: cell ${i} is not a scalar`);
  });
  for (const index of raw.missing === undefined ? [] : numbers(raw.missing, "rows.missing")) {
    if (index < 0 || index >= cells.length) {
      throw new SharedStateError(`shared state: rows.missing names cell ${index}; there are ${cells.length}`);
    }
    cells[index] = undefined;
  }
  const keys: string[] = [];
  for (let offset = 0; offset < cells.length; offset += width) {
    keys.push(rowKey(cells, offset, layout.keyIndexes));
  }
  return { shape: { layout, keys }, cells };
}

/** A field of `from` of the given type; `parent` prefixes its name in the error (`stale.`). */
function field(from: Record<string, unknown>, name: string, type: "string", parent?: string): string;
function field(from: Record<string, unknown>, name: string, type: "number", parent?: string): number;
function field(
  from: Record<string, unknown>,
  name: string,
  type: "string" | "number",
  parent = "",
): string | number {
  const value = from[name];
  const ok = type === "string"
    ? typeof value === "string"
    : typeof value === "number" && Number.isFinite(value);
  if (!ok) throw new SharedStateError(`shared state: ${parent}${name} must be a ${type}`);
  return value as string | number;
}

function object(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new SharedStateError(`shared state: ${name} must be an object`);
  }
  return value as Record<string, unknown>;
}

function strings(value: unknown, name: string): string[] {
  if (!Array.isArray(value) || value.some((item) => typeof item !== "string")) {
    throw new SharedStateError(`shared state: ${name} must be an array of strings`);
  }
  return value;
}

function numbers(value: unknown, name: string): number[] {
  if (!Array.isArray(value) || value.some((item) => !Number.isInteger(item))) {
    throw new SharedStateError(`shared state: ${name} must be an array of integers`);
  }
  return value;
}
