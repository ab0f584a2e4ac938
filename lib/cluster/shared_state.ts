/**
 * A topic's state as the node that polls its group shares it (cluster mode): what it keeps in
 * the group's state hash, so that a node whose client subscribes answers at once, without a
 * query, and what it publishes after each poll on the group's states channel: the change of
 * every topic the poll changed, in one message (a batch: {@link readStateBatch}). JSON with a
 * version; pure, no I/O.
 *
 * Rows travel as their layout (columns, key, varying columns) and their cells row after row;
 * a cell with no value at all (`undefined`, only `real` makes those) is listed in `missing`,
 * since JSON has no `undefined`. The receiving node rebuilds the rows' shape from them.
 *
 * A poll that changed varying cells only (the same shape as the state before it: the common
 * case, values moving under unchanged metadata) is published as those cells alone, `values`,
 * which a node holding the state before applies to it ({@link withValues}). The state hash
 * keeps, per topic, the last whole state ({@link encodeState}) and the latest values since it
 * ({@link valuesField}): every varying cell, so that the two make the latest state
 * ({@link latestState}) for a node that holds another, and the polling node encodes each
 * changed topic once a poll, not its whole state every poll.
 */

import { type Cell, LayoutError, layoutOf, rowKey, type RowSet } from "../handles/rows.ts";
import type { Stale } from "../hub/fanout.ts";
import type { Topic } from "../hub/registry.ts";
import { readVersioned } from "./versioned_json.ts";

/**
 * The version of the message format; a message of another version is refused (2: `values`;
 * 3: the state hash keeps the latest values beside the last whole state).
 */
export const SHARED_STATE_VERSION = 3;

/**
 * The state hash's field for a topic's latest values since its last whole state (which is
 * under the topic's key). A topic key has no space, so no topic's key is another's values field.
 *
 * @example
 * ```ts
 * valuesField("plant1/real/1"); // "plant1/real/1 values"
 * ```
 */
export function valuesField(topicKey: string): string {
  return `${topicKey} values`;
}

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
  /** The rows; absent when {@link stale} or {@link values}. */
  readonly rows?: RowSet;
  /**
   * The varying cells of each row, row after row, when they are all that changed since the
   * state `seq - 1` of the same epoch: that state's rows with these cells are the rows ({@link withValues}).
   */
  readonly values?: readonly Cell[];
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
  const head = headOf(topic, node, fence);
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
  return JSON.stringify({
    ...head,
    ts: feed.ts,
    rows: {
      columns: layout.columns,
      key: layout.key,
      varying: layout.varying.map((index) => layout.columns[index]),
      cells: rows.cells,
      ...missingOf(rows.cells),
    },
  });
}

/** A topic's latest change as the polling node shares it: its values alone, or its whole state. */
export interface SharedChange {
  /** `values`: the varying cells alone ({@link withValues}); `state`: the whole state ({@link encodeState}). */
  readonly kind: "values" | "state";
  /** The message. */
  readonly text: string;
}

/**
 * Encodes a topic's latest change, as the node that polls its group publishes it after a poll:
 * its varying cells alone when they are all that changed (`Feed.varyingOnly`, fanout.ts), else its
 * whole state ({@link encodeState}). The kind tells the state hash where to keep it.
 *
 * @param topic a topic with rows or a `stale` reason
 * @param node this node's name
 * @param fence this node's lease fence for the topic's group
 */
export function encodeChange(topic: Topic, node: string, fence: number): SharedChange {
  const feed = topic.feed;
  if (!feed.varyingOnly) return { kind: "state", text: encodeState(topic, node, fence) };
  const { shape: { layout, keys }, cells } = feed.rows!;
  const width = layout.columns.length;
  const values: Cell[] = [];
  for (let row = 0; row < keys.length; row++) {
    for (const column of layout.varying) values.push(cells[row * width + column]);
  }
  const text = JSON.stringify({ ...headOf(topic, node, fence), ts: feed.ts, values, ...missingOf(values) });
  return { kind: "values", text };
}

function headOf(topic: Topic, node: string, fence: number) {
  const feed = topic.feed;
  return { v: SHARED_STATE_VERSION, topic: topic.name.key, node, fence, epoch: feed.epoch, seq: feed.seq };
}

/** `{missing: [...]}`, the indexes of the cells with no value, or `{}` when every cell has one. */
function missingOf(cells: readonly Cell[]): { missing?: number[] } {
  const missing: number[] = [];
  for (let i = 0; i < cells.length; i++) if (cells[i] === undefined) missing.push(i);
  return missing.length > 0 ? { missing } : {};
}

/**
 * The rows of a state that changed varying cells only: `held` (the state `seq - 1`) with
 * `values` in its varying columns. The shape is `held`'s own, so that a diff against `held`
 * compares the varying cells only, as the polling node's did.
 *
 * @throws {SharedStateError} when `values` are not one per varying column of each held row
 */
