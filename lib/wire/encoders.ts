/**
 * Which encoder serves a subscription: the connection's protocol and the handle's frame family
 * decide, once, when it subscribes; the fan-out never asks which protocol a subscriber speaks.
 */

import type { FrameFamily } from "../handles/handle.ts";
import type { Encoder } from "../hub/fanout.ts";
import { legacyArray } from "./legacy_array.ts";
import { pointsV1 } from "./points_v1.ts";
import { rowsV1 } from "./rows_v1.ts";
import { wampPoints, wampRows } from "./wamp.ts";
import { sseEncoder } from "./sse.ts";

/** The protocols a connection can speak: v1, legacy and `wamp` on WebSockets, `sse` on `GET /sse`. */
export type WireProtocol = "v1" | "legacy" | "sse" | "wamp";

// One instance each: the fan-out encodes a frame once per topic and encoder.
const pointsSse = sseEncoder(pointsV1);
const rowsSse = sseEncoder(rowsV1);

/**
 * The encoder of a protocol for a handle's frames.
 *
 * @example
 * ```ts
 * encoderFor("v1", "points"); // pointsV1
 * ```
 */
export function encoderFor(protocol: WireProtocol, frames: FrameFamily): Encoder {
  switch (protocol) {
    case "legacy":
      return legacyArray;
    case "sse":
      return frames === "points" ? pointsSse : rowsSse;
    case "wamp":
      return frames === "points" ? wampPoints : wampRows;
    case "v1":
      return frames === "points" ? pointsV1 : rowsV1;
  }
}
