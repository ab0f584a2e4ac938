import assert from "node:assert/strict";
import { parseTopic } from "../support/topics.ts";
import {
  parseTopicPattern,
  parseTopicPatterns,
  topicAllowed,
  TopicPatternError,
} from "../../lib/config/topic_pattern.ts";

Deno.test("a pattern with * in a part matches every value of that part only", () => {
  const patterns = [parseTopicPattern("plant1/real/*")];
  assert.equal(topicAllowed(patterns, parseTopic("plant1/real/12")), true);
  assert.equal(topicAllowed(patterns, parseTopic("plant1/real/2147483647")), true);
  assert.equal(topicAllowed(patterns, parseTopic("plant2/real/12")), false);
  assert.equal(topicAllowed(patterns, parseTopic("plant1/hist/12")), false);
});

Deno.test("a unit pattern across databases matches that unit in every database", () => {
  const patterns = [parseTopicPattern("*/real/12")];
  assert.equal(topicAllowed(patterns, parseTopic("plant1/real/12")), true);
  assert.equal(topicAllowed(patterns, parseTopic("plant9/real/12")), true);
  assert.equal(topicAllowed(patterns, parseTopic("plant1/real/13")), false);
});

Deno.test("no patterns grant nothing; */*/* grants everything", () => {
  assert.equal(topicAllowed([], parseTopic("plant1/real/12")), false);
  assert.equal(topicAllowed([parseTopicPattern("*/*/*")], parseTopic("x/real/1")), true);
});

Deno.test("a pattern is parsed into its literal parts", () => {
  assert.deepEqual(parseTopicPattern("plant1/real/12"), {
    db: "plant1",
    handle: "real",
    unit: "12",
    text: "plant1/real/12",
  });
});

Deno.test("bad patterns are refused naming the part at fault", () => {
  assert.throws(() => parseTopicPattern("plant1/real/12/3"), /must have three parts/);
  assert.throws(() => parseTopicPattern("plant1/real/1*"), /unit must be \*, an integer from 1 or a name/);
  assert.throws(() => parseTopicPattern("plant1/REAL/1"), /handle must be \*/);
  assert.throws(() => parseTopicPattern("pl ant/real/1"), /database code must be \*/);
  assert.throws(() => parseTopicPattern("' OR 1=1 --/real/1"), TopicPatternError);
  assert.throws(() => parseTopicPattern(12), /must be a string/);
  assert.throws(() => parseTopicPatterns("plant1/real/*"), /expected an array/);
  assert.throws(() => parseTopicPatterns(["*/*/*", "bad"]), /^TopicPatternError: \[1\]: /);
});

Deno.test("string units match their name; * covers a handle without units; two parts cover only those", () => {
  const north = { db: "plant1", handle: "tanks", unit: "north" };
  const alarms = { db: "plant1", handle: "alarms", unit: null };
  assert.equal(topicAllowed([parseTopicPattern("plant1/tanks/north")], north), true);
  assert.equal(topicAllowed([parseTopicPattern("plant1/tanks/south")], north), false);
  assert.equal(topicAllowed([parseTopicPattern("plant1/*/*")], alarms), true);
  assert.equal(topicAllowed([parseTopicPattern("plant1/alarms")], alarms), true);
  assert.equal(topicAllowed([parseTopicPattern("*/*")], alarms), true);
  assert.equal(topicAllowed([parseTopicPattern("*/*")], north), false);
  // An int unit matches its decimal text only.
  assert.equal(
    topicAllowed([parseTopicPattern("plant1/real/12")], { db: "plant1", handle: "real", unit: 12 }),
    true,
  );
  assert.equal(
    topicAllowed([parseTopicPattern("plant1/real/012")], { db: "plant1", handle: "real", unit: 12 }),
    false,
  );
});
