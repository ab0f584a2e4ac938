/**
 * Protocol v1 frames of the seed's points (the `real` handle), as the contract fixes them:
 * `snapshot` with `points` (every point, a missing value `null`) and `update` with `changes`
 * (`{"address","code","value"}` of each point whose value changed). Anything else a poll can
 * bring (a point added, removed or renamed) has no `update` form: those subscribers get a snapshot.
 */

import type { Encoder, RowsChanged } from "../hub/fanout.ts";
import type { Shape } from "../handles/rows.ts";
import type { Topic } from "../hub/registry.ts";
import { numberedFrame } from "./numbered_frame.ts";
import { staleFrame } from "./protocol.ts";
import { JsonWriter, rowsJson } from "./row_json.ts";
import { utf8Length } from "./utf8.ts";

/** Each point's `{"address":…,"code":…,"value":` and its UTF-8 length, per shape. */
interface ChangePrefixes {
  readonly text: readonly string[];
  readonly bytes: readonly number[];
}

const changePrefixes = new WeakMap<Shape, ChangePrefixes>();

/** A shape's points keep their address and code while the shape is handed out again (`rows.ts`). */
function prefixesOf(shape: Shape, cells: readonly unknown[]): ChangePrefixes {
  let prefixes = changePrefixes.get(shape);
  if (!prefixes) {
    const { columns } = shape.layout;
    const width = columns.length;
    const address = columns.indexOf("address");
    const code = columns.indexOf("code");
    const text = shape.keys.map((_, row) =>
      `{"address":${JSON.stringify(cells[row * width + address] ?? null)},"code":${
        JSON.stringify(cells[row * width + code] ?? null)
      },"value":`
    );
    prefixes = { text, bytes: text.map(utf8Length) };
    changePrefixes.set(shape, prefixes);
  }
  return prefixes;
}

/** The `real` handle's v1 encoder. */
export const pointsV1: Encoder = {
  incremental: true,

  snapshot(topic: Topic) {
    const points = rowsJson(topic.feed.rows!, "null");
    const head = ',"points":';
    return numberedFrame("snapshot", topic, {
      json: head + points.json + "}",
      bytes: head.length + points.bytes + 1,
    });
  },

  update(topic: Topic, _previous, delta: RowsChanged) {
    const rows = topic.feed.rows!;
    const { varying, columns } = rows.shape.layout;
    if (delta.deleted.length > 0) return undefined;
    for (const change of delta.upserts) {
      if (change.columns === undefined || change.columns.some((column) => !varying.includes(column))) {
        return undefined;
      }
    }
    const value = columns.indexOf("value");
    const width = columns.length;
    const prefixes = prefixesOf(rows.shape, rows.cells);
    const out = new JsonWriter();
    out.raw(',"changes":[');
    delta.upserts.forEach((change, k) => {
      out.raw(k === 0 ? "" : ",");
      out.measured(prefixes.text[change.row], prefixes.bytes[change.row]);
      out.cell(rows.cells[change.row * width + value], "null");
      out.raw("}");
    });
    out.raw("]}");
    return numberedFrame("update", topic, out.done());
  },

  stale(topic: Topic) {
    return staleFrame(topic.name.key, topic.feed.epoch, topic.feed.stale!);
  },
};
