/**
 * Server-Sent Events frames: a v1 frame as one event, `event:` its type, `data:` exactly its v1
 * text, `id:` `<topic>:<seq>`. The SSE encoder wraps a v1 encoder, so an event is encoded once
 * per topic and tick and shared by every SSE subscriber, as v1 frames are.
 * v1 frames are single-line JSON, so each is one `data:` line.
 */

import type { Encoder, Frame, Stale } from "../hub/fanout.ts";
import type { Topic } from "../hub/registry.ts";
import { utf8Length } from "./utf8.ts";

/** One event of a v1 frame: `event: <type>`, `id: <topic>:<seq>` and `data: <frame>`; its length from the parts. */
function eventFrame(type: string, topic: Topic, frame: Frame): Frame {
  const head = `event: ${type}\nid: ${topic.name.key}:${topic.feed.seq}\ndata: `;
  return { text: `${head}${frame.text}\n\n`, bytes: utf8Length(head) + frame.bytes + 2 };
}

/**
 * The SSE encoder of a v1 encoder: the same frames, each as one event.
 *
 * @example
 * ```ts
 * const pointsSse = sseEncoder(pointsV1);
 * pointsSse.snapshot(topic).text;
 * // 'event: snapshot\nid: plant1/real/12:1\ndata: {"type":"snapshot",…}\n\n'
 * ```
 */
export function sseEncoder(v1: Encoder): Encoder {
  // A stale event is the same for every subscriber of one outage: encode it once.
  const staleEvents = new WeakMap<Stale, string>();
  return {
    incremental: true,
    snapshot(topic: Topic) {
      return eventFrame("snapshot", topic, v1.snapshot(topic));
    },
    update(topic, previous, delta) {
      const frame = v1.update(topic, previous, delta);
      return frame && eventFrame("update", topic, frame);
    },
    stale(topic: Topic) {
      const stale = topic.feed.stale!;
      let text = staleEvents.get(stale);
      if (text === undefined) {
        const frame = v1.stale(topic);
        if (frame === undefined) return undefined;
        // No `id:`: a reconnecting client names the last snapshot or update it got.
        text = `event: stale\ndata: ${frame}\n\n`;
        staleEvents.set(stale, text);
      }
      return text;
    },
  };
}

/**
 * A comment line: `EventSource` ignores it, and it keeps proxies from closing an idle stream.
 */
export const SSE_HEARTBEAT = ": ping\n\n";

/** An event without `id:`: `event: <type>` and `data` as its one line (single-line JSON). */
export function sseEvent(type: string, data: string): string {
  return `event: ${type}\ndata: ${data}\n\n`;
}
