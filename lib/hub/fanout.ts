/**
 * Fan-out: turns a topic's new state into frames and sends them to its subscribers.
 *
 * A topic has one sequence, shared by all of its subscribers (and, in a cluster, by every node):
 * each new state that changes something takes the next `seq` of the topic's `epoch` (its
 * {@link Feed}). A frame is therefore encoded once per topic, encoder and tick, and every
 * subscriber of that protocol gets the same text. A subscriber that is behind (its send buffer
 * over the soft limit) gets no intermediate updates and, once drained, one fresh snapshot at the
 * topic's current `seq`. The state comes from this node's own poll ({@link publishPoll}) or from
 * the node that polls the topic's group ({@link publishAdopted}). This module owns each topic's
 * published state; the poller, the cluster and the registry go through the functions here.
 */

import { diffRows, type RowsDelta, type RowSet } from "../handles/rows.ts";
import { newEpoch } from "./epoch.ts";
import type { Subscription, Topic } from "./registry.ts";

/** Why a topic cannot be served now: the `stale` frame's code and message. */
export interface Stale {
  /** `SOURCE_UNAVAILABLE`, `HANDLE_FAILED`, `TOO_MANY_ROWS`. */
  readonly code: string;
  /** What happened. */
  readonly message: string;
}

/** A frame encoded once for every subscriber of a topic in one protocol. */
export interface Frame {
  /** The frame's text. */
  readonly text: string;
  /** Its UTF-8 length, known from its parts. */
  readonly bytes: number;
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
  /** The topic's current rows at its current `seq` ({@link Feed.rows} is set). */
  snapshot(topic: Topic): Frame;
  /** The changes from `previous` to the current rows; `undefined` when this protocol cannot say them (a snapshot is sent). */
  update(topic: Topic, previous: RowSet, delta: RowsChanged): Frame | undefined;
  /** The `stale` frame of {@link Feed.stale}; `undefined` when this protocol has none. */
  stale(topic: Topic): string | undefined;
}

/** A topic's state as the node that polls its group published it (cluster mode). */
export interface AdoptedState {
  /** The rows. */
  readonly rows: RowSet;
  /** Their number in the topic's sequence. */
  readonly seq: number;
  /** The sequence's epoch. */
  readonly epoch: string;
  /** Time of the poll that changed them, ms since the epoch. */
  readonly ts: number;
}

/** A topic's published state: its latest rows, whether it is stale, and who is owed a snapshot. */
export class Feed {
  /** The latest good poll; `undefined` before the first. */
  rows: RowSet | undefined;
  /** Time of the latest poll that changed something, ms since the epoch. */
  ts = 0;
  /** Set while the topic cannot be served. */
  stale: Stale | undefined;
  /** Number of the latest `snapshot`/`update` state in {@link epoch} (0: none yet). */
  seq = 0;
  /** Set by {@link advance} when the new rows kept the shape of the rows before them. */
  private keptShape = false;
  /** Set by {@link restart}: the next state is sent as a snapshot, whatever changed. */
  private restarted = false;
  /** Incremental subscriptions owed a fresh snapshot (new, held back while slow, or after `stale`). */
  readonly owed = new Set<Subscription>();
  private readonly snapshots = new Map<Encoder, Frame>();

  /** @param epoch the name of the topic's sequence (a new one by default) */
  constructor(public epoch: string = newEpoch()) {}

  /**
   * Whether the current state is the rows of `seq - 1` with new varying cells only: the same
   * shape (so the same keys and the same other cells), in the same epoch, with no `stale`
   * between or since. A cluster leaseholder then shares the varying cells alone (`shared_state.ts`).
   */
  get varyingOnly(): boolean {
    return this.keptShape && !this.needsSnapshot;
  }

  /** Whether {@link restart} began a new epoch that no state has been numbered in yet. */
  get restartPending(): boolean {
    return this.restarted;
  }

  /** Whether the next state must be sent whole: nothing published yet, `stale`, or a new epoch. */
  get needsSnapshot(): boolean {
    return this.rows === undefined || this.stale !== undefined || this.restarted;
  }

  /** The snapshot of the current rows in an encoder's protocol, encoded once per change. */
  snapshotFor(topic: Topic, encoder: Encoder): Frame {
    let frame = this.snapshots.get(encoder);
    if (!frame) {
      frame = encoder.snapshot(topic);
      this.snapshots.set(encoder, frame);
    }
    return frame;
  }

  /** Takes the next state of the sequence: rows that changed, numbered `seq`. */
  advance(rows: RowSet, ts: number, seq: number): void {
    this.keptShape = this.rows?.shape === rows.shape && seq === this.seq + 1 && !this.needsSnapshot;
    this.rows = rows;
    this.ts = ts;
    this.seq = seq;
    this.stale = undefined;
    this.restarted = false;
    this.snapshots.clear();
  }

