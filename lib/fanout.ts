/**
 * Fan-out: turns a topic's new poll into frames and sends them to its subscribers.
 *
 * The expensive part of a frame (the JSON of points or changes) is serialized once per topic
 * per tick; only the per-connection `seq` differs, so each distinct `seq` gets one string,
 * shared by every subscriber at that `seq`. A subscriber that is behind (its send buffer over
 * the soft limit) gets no intermediate updates and, once drained, one fresh snapshot.
 */

import { changesJson, diffPoints, toLegacyPoints, toV1Points, type UnitPoints } from "./point.ts";
import { staleFrame } from "./protocol.ts";
import { utf8Length } from "./utf8.ts";
import type { Subscription, Topic } from "./registry.ts";

/**
 * Builds `snapshot`/`update` frames for one topic and tick, one string per `seq`. Subscribers
 * that joined at different times are at different `seq`s, so a topic may need many strings a
 * tick; their UTF-8 length comes from the parts, measured once, not from scanning each string.
 */
class FrameCache {
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
  frame(seq: number): string {
    let text = this.bySeq.get(seq);
    if (text === undefined) {
      text = this.head + seq + this.tail;
      this.bySeq.set(seq, text);
    }
    return text;
  }
  /** The UTF-8 length of {@link frame}`(seq)`: `seq`'s digits are ASCII. */
  bytes(seq: number): number {
    return this.fixedBytes + String(seq).length;
  }
}

/** `update`/`snapshot` frames: the head up to `seq`, the tail from `ts` on (ASCII) to the body. */
function frameCache(
  type: "update" | "snapshot",
  topic: Topic,
  ts: number,
  body: string,
  bodyBytes: number,
): FrameCache {
  const tailStart = `,"ts":${ts},"${type === "update" ? "changes" : "points"}":`;
  return new FrameCache(
    `{"type":"${type}","topic":${topic.keyJson},"seq":`,
    tailStart + body + "}",
    tailStart.length + bodyBytes + 1,
  );
}

function snapshotFrames(topic: Topic): FrameCache {
  if (topic.pointsJson === undefined) {
    topic.pointsJson = JSON.stringify(toV1Points(topic.points!));
    topic.pointsBytes = utf8Length(topic.pointsJson);
  }
  return frameCache("snapshot", topic, topic.ts, topic.pointsJson, topic.pointsBytes);
}

function legacyArray(topic: Topic): string {
  return topic.legacyJson ??= JSON.stringify(toLegacyPoints(topic.points!));
}

/** Sends a frame that carries no `seq` (the legacy array, `stale`) when the peer admits it. */
function sendAdmitted(subscription: Subscription, text: string): void {
  if (subscription.peer.admit() === "send") subscription.peer.send(text);
}

/** Sends a frame when the peer admits it; returns the peer's answer. */
function offer(subscription: Subscription, frames: FrameCache): "send" | "skip" | "dropped" {
  const admitted = subscription.peer.admit();
  if (admitted === "send") {
    const seq = ++subscription.seq;
    subscription.peer.send(frames.frame(seq), frames.bytes(seq));
  }
  return admitted;
}

/**
 * Publishes a good poll of a topic: a snapshot to subscribers owed one (new, recovering from
 * `stale`, drained after being slow, or all of them when the point set changed), an update with
 * the changed points to the others, nothing when nothing changed; legacy subscribers get the
 * whole array every time, as the seed sent it.
 */
export function publishPoll(topic: Topic, points: UnitPoints, now: number): void {
  const previous = topic.points;
  const delta = previous === undefined || topic.stale !== undefined
    ? { kind: "reshaped" as const }
    : diffPoints(previous, points);
  topic.stale = undefined;
  if (delta.kind !== "unchanged") {
    topic.points = points;
    topic.ts = now;
    topic.pointsJson = undefined;
    topic.legacyJson = undefined;
  }
  let snapshots: FrameCache | undefined;
  let updates: FrameCache | undefined;
  if (delta.kind === "changed") {
    const changes = changesJson(points, delta.changed);
    updates = frameCache("update", topic, now, changes.json, changes.bytes);
  }
  // Unchanged: only subscribers owed a snapshot hear anything. Otherwise everyone does.
  for (const subscription of delta.kind === "unchanged" ? topic.owed : topic.subscriptions) {
    if (subscription.legacy) continue;
    const answer = updates === undefined || topic.owed.has(subscription)
      ? offer(subscription, snapshots ??= snapshotFrames(topic))
      : offer(subscription, updates);
    // A held-back frame means this subscriber needs a snapshot to catch up; a dropped
    // subscriber has already left the topic.
    if (answer === "send") topic.owed.delete(subscription);
    else if (answer === "skip") topic.owed.add(subscription);
  }
  sendLegacyArrays(topic);
}

function sendLegacyArrays(topic: Topic): void {
  for (const subscription of topic.subscriptions) {
    if (subscription.legacy) sendAdmitted(subscription, legacyArray(topic));
  }
}

/**
 * Marks a topic stale after a failed poll: v1 subscribers get one `stale` frame per outage and
 * are owed a fresh snapshot when the database recovers. Legacy clients get nothing (they cannot
 * read frames other than arrays).
 */
export function publishStale(topic: Topic, message: string): void {
  if (topic.stale !== undefined) return;
  topic.stale = message;
  const frame = staleFrame(topic.name.key, message);
  for (const subscription of topic.subscriptions) {
    if (subscription.legacy) continue;
    topic.owed.add(subscription);
    sendAdmitted(subscription, frame);
  }
}

/**
 * Serves a new subscription from the topic's cached state, with no query: a snapshot (v1) or
 * the array (legacy) when the topic has been polled, a `stale` frame when its database is
 * failing, nothing when its first poll is still running (that poll will send it). Also serves
 * a repeated `subscribe` of the same topic: `seq` starts over at 1.
 */
export function welcome(subscription: Subscription): void {
  const topic = subscription.topic;
  if (!subscription.legacy) {
    // Subscribing again starts the topic's numbering over, with a fresh snapshot.
    subscription.seq = 0;
    topic.owed.add(subscription);
  }
  if (topic.stale !== undefined) {
    if (!subscription.legacy) sendAdmitted(subscription, staleFrame(topic.name.key, topic.stale));
    return;
  }
  if (topic.points === undefined) return;
  if (subscription.legacy) {
    sendAdmitted(subscription, legacyArray(topic));
  } else if (offer(subscription, snapshotFrames(topic)) === "send") {
    topic.owed.delete(subscription);
  }
}
