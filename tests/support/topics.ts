/**
 * Topic names for tests: a topic string read with a handle's unit grammar (`int`, as `real`'s,
 * unless told), as a connection reads it once it knows the handle.
 */

import type { UnitType } from "../../lib/config/unit.ts";
import { splitTopic, type TopicName, unitOfTopic } from "../../lib/hub/topic.ts";

/** Parses a topic with a unit grammar. @throws {TopicError} as a connection would report it. */
export function parseTopic(topic: string, unitType: UnitType = "int"): TopicName {
  return unitOfTopic(splitTopic(topic), unitType);
}
