/**
 * Frames that carry a subscriber's `seq`: encoded once per topic and tick as the text before the
 * number and the text after it, with one string per `seq` kept for the subscribers at that
 * `seq`. Their UTF-8 length comes from the parts, measured once, not from scanning each string.
 */

import type { Frame } from "../hub/fanout.ts";
import { utf8Length } from "./utf8.ts";

/** A {@link Frame} of the form `head + seq + tail`. */
export class NumberedFrame implements Frame {
  private readonly bySeq = new Map<number, string>();
  private readonly fixedBytes: number;
  /**
   * @param head the frame up to its `seq`
   * @param tail the rest of the frame after its `seq`
   * @param tailBytes the UTF-8 length of `tail`
   */
  constructor(private readonly head: string, private readonly tail: string, tailBytes: number) {
    this.fixedBytes = utf8Length(head) + tailBytes;
  }

  /** The frame's text at `seq`. */
  text(seq: number): string {
    let text = this.bySeq.get(seq);
    if (text === undefined) {
      text = this.head + seq + this.tail;
      this.bySeq.set(seq, text);
    }
    return text;
  }

  /** The UTF-8 length of {@link text}`(seq)`: `seq`'s digits are ASCII. */
  bytes(seq: number): number {
    return this.fixedBytes + String(seq).length;
  }
}

/**
 * A `snapshot` or `update` frame of a topic: `{"type":…,"topic":…,"seq":N,"ts":…` followed by
 * `body` (the frame's own fields, from the comma on, with the closing brace).
 *
 * @example
 * ```ts
 * numberedFrame("update", '"plant1/real/12"', 1000, { json: ',"changes":[]}', bytes: 14 }).text(2);
 * // '{"type":"update","topic":"plant1/real/12","seq":2,"ts":1000,"changes":[]}'
 * ```
 */
export function numberedFrame(
  type: "snapshot" | "update",
  topicJson: string,
  ts: number,
  body: { readonly json: string; readonly bytes: number },
): NumberedFrame {
  const ts_ = `,"ts":${ts}`;
  return new NumberedFrame(
    `{"type":"${type}","topic":${topicJson},"seq":`,
    ts_ + body.json,
    ts_.length + body.bytes,
  );
}

/** A frame without `seq`: the same text for every subscriber (the seed's array). */
export class FixedFrame implements Frame {
  private readonly size: number;
  /** @param value the frame's text */
  constructor(private readonly value: string) {
    this.size = utf8Length(value);
  }
  /** The text, whatever the `seq`. */
  text(): string {
    return this.value;
  }
  /** Its UTF-8 length. */
  bytes(): number {
    return this.size;
  }
}
