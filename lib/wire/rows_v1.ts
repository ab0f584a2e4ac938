/**
 * Protocol v1 frames of rows (the handles of the configuration): `snapshot` with `key` and
 * `rows` (every column of every row, in the result's order) and `update` with `upsert` (a changed
 * row's key and changed columns, or a new row whole, new rows last) and `delete` (the key
 * columns of each row gone). Both arrays are always present.
 */

import type { Encoder, RowsChanged } from "../hub/fanout.ts";
import type { Layout, RowSet } from "../handles/rows.ts";
import type { Topic } from "../hub/registry.ts";
import { numberedFrame } from "./numbered_frame.ts";
import { staleFrame } from "./protocol.ts";
import { allColumns, JsonWriter, rowsJson } from "./row_json.ts";

const keyColumns = new WeakMap<Layout, readonly number[]>();

/** The key columns in column order. */
function keyColumnsOf(layout: Layout): readonly number[] {
  let columns = keyColumns.get(layout);
  if (!columns) keyColumns.set(layout, columns = [...layout.keyIndexes].sort((a, b) => a - b));
  return columns;
}

/** The key columns and the changed ones, in column order. */
function withKey(layout: Layout, changed: readonly number[]): number[] {
  return [...new Set([...layout.keyIndexes, ...changed])].sort((a, b) => a - b);
}

function writeRow(out: JsonWriter, rows: RowSet, row: number, columns: readonly number[]): void {
  const { layout } = rows.shape;
  out.object(layout, rows.cells, row * layout.columns.length, columns, "null");
}

/** The rows v1 encoder. */
export const rowsV1: Encoder = {
  incremental: true,

  snapshot(topic: Topic) {
    const rows = topic.feed.rows!;
    const head = `,"key":${JSON.stringify(rows.shape.layout.key)},"rows":`;
    const body = rowsJson(rows, "null");
    return numberedFrame("snapshot", topic, {
      json: head + body.json + "}",
      bytes: new TextEncoder().encode(head).length + body.bytes + 1,
    });
  },

  update(topic: Topic, previous: RowSet, delta: RowsChanged) {
    const rows = topic.feed.rows!;
    const { layout } = rows.shape;
    const out = new JsonWriter();
    out.raw(',"upsert":[');
    delta.upserts.forEach((change, k) => {
      out.raw(k === 0 ? "" : ",");
      writeRow(
        out,
        rows,
        change.row,
        change.columns === undefined ? allColumns(layout) : withKey(layout, change.columns),
      );
    });
    out.raw('],"delete":[');
    const keys = keyColumnsOf(previous.shape.layout);
    delta.deleted.forEach((row, k) => {
      out.raw(k === 0 ? "" : ",");
      writeRow(out, previous, row, keys);
    });
    out.raw("]}");
    return numberedFrame("update", topic, out.done());
  },

  stale(topic: Topic) {
    return staleFrame(topic.name.key, topic.feed.epoch, topic.feed.stale!);
  },
};
