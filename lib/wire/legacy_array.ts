/**
 * The seed's frames, for its old clients: the whole array of a topic's rows after every poll,
 * each row an object of its columns (for `real`, the nine keys of a point), a missing value
 * `""` and a NULL `null`, exactly as the seed sent them. No numbering, no other frame.
 */

import type { Encoder } from "../hub/fanout.ts";
import type { Topic } from "../hub/registry.ts";
import { fixedFrame } from "./numbered_frame.ts";
import { rowsJson } from "./row_json.ts";

/** The legacy encoder. */
export const legacyArray: Encoder = {
  incremental: false,
  snapshot(topic: Topic) {
    return fixedFrame(rowsJson(topic.feed.rows!, '""').json);
  },
  update() {
    return undefined;
  },
  stale() {
    return undefined;
  },
};