  /**
   * Starts a new epoch (this node took the topic's group over, or follows another node's): the
   * next state is a snapshot, and the cached snapshots (which carry the old epoch) are dropped.
   */
  restart(epoch: string): void {
    if (epoch === this.epoch) return;
    this.epoch = epoch;
    this.restarted = true;
    this.snapshots.clear();
    // Frames of a stale topic carry the epoch: a new reason object is encoded anew.
    if (this.stale !== undefined) this.stale = { ...this.stale };
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

/** Sends a frame when the peer admits it; returns the peer's answer. */
function offer(subscription: Subscription, frame: Frame): "send" | "skip" | "dropped" {
  const admitted = subscription.peer.admit();
  if (admitted === "send") subscription.peer.send(frame.text, frame.bytes);
  return admitted;
}

/** Sends a frame that carries no `seq` (`stale`) when the peer admits it. */
function sendAdmitted(subscription: Subscription, text: string): void {
  if (subscription.peer.admit() === "send") subscription.peer.send(text);
}

/**
 * Publishes this node's good poll of a topic. When something changed, the state takes the
 * topic's next `seq`: subscribers owed a snapshot (new, recovering from `stale`, drained after
 * being slow, or all of them when the rows could not be updated in place or the epoch is new)
 * get one, the others an update with the changes. When nothing changed, only subscribers owed a
 * snapshot hear anything. Subscribers that are not incremental get the whole state every time,
 * as the seed sent it. Returns whether the topic's sequence advanced (a state to share).
 */
export function publishPoll(topic: Topic, rows: RowSet, now: number): boolean {
  const feed = topic.feed;
  const previous = feed.rows;
  const delta = feed.needsSnapshot ? RESHAPED : diffRows(previous!, rows);
  if (delta.kind === "unchanged") {
    publishUnchanged(topic);
    return false;
  }
  feed.advance(rows, now, feed.seq + 1);
  fanOut(topic, previous, delta);
  return true;
}

/**
 * Publishes a state of a topic that another node polled: the next `seq` of the epoch held is an
 * update (the changes found against the rows held, as the polling node found them); a gap, or
 * another epoch, a snapshot at the state's own `seq`. A state at or before the one held (a
 * duplicate) is ignored. Returns whether it was taken.
 */
export function publishAdopted(topic: Topic, state: AdoptedState): boolean {
  const feed = topic.feed;
  const numbered = feed.rows !== undefined && !feed.restartPending;
  if (state.epoch === feed.epoch && state.seq <= feed.seq && numbered) return false;
  const previous = feed.rows;
  const follows = state.epoch === feed.epoch && state.seq === feed.seq + 1 && !feed.needsSnapshot;
  let delta: RowsDelta = follows ? diffRows(previous!, state.rows) : RESHAPED;
  // The polling node numbered a change: its subscribers' numbers must not skip one here.
  if (delta.kind === "unchanged") delta = RESHAPED;
  feed.restart(state.epoch);
  feed.advance(state.rows, state.ts, state.seq);
  fanOut(topic, previous, delta);
  return true;
}

/**
 * A poll that changed nothing, or a tick of a topic polled elsewhere: subscribers owed a
 * snapshot (new, drained after being slow) get one, and those who get every poll the whole state.
 */
export function publishUnchanged(topic: Topic): void {
  const feed = topic.feed;
  if (feed.rows === undefined || feed.stale !== undefined) return;
  for (const subscription of feed.owed) {
    deliver(subscription, feed.snapshotFor(topic, subscription.encoder));
  }
  for (const subscription of topic.subscriptions) {
    if (!subscription.encoder.incremental) {
      offer(subscription, feed.snapshotFor(topic, subscription.encoder));
    }
  }
}

/** Sends a new state of the sequence: an update where one can say the change, else a snapshot. */
function fanOut(topic: Topic, previous: RowSet | undefined, delta: RowsDelta): void {
  const feed = topic.feed;
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
 * Marks a topic stale after a failed poll (here, or on the node that polls it: then with that
 * node's `epoch`): incremental subscribers get one `stale` frame per outage (a new frame when the
 * reason's code or the epoch changes) and are owed a fresh snapshot when it recovers. Subscribers
 * that are not incremental get nothing (they cannot read such frames). Returns whether a new
 * `stale` frame was sent (a state to share).
 */
export function publishStale(topic: Topic, stale: Stale, epoch?: string): boolean {
  const feed = topic.feed;
  const newEpoch = epoch !== undefined && epoch !== feed.epoch;
  if (!newEpoch && feed.stale !== undefined && feed.stale.code === stale.code) return false;
  if (newEpoch) feed.restart(epoch);
  feed.stale = stale;
  for (const subscription of topic.subscriptions) {
    const text = subscription.encoder.stale(topic);
    if (text === undefined) continue;
    feed.owed.add(subscription);
    sendAdmitted(subscription, text);
  }
  return true;
}

/**
 * Starts a topic stale without telling anyone (a new topic of a database that waits for its
 * retry): {@link welcome} tells its first subscriber. A topic that has rows keeps them.
 */
export function startStale(topic: Topic, stale: Stale): void {
  if (topic.feed.rows === undefined) topic.feed.stale ??= stale;
}

/**
 * Serves a new subscription from the topic's cached state, with no query: a snapshot at the
 * topic's current `seq` (or the whole state) when the topic has been polled, a `stale` frame
 * when it cannot be served, nothing when its first poll is still running (that poll will send
 * it). Also serves a repeated `subscribe` of the same topic.
 */
export function welcome(subscription: Subscription): void {
  const topic = subscription.topic;
  const feed = topic.feed;
  const encoder = subscription.encoder;
  if (encoder.incremental) feed.owed.add(subscription);
  if (feed.stale !== undefined) {
    const text = encoder.stale(topic);
    if (text !== undefined) sendAdmitted(subscription, text);
    return;
  }
  if (feed.rows === undefined) return;
  if (encoder.incremental) deliver(subscription, feed.snapshotFor(topic, encoder));
  else offer(subscription, feed.snapshotFor(topic, encoder));
}
