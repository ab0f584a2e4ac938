/**
 * The registry: which connections hold which topics. Topics live while they have
 * subscribers and are grouped by (database, handle), the unit of one shared poll. A topic
 * with no subscribers is forgotten at once, and its group with it when the group empties.
 * In a cluster, the node that polls a group also holds the topics other nodes' clients want
 * ({@link Registry.hold}): they are polled like its own and live until released. The registry
 * owns membership only; what a topic last published is its {@link Feed}, owned by the fan-out.
 */

import type { Unit } from "../config/unit.ts";
import { type Encoder, Feed } from "./fanout.ts";
import type { TopicName } from "./topic.ts";

/** What the registry and fan-out need of a connection. */
export interface Peer {
  /** A process-unique id, for logs. */
  readonly id: number;
  /**
   * Asks whether a frame may be sent now: `"send"`, `"skip"` (the client is behind: hold
   * intermediate frames back) or `"dropped"` (the client was closed for not reading).
   */
  admit(): "send" | "skip" | "dropped";
  /**
   * Sends one text frame. `bytes` is its UTF-8 length when the caller already knows it (fan-out
   * does, from the frame's parts), sparing the peer a scan of the text for its byte count.
   */
  send(text: string, bytes?: number): void;
  /** Ends a subscription the server can no longer serve, telling the client why. */
  revoke(subscription: Subscription, code: "DB_REMOVED", message: string): void;
}

/** One connection's subscription to one topic. */
export class Subscription {
  /**
   * @param topic the topic
   * @param peer the subscribing connection
   * @param encoder the frames of the connection's protocol
   */
  constructor(readonly topic: Topic, readonly peer: Peer, readonly encoder: Encoder) {}
}

/** A topic with at least one subscriber. */
export class Topic {
  /** Every subscription. */
  readonly subscriptions = new Set<Subscription>();
  /** What the topic last published (the fan-out's). */
  readonly feed = new Feed();
  /** `JSON.stringify(name.key)`, ready to splice into frames. */
  readonly keyJson: string;
  /** Held for other nodes' clients (cluster mode): kept, and polled, without a subscriber here. */
  heldForPeers = false;

  /** @param name the parsed topic */
  constructor(readonly name: TopicName) {
    this.keyJson = JSON.stringify(name.key);
  }
}

/** The topics of one (database, handle): polled together, one fetch for all their units. */
export interface TopicGroup {
  /** `db/handle`. */
  readonly key: string;
  /** Database code. */
  readonly db: string;
  /** Handle name. */
  readonly handle: string;
  /** Topics by unit (`null`: the one topic of a handle without units). */
  readonly topics: Map<Unit, Topic>;
}

/** Topics and their subscribers. */
export class Registry {
  private readonly topics = new Map<string, Topic>();
  private readonly groupsByKey = new Map<string, TopicGroup>();

  /**
   * @param onTopicAdded called when a topic is created (its first subscriber, or held for peers),
   *   so that the poller fetches it at once instead of at the next tick
   * @param onTopicRemoved called when a topic is forgotten (no subscriber left, not held)
   */
  constructor(
    private readonly onTopicAdded: (group: TopicGroup, topic: Topic) => void = () => {},
    private readonly onTopicRemoved: (topic: Topic) => void = () => {},
  ) {}

  /**
   * Subscribes a peer to a topic, creating the topic on first use. The caller makes sure a peer
   * subscribes to a topic at most once, and welcomes the subscription (`fanout.ts`).
   */
  subscribe(name: TopicName, peer: Peer, encoder: Encoder): Subscription {
    const existing = this.topics.get(name.key);
    const topic = existing ?? this.create(name);
    const subscription = new Subscription(topic, peer, encoder);
    topic.subscriptions.add(subscription);
    topic.feed.join(subscription);
    if (!existing) this.onTopicAdded(this.groupOf(name), topic);
    return subscription;
  }

  /** Removes a subscription; forgets its topic (and group) when it was the last. Idempotent. */
  unsubscribe(subscription: Subscription): void {
    const topic = subscription.topic;
    topic.subscriptions.delete(subscription);
    topic.feed.leave(subscription);
    this.forgetIfUnused(topic);
  }

  /**
   * Holds a topic for other nodes' clients (this node polls its group): created when missing,
   * kept without subscribers until {@link release}d. Returns the topic.
   */
  hold(name: TopicName): Topic {
    const existing = this.topics.get(name.key);
    const topic = existing ?? this.create(name);
    topic.heldForPeers = true;
    if (!existing) this.onTopicAdded(this.groupOf(name), topic);
    return topic;
  }

  /** Stops holding a topic for peers; forgets it when it has no subscriber here either. */
  release(topic: Topic): void {
    topic.heldForPeers = false;
    this.forgetIfUnused(topic);
  }

  private create(name: TopicName): Topic {
    const topic = new Topic(name);
    this.topics.set(name.key, topic);
    this.groupOf(name).topics.set(name.unit, topic);
    return topic;
  }

  private forgetIfUnused(topic: Topic): void {
    if (topic.subscriptions.size > 0 || topic.heldForPeers) return;
    if (this.topics.get(topic.name.key) !== topic) return;
    this.topics.delete(topic.name.key);
    const group = this.groupsByKey.get(groupKey(topic.name));
    if (group) {
      group.topics.delete(topic.name.unit);
      if (group.topics.size === 0) this.groupsByKey.delete(group.key);
    }
    this.onTopicRemoved(topic);
  }

  /** The topic of a key, when it has subscribers. */
  topic(key: string): Topic | undefined {
    return this.topics.get(key);
  }

  /** Every (database, handle) group with at least one topic. */
  groups(): IterableIterator<TopicGroup> {
    return this.groupsByKey.values();
  }

  /** The group of a key (`db/handle`), when it has topics. */
  group(key: string): TopicGroup | undefined {
    return this.groupsByKey.get(key);
  }

  /** Every subscription to a topic of a database (for ending them when it is removed). */
  subscriptionsOf(db: string): Subscription[] {
    const found: Subscription[] = [];
    for (const group of this.groupsByKey.values()) {
      if (group.db !== db) continue;
      for (const topic of group.topics.values()) found.push(...topic.subscriptions);
    }
    return found;
  }

  /** Number of topics with subscribers. */
  get topicCount(): number {
    return this.topics.size;
  }

  /** Number of subscriptions over all topics. */
  get subscriptionCount(): number {
    let n = 0;
    for (const topic of this.topics.values()) n += topic.subscriptions.size;
    return n;
  }

  private groupOf(name: TopicName): TopicGroup {
    const key = groupKey(name);
    let group = this.groupsByKey.get(key);
    if (!group) {
      group = { key, db: name.db, handle: name.handle, topics: new Map() };
      this.groupsByKey.set(key, group);
    }
    return group;
  }
}

/** `db/handle`, the key of a {@link TopicGroup}. */
export function groupKey(name: { db: string; handle: string }): string {
  return `${name.db}/${name.handle}`;
}
