/**
 * Server-Sent Events frames: a v1 frame as one event, `event:` its type, `data:` exactly its v1
 * text, `id:` `<topic>:<seq>`. The SSE encoder wraps a v1 encoder, so an event is encoded once
 * per topic, tick and `seq` and shared by every SSE subscriber at that `seq`, as v1 frames are.
 * v1 frames are single-line JSON, so each is one `data:` line.
 */

import type { Encoder, Frame, Stale } from "../hub/fanout.ts";
import type { Topic } from "../hub/registry.ts";
import { utf8Length } from "./utf8.ts";

/** One event of a v1 frame: `event: <type>`, `id: <topic>:<seq>` and `data: <frame>`. */
class EventFrame implements Frame {
  private readonly bySeq = new Map<number, string>();
  private readonly head: string;
  private readonly headBytes: number;

  /**
   * @param type the event's name (`snapshot`, `update`)
   * @param topic the topic's key
   * @param frame the v1 frame
   */
  constructor(type: string, topic: string, private readonly frame: Frame) {
    this.head = `event: ${type}\nid: ${topic}:`;
    this.headBytes = utf8Length(this.head);
  }

  /** The event at `seq`. */
  text(seq: number): string {
    let text = this.bySeq.get(seq);
    if (text === undefined) {
      text = `${this.head}${seq}\ndata: ${this.frame.text(seq)}\n\n`;
      this.bySeq.set(seq, text);
    }
    return text;
  }

  /** Its UTF-8 length: the v1 frame's plus the event's ASCII lines. */
  bytes(seq: number): number {
    return this.headBytes + String(seq).length + "\ndata: ".length + this.frame.bytes(seq) + 2;
  }
}

/**
 * The SSE encoder of a v1 encoder: the same frames, each as one event.
 *
 * @example
 * ```ts
 * const pointsSse = sseEncoder(pointsV1);
 * pointsSse.snapshot(topic).text(1);
 * // 'event: snapshot\nid: plant1/real/12:1\ndata: {"type":"snapshot",…}\n\n'
 * ```
 */
export function sseEncoder(v1: Encoder): Encoder {
  // A stale event is the same for every subscriber of one outage: encode it once.
  const staleEvents = new WeakMap<Stale, string>();
  return {
    incremental: true,
    snapshot(topic: Topic) {
      return new EventFrame("snapshot", topic.name.key, v1.snapshot(topic));
    },
    update(topic, previous, delta) {
      const frame = v1.update(topic, previous, delta);
      return frame && new EventFrame("update", topic.name.key, frame);
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
