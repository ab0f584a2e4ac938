/**
 * The text of a frame, made once per topic and tick and sent as is to every subscriber of its
 * protocol: `seq` and `epoch` are the topic's own (its {@link Feed}), the same for every
 * subscriber. Its UTF-8 length comes from the parts, measured once, not from scanning the text.
 */

import type { Frame } from "../hub/fanout.ts";
import type { Topic } from "../hub/registry.ts";
import { utf8Length } from "./utf8.ts";

/**
 * A `snapshot` or `update` frame of a topic at its current `seq` and `epoch`:
 * `{"type":…,"topic":…,"seq":N,"epoch":"…","ts":…` followed by `body` (the frame's own fields,
 * from the comma on, with the closing brace).
 *
 * @example
 * ```ts
 * numberedFrame("update", topic, { json: ',"changes":[]}', bytes: 14 }).text;
 * // '{"type":"update","topic":"plant1/real/12","seq":2,"epoch":"m1x2k9.1","ts":1000,"changes":[]}'
 * ```
 */
export function numberedFrame(
  type: "snapshot" | "update",
  topic: Topic,
  body: { readonly json: string; readonly bytes: number },
): Frame {
  const feed = topic.feed;
  const head = `{"type":"${type}","topic":${topic.keyJson},"seq":${feed.seq},"epoch":${
    JSON.stringify(feed.epoch)
  },"ts":${feed.ts}`;
  return { text: head + body.json, bytes: utf8Length(head) + body.bytes };
}

/**
 * A frame of a given text, its length measured once.
 *
 * @example
 * ```ts
 * fixedFrame("[]"); // { text: "[]", bytes: 2 }
 * ```
 */
export function fixedFrame(text: string): Frame {
  return { text, bytes: utf8Length(text) };
}