export function withValues(held: RowSet, values: readonly Cell[]): RowSet {
  const { shape, cells } = held;
  const varying = shape.layout.varying;
  const width = shape.layout.columns.length;
  if (values.length !== shape.keys.length * varying.length) {
    throw new SharedStateError(
      `shared state: ${values.length} values for ${shape.keys.length} rows of ${varying.length} varying columns`,
    );
  }
  const next = cells.slice();
  let at = 0;
  for (let row = 0; row < shape.keys.length; row++) {
    for (const column of varying) next[row * width + column] = values[at++];
  }
  return { shape, cells: next };
}

/**
 * A topic's latest state from what the state hash keeps of it: its last whole state, and the
 * latest values since (their rows are the whole state's with those values), when they follow it
 * in the same epoch; else the whole state. Values are never older than the whole state they
 * follow: the polling node writes each whole state and clears the values with it, and values
 * only follow states of the same shape.
 *
 * @throws {SharedStateError} when the values do not fit the whole state's rows
 */
export function latestState(whole: SharedState, values: SharedState | undefined): SharedState {
  if (
    values?.values === undefined || whole.rows === undefined || values.topic !== whole.topic ||
    values.epoch !== whole.epoch || values.seq <= whole.seq
  ) return whole;
  const { values: cells, ...head } = values;
  return { ...head, rows: withValues(whole.rows, cells) };
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
  if (message.values !== undefined) {
    return { ...head, values: scalars(message.values, message.missing, VALUES) };
  }
  return { ...head, rows: decodeRows(object(message.rows, "rows")) };
}

function decodeRows(raw: Record<string, unknown>): RowSet {
  const columns = strings(raw.columns, "rows.columns");
  const key = strings(raw.key, "rows.key");
  const varying = strings(raw.varying, "rows.varying");
  let layout;
  try {
    layout = layoutOf(columns, key, varying);
  } catch (error) {
    if (error instanceof LayoutError) throw new SharedStateError(`shared state: ${error.message}`);
    throw error;
  }
  const width = columns.length;
  const cells = scalars(raw.cells, raw.missing, ROW_CELLS);
  if (width === 0 || cells.length % width !== 0) {
    throw new SharedStateError(`shared state: ${cells.length} cells do not make rows of ${width} columns`);
  }
  const keys: string[] = [];
  for (let offset = 0; offset < cells.length; offset += width) {
    keys.push(rowKey(cells, offset, layout.keyIndexes));
  }
  return { shape: { layout, keys }, cells };
}

/** Where a list of cells sits in a message, for its errors. */
interface CellsAt {
  /** The array (`rows.cells`, `values`). */
  readonly array: string;
  /** One of its items (`cell`, `value`). */
  readonly item: string;
  /** The list of those with no value (`rows.missing`, `missing`). */
  readonly missing: string;
}

const ROW_CELLS: CellsAt = { array: "rows.cells", item: "cell", missing: "rows.missing" };
const VALUES: CellsAt = { array: "values", item: "value", missing: "missing" };

/** Cells as JSON carries them: an array of scalars, and the indexes of those with no value at all. */
function scalars(raw: unknown, missing: unknown, at: CellsAt): Cell[] {
  if (!Array.isArray(raw)) throw new SharedStateError(`shared state: ${at.array} must be an array`);
  const cells: Cell[] = raw.map((cell, i) => {
    if (cell === null || typeof cell === "string" || typeof cell === "number" || typeof cell === "boolean") {
      return cell;
    }
    throw new SharedStateError(`shared state: ${at.item} ${i} is not a scalar`);
  });
  for (const index of missing === undefined ? [] : numbers(missing, at.missing)) {
    if (index < 0 || index >= cells.length) {
      throw new SharedStateError(
        `shared state: ${at.missing} names ${at.item} ${index}; there are ${cells.length}`,
      );
    }
    cells[index] = undefined;
  }
  return cells;
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

/**
 * Reads a batch of states as the publish script sends it (`cluster_keys.ts` `PUBLISH_SCRIPT`):
 * lines alternating a topic key and that topic's change ({@link encodeChange}), in the order of
 * the poll. Neither has a line break of its own (topic keys are `[A-Za-z0-9_.:/-]`; JSON escapes
 * line breaks in strings), so a follower reads each key before it decides to decode the change,
 * and decodes only the changes of topics it holds.
 *
 * @returns the (topic key, change text) pairs, in order
 * @throws {SharedStateError} for an empty message or one of an odd number of lines
 */
export function readStateBatch(text: string): [string, string][] {
  const lines = text.split("\n");
  if (text === "" || lines.length % 2 !== 0) {
    throw new SharedStateError(
      `state batch: ${text === "" ? "empty" : `${lines.length} lines do not make (topic, state) pairs`}`,
    );
  }
  const pairs: [string, string][] = [];
  for (let i = 0; i < lines.length; i += 2) pairs.push([lines[i], lines[i + 1]]);
  return pairs;
}
