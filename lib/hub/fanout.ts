/**
 * Fan-out: turns a topic's new poll into frames and sends them to its subscribers.
 *
 * Each subscription carries the {@link Encoder} of its protocol; a frame is encoded once per
 * topic, encoder and tick, and only the per-subscription `seq` differs (an encoder's frames keep
 * one string per `seq`). A subscriber that is behind (its send buffer over the soft limit) gets
 * no intermediate updates and, once drained, one fresh snapshot. This module owns each topic's
 * published state, its {@link Feed}; the poller and the registry go through the functions here.
 */

import { diffRows, type RowsDelta, type RowSet } from "../handles/rows.ts";
import type { Subscription, Topic } from "./registry.ts";

/** Why a topic cannot be served now: the `stale` frame's code and message. */
export interface Stale {
  /** `SOURCE_UNAVAILABLE`, `HANDLE_FAILED`, `TOO_MANY_ROWS`. */
  readonly code: string;
  /** What happened. */
  readonly message: string;
}

/** A frame encoded once for every subscriber of a topic; only its `seq` differs. */
export interface Frame {
  /** The frame's text for a subscriber at `seq`. */
  text(seq: number): string;
  /** The UTF-8 length of {@link text}`(seq)`. */
  bytes(seq: number): number;
}

/** The changes of a poll, as the diff found them. */
export type RowsChanged = Extract<RowsDelta, { kind: "changed" }>;

/** Turns a topic's state into one protocol's frames (`lib/wire/`). */
export interface Encoder {
  /**
   * `true`: the subscriber gets a snapshot, then numbered updates and `stale` frames. `false`:
   * it gets the whole state after every poll (the seed's array) and nothing else.
   */
  readonly incremental: boolean;
  /** The topic's current rows ({@link Feed.rows} is set). */
  snapshot(topic: Topic): Frame;
  /** The changes from `previous` to the current rows; `undefined` when this protocol cannot say them (a snapshot is sent). */
  update(topic: Topic, previous: RowSet, delta: RowsChanged): Frame | undefined;
  /** The `stale` frame of {@link Feed.stale}; `undefined` when this protocol has none. */
  stale(topic: Topic): string | undefined;
}

/** A topic's published state: its latest rows, whether it is stale, and who is owed a snapshot. */
export class Feed {
  /** The latest good poll; `undefined` before the first. */
  rows: RowSet | undefined;
  /** Time of the latest poll that changed something, ms since the epoch. */
  ts = 0;
  /** Set while the topic cannot be served. */
  stale: Stale | undefined;
  /** Incremental subscriptions owed a fresh snapshot (new, held back while slow, or after `stale`). */
  readonly owed = new Set<Subscription>();
  private readonly snapshots = new Map<Encoder, Frame>();

  /** The snapshot of the current rows in an encoder's protocol, encoded once per change. */
  snapshotFor(topic: Topic, encoder: Encoder): Frame {
    let frame = this.snapshots.get(encoder);
    if (!frame) {
      frame = encoder.snapshot(topic);
      this.snapshots.set(encoder, frame);
    }
    return frame;
  }

  /** Takes a poll that changed something. */
  replace(rows: RowSet, now: number): void {
    this.rows = rows;
    this.ts = now;
    this.snapshots.clear();
  }

  /** Takes a new subscription: an incremental one is owed a snapshot until it gets one. */
  join(subscription: Subscription): void {
    if (subscription.encoder.incremental) this.owed.add(subscription);
  }

  /** Forgets a subscription that left the topic. */
  leave(subscription: Subscription): void {
    this.owed.delete(subscription);
  }
}

const RESHAPED = { kind: "reshaped" } as const;

/** Sends a frame when the peer admits it, numbering it for incremental subscribers; returns the peer's answer. */
function offer(subscription: Subscription, frame: Frame): "send" | "skip" | "dropped" {
  const admitted = subscription.peer.admit();
  if (admitted === "send") {
    const seq = subscription.encoder.incremental ? ++subscription.seq : 0;
    subscription.peer.send(frame.text(seq), frame.bytes(seq));
  }
  return admitted;
}

/** Sends a frame that carries no `seq` (`stale`) when the peer admits it. */
function sendAdmitted(subscription: Subscription, text: string): void {
  if (subscription.peer.admit() === "send") subscription.peer.send(text);
}

