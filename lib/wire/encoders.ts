/**
 * Which encoder serves a subscription: the connection's protocol and the handle's frame family
 * decide, once, when it subscribes; the fan-out never asks which protocol a subscriber speaks.
 */

import type { FrameFamily } from "../handles/handle.ts";
import type { Encoder } from "../hub/fanout.ts";
import { legacyArray } from "./legacy_array.ts";
import { pointsV1 } from "./points_v1.ts";
import { rowsV1 } from "./rows_v1.ts";

/** The protocols a connection can speak. */
export type WireProtocol = "v1" | "legacy";

/**
 * The encoder of a protocol for a handle's frames.
 *
 * @example
 * ```ts
 * encoderFor("v1", "points"); // pointsV1
 * ```
 */
export function encoderFor(protocol: WireProtocol, frames: FrameFamily): Encoder {
  if (protocol === "legacy") return legacyArray;
  return frames === "points" ? pointsV1 : rowsV1;
}