/**
 * Publishes a good poll of a topic: a snapshot to subscribers owed one (new, recovering from
 * `stale`, drained after being slow, or all of them when the rows could not be updated in
 * place), an update with the changes to the others, nothing when nothing changed; subscribers
 * that are not incremental get the whole state every time, as the seed sent it.
 */
export function publishPoll(topic: Topic, rows: RowSet, now: number): void {
  const feed = topic.feed;
  const previous = feed.rows;
  const delta = previous === undefined || feed.stale !== undefined ? RESHAPED : diffRows(previous, rows);
  feed.stale = undefined;
  if (delta.kind !== "unchanged") feed.replace(rows, now);
  if (delta.kind === "unchanged") {
    // Only subscribers owed a snapshot, and those who get every poll, hear anything.
    for (const subscription of feed.owed) {
      deliver(subscription, feed.snapshotFor(topic, subscription.encoder));
    }
    for (const subscription of topic.subscriptions) {
      if (!subscription.encoder.incremental) {
        offer(subscription, feed.snapshotFor(topic, subscription.encoder));
      }
    }
    return;
  }
  const updates = delta.kind === "changed" ? new Map<Encoder, Frame | undefined>() : undefined;
  for (const subscription of topic.subscriptions) {
    const encoder = subscription.encoder;
    if (!encoder.incremental) {
      offer(subscription, feed.snapshotFor(topic, encoder));
      continue;
    }
    let frame: Frame | undefined;
    if (updates !== undefined && !feed.owed.has(subscription)) {
      frame = updates.get(encoder);
      if (frame === undefined && !updates.has(encoder)) {
        frame = encoder.update(topic, previous!, delta as RowsChanged);
        updates.set(encoder, frame);
      }
    }
    deliver(subscription, frame ?? feed.snapshotFor(topic, encoder));
  }
}

/**
 * Offers an incremental subscriber its frame: a held-back frame means it needs a snapshot to
 * catch up, a sent one settles what it was owed (a dropped subscriber has already left).
 */
function deliver(subscription: Subscription, frame: Frame): void {
  const owed = subscription.topic.feed.owed;
  const answer = offer(subscription, frame);
  if (answer === "send") owed.delete(subscription);
  else if (answer === "skip") owed.add(subscription);
}

/**
 * Marks a topic stale after a failed poll: incremental subscribers get one `stale` frame per
 * outage (a new frame when the reason's code changes) and are owed a fresh snapshot when it
 * recovers. Subscribers that are not incremental get nothing (they cannot read such frames).
 */
export function publishStale(topic: Topic, stale: Stale): void {
  const feed = topic.feed;
  if (feed.stale !== undefined && feed.stale.code === stale.code) return;
  feed.stale = stale;
  for (const subscription of topic.subscriptions) {
    const text = subscription.encoder.stale(topic);
    if (text === undefined) continue;
    feed.owed.add(subscription);
    sendAdmitted(subscription, text);
  }
}

/**
 * Starts a topic stale without telling anyone (a new topic of a database that waits for its
 * retry): {@link welcome} tells its first subscriber. A topic that has rows keeps them.
 */
export function startStale(topic: Topic, stale: Stale): void {
  if (topic.feed.rows === undefined) topic.feed.stale ??= stale;
}

/**
 * Serves a new subscription from the topic's cached state, with no query: a snapshot (or the
 * whole state) when the topic has been polled, a `stale` frame when it cannot be served,
 * nothing when its first poll is still running (that poll will send it). Also serves a repeated
 * `subscribe` of the same topic: `seq` starts over at 1.
 */
export function welcome(subscription: Subscription): void {
  const topic = subscription.topic;
  const feed = topic.feed;
  const encoder = subscription.encoder;
  if (encoder.incremental) {
    subscription.seq = 0;
    feed.owed.add(subscription);
  }
  if (feed.stale !== undefined) {
    const text = encoder.stale(topic);
    if (text !== undefined) sendAdmitted(subscription, text);
    return;
  }
  if (feed.rows === undefined) return;
  if (encoder.incremental) deliver(subscription, feed.snapshotFor(topic, encoder));
  else offer(subscription, feed.snapshotFor(topic, encoder));
}
