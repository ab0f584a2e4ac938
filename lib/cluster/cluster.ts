/**
 * Cluster mode: several gatecast nodes share one poll per (database, handle) group through Redis.
 *
 * - Every node registers the units its clients hold in the group's interest set, with an expiry
 *   it refreshes while they are held.
 * - One node per group holds a lease (`SET NX PX`, renewed by a Lua script); taking it increments
 *   the group's fence, and the fence becomes part of the group's topics' `epoch`. The leaseholder
 *   polls the union of every node's units (it holds the other nodes' topics in its registry), and
 *   after each poll encodes each changed topic once (its varying cells alone when nothing else
 *   changed, else its whole state: `shared_state.ts`), keeps it in the group's state hash
 *   (values beside the last whole state) and publishes it in one message on the group's states
 *   channel, in one script that Redis runs only while the lease is still this node's (a node
 *   that lost its lease publishes nothing).
 * - The other nodes follow: they listen to the states channels of the groups of their own
 *   topics, take the change of each topic they hold ({@link publishAdopted}; a change that does
 *   not follow the state held is read whole from the hash) and answer a new subscriber from the
 *   state hash, with no query. States from a node whose fence is lower than
 *   one seen (a lease since lost) are ignored. One message a poll, whatever the number of topics
 *   that changed: a Redis message costs a node about as much as the few frames it feeds
 *   (bench/README.md), so messages are few and states many.
 * - Two cadences. Each beat (at most a poll interval) the leaseholder reports the group's
 *   database health (`database_report.ts`) and each follower hands it to its poller, so that no
 *   node but the leaseholder sends the database anything, not even a health probe (a node with
 *   no topics in a database takes the report of any of its groups' leaseholders); a node
 *   without the lease tries to take it. Each refresh (a third of the lease, or each beat when
 *   that is longer) a node renews its leases, registers its node and interest again and reads
 *   the interest of the groups it leads: the work that grows with topics runs three times a
 *   lease, not every tick. The commands of a step that do not wait on one another are sent
 *   together: node-redis writes the commands of one turn in one write, at about a fifth of the
 *   client CPU of awaiting each (bench/README.md).
 * - Leases spread. Each refresh a node says how many leases it holds (`<p>load:<node>`); one
 *   that holds two more than a live node with topics in one of its groups hands that group's
 *   lease over (`lease_balance.ts`), under a new fence, and wakes the taker, which polls it at
 *   once: the clients of the group get a fresh snapshot in the new epoch, as after a failover.
 * - A leaseholder killed: its lease expires and a node with topics in the group takes it at its
 *   next beat (at most a poll interval).
 * - Redis lost: every node polls its own topics as a single node does (new local epochs: their
 *   clients get a fresh snapshot), and joins again when Redis is back. Redis is an optimization,
 *   never a single point of failure.
 *
 * Keys and channels: `cluster_keys.ts`; the message: `shared_state.ts`; the connection:
 * `redis_link.ts`. Operating it: docs/operating.md.
 */

import type { ClusterSettings } from "../config/config.ts";
import type { Unit } from "../config/unit.ts";
import { publishAdopted, publishStale } from "../hub/fanout.ts";
import { newEpoch } from "../hub/epoch.ts";
import type { DatabaseHealth, GroupPolling } from "../hub/poller.ts";
import { groupKey, type Registry, type Topic, type TopicGroup } from "../hub/registry.ts";
import { topicName } from "../hub/topic.ts";
import type { Logger } from "../ops/log.ts";
import type { Metrics } from "../ops/metrics.ts";
import {
  ACQUIRE_SCRIPT,
  ClusterKeys,
  HANDOVER_SCRIPT,
  PUBLISH_SCRIPT,
  RELEASE_SCRIPT,
  RENEW_SCRIPT,
} from "./cluster_keys.ts";
import { decodeDatabaseReport, encodeDatabaseReport } from "./database_report.ts";
import { chooseHandover } from "./lease_balance.ts";
import { RedisLink } from "./redis_link.ts";
import {
  decodeState,
  encodeChange,
  latestState,
  readStateBatch,
  type SharedState,
  valuesField,
  withValues,
} from "./shared_state.ts";

/** Shortest time between two beats, ms. */
export const MIN_BEAT_MS = 100;

/** Most states shared by one publish script: Redis runs a script without serving anything else meanwhile. */
export const PUBLISH_BATCH = 256;

/** What the cluster needs of the node around it. */
export interface ClusterParts {
  /** The cluster's settings. */
  readonly settings: ClusterSettings;
  /** The node's topics. */
  readonly registry: Registry;
  /** Counters and gauges. */
  readonly metrics: Metrics;
  /** Where lease changes and Redis's state are logged. */
  readonly logger: Logger;
  /** The poll interval: a beat is at most this long, so a free lease is taken within a tick. */
  readonly pollIntervalMs: number;
  /** Whether a database is configured here (only its groups are led or followed). */
  knows(db: string): boolean;
  /** The databases configured here. */
  databases(): readonly string[];
  /** Polls a group this node now polls (the poller's `pollNow`). */
  pollNow(group: TopicGroup): void;
  /** The health of a database as this node's polls found it (the poller's `health`). */
  databaseHealth(db: string): DatabaseHealth | undefined;
  /** A database's health as the node polling its group reported it (the poller's `adoptHealth`). */
  adoptHealth(db: string, report: DatabaseHealth): void;
}

/** The cluster part of `/healthz`. */
export interface ClusterHealth {
  /** This node's name. */
  readonly node: string;
  /** `up` or `down` (down: this node polls its own topics). */
  readonly redis: "up" | "down";
  /** The groups (`db/handle`) this node holds the lease of. */
  readonly leases: string[];
  /** Other live nodes, as Redis last told. */
  readonly peers: number;
}

/** A lease this node holds. */
interface Lease {
  /** Its fence. */
  readonly fence: number;
  /** The epoch of the group's topics while this node polls them. */
  readonly epoch: string;
}

/**
 * A request to the node that polls a group (`interest`: read it again, `notify`: poll now), or
 * to the node `to` that a lease was handed to (`lease`: take it now).
 */
interface WakeMessage {
  readonly group: string;
  readonly reason: "interest" | "notify" | "lease";
  readonly from: string;
  readonly to?: string;
}

/** This node's part of the cluster. */
export class Cluster implements GroupPolling {
  /** This node's name in Redis. */
  readonly node: string;
  private readonly keys: ClusterKeys;
  private readonly link: RedisLink;
  private readonly leases = new Map<string, Lease>();
  /** Per group led here, the other nodes with topics of it (read with its interest). */
  private readonly interested = new Map<string, Set<string>>();
  /** The highest fence seen per group: states with a lower one are from a lease since lost. */
  private readonly fences = new Map<string, number>();
  /** Topics whose whole state is being read from the hash ({@link catchUp}). */
  private readonly catchingUp = new Set<string>();
  /** Groups whose states channel this node listens to. */
  private readonly listening = new Set<string>();
  private readonly beatMs: number;
  private readonly refreshMs: number;
  /** When the next beat refreshes (renews, registers, reads interest), ms since the epoch. */
  private nextRefresh = 0;
  private timer: ReturnType<typeof setInterval> | undefined;
  private beating: Promise<void> | undefined;
  private readonly inFlight = new Set<Promise<unknown>>();
  private peers = 0;
  private stopped = false;
  private wakesHeard = false;

  /** @param parts what the cluster works with */
  constructor(private readonly parts: ClusterParts) {
    const { settings, metrics } = parts;
    this.node = settings.node ?? `gatecast-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
    this.keys = new ClusterKeys(settings.prefix);
    this.beatMs = Math.max(MIN_BEAT_MS, Math.min(settings.leaseMs / 3, parts.pollIntervalMs));
    this.refreshMs = Math.max(this.beatMs, settings.leaseMs / 3);
    this.link = new RedisLink(settings, parts.logger, (up) => this.linkChanged(up));
    metrics.gauge("gatecast_cluster_redis_up", () => this.link.up ? 1 : 0);
    metrics.gauge("gatecast_cluster_leases", () => this.leases.size);
    metrics.gauge("gatecast_cluster_peers", () => this.peers);
  }

  /** Connects to Redis and starts beating; returns at once (a Redis that is down is retried). */
  start(): void {
    this.link.connect();
    this.timer ??= setInterval(() => this.beat(), this.beatMs);
  }

  /** Gives this node's leases and interest up, so that other nodes take over at once, and disconnects. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.beating;
    await Promise.allSettled([...this.inFlight]);
    if (this.link.up) {
      await Promise.allSettled([
        ...[...this.leases.keys()].map((group) => this.releaseLease(group)),
        ...[...this.parts.registry.groups()].map((group) =>
          this.link.commands.zRem(this.keys.interest(group.key), this.ownMembers(group))
        ),
        this.link.commands.zRem(this.keys.nodes, this.node),
      ]);
    }
    await this.link.close();
  }

  /** The cluster part of `/healthz`. */
  health(): ClusterHealth {
    return {
      node: this.node,
      redis: this.link.up ? "up" : "down",
      leases: [...this.leases.keys()],
      peers: this.peers,
    };
  }

  // --- GroupPolling: what the poller asks ---

  /** Whether this node polls a group: it holds the lease, or Redis is away and it polls alone. */
  pollsHere(group: { readonly key: string }): boolean {
    return !this.link.up || this.leases.has(group.key);
  }

  /** Asks the group's leaseholder to poll now (a notify); `false` without Redis. */
  wakeElsewhere(group: string): boolean {
    if (!this.link.up) return false;
    this.sendWake(group, "notify");
    return true;
  }

  /**
   * Shares the new states of one poll, when this node holds the group's lease: one script per
   * {@link PUBLISH_BATCH} topics keeps each change in the group's state hash (a whole state, or
   * the values since the last one) and publishes them in one message on the group's states
   * channel, on the server and only while the lease is still this node's.
   */
  published(group: TopicGroup, topics: readonly Topic[]): void {
    const lease = this.leases.get(group.key);
    if (lease === undefined || !this.link.up) return;
    const keys = [this.keys.lease(group.key), this.keys.state(group.key)];
    for (let start = 0; start < topics.length; start += PUBLISH_BATCH) {
      const args = [this.node, this.keys.states(group.key)];
      for (const topic of topics.slice(start, start + PUBLISH_BATCH)) {
        const change = encodeChange(topic, this.node, lease.fence); // once a topic a poll
        args.push(topic.name.key, change.kind, change.text);
      }
      this.track(
        this.runScript(PUBLISH_SCRIPT, keys, args).then((sent) => {
          // 0: the lease is another node's by now; the next renewal finds it lost.
          if (sent === 0) return;
          this.parts.metrics.inc("gatecast_cluster_messages_sent_total");
          this.parts.metrics.inc("gatecast_cluster_states_sent_total", {}, sent);
        }),
      );
    }
  }

  // --- The registry's events ---

  /** A topic was created here (a first subscriber, or held for a peer): poll it, or follow it. */
  topicAdded(group: TopicGroup, topic: Topic): void {
    const lease = this.leases.get(group.key);
    if (!this.link.up || lease !== undefined) {
      if (lease !== undefined) topic.feed.restart(lease.epoch);
      this.parts.pollNow(group);
    }
    if (this.link.up && !topic.heldForPeers && this.parts.knows(group.db)) {
      this.track(this.join(group, topic));
    }
  }

  /** A topic was forgotten here: no more interest, no more shared state; its group's last, no more listening. */
  topicRemoved(topic: Topic): void {
    const group = groupKey(topic.name);
    if (!this.link.up) return; // its interest expires; the beat stops listening once Redis is back
    const commands = this.link.commands;
    this.track(commands.zRem(this.keys.interest(group), this.member(topic.name.unit)));
    if (this.leases.has(group)) {
      this.track(commands.hDel(this.keys.state(group), [topic.name.key, valuesField(topic.name.key)]));
    }
    if (this.parts.registry.group(group) === undefined && this.listening.delete(group)) {
      this.track(this.link.unsubscribe(this.keys.states(group)));
    }
  }

  // --- Joining a group ---

  /** Registers a new topic's interest, listens to it, and takes the group's lease or its latest state. */
  private async join(group: TopicGroup, topic: Topic): Promise<void> {
    await this.link.commands.zAdd(this.keys.interest(group.key), {
      score: this.expiry(),
      value: this.member(topic.name.unit),
    });
    await this.listen(group.key);
    if (this.leases.has(group.key)) return;
    if (await this.acquire(group)) return;
    await this.resync(group.key, [topic]);
    this.sendWake(group.key, "interest");
  }

  /** Listens to a group's states channel (once). */
  private async listen(group: string): Promise<void> {
    if (this.listening.has(group)) return;
    this.listening.add(group);
    try {
      await this.link.subscribe(this.keys.states(group), (text) => this.receivedBatch(group, text));
    } catch (error) {
      this.listening.delete(group); // the next beat tries again
      throw error;
    }
  }

  /**
   * One poll's states of a group, as its leaseholder published them. The leaseholder hears its
   * own message and stops here; a follower reads each topic key and decodes the states of the
   * topics it holds only.
   */
  private receivedBatch(group: string, text: string): void {
    if (!this.link.up || this.leases.has(group)) return;
    this.parts.metrics.inc("gatecast_cluster_messages_received_total");
    let states: [string, string][];
    try {
      states = readStateBatch(text);
    } catch (error) {
      this.parts.logger.warn("cluster message ignored", { group, error: (error as Error).message });
      return;
    }
    for (const [key, state] of states) this.received(key, state);
  }

  /**
   * Takes each topic's latest state from the group's state hash (a new follower, a reconnect, a
   * change missed): its last whole state with the latest values since ({@link latestState}).
   */
  private async resync(group: string, topics: Topic[]): Promise<void> {
    if (topics.length === 0) return;
    const keys = topics.map((topic) => topic.name.key);
    const texts = await this.link.commands.hmGet(
      this.keys.state(group),
      keys.flatMap((key) => [key, valuesField(key)]),
    );
    keys.forEach((key, i) => {
      const [whole, values] = [texts[2 * i], texts[2 * i + 1]];
      if (typeof whole === "string") this.received(key, whole, values ?? undefined);
    });
  }

  /**
   * A state of a topic shared by the node that polls its group (from a batch; or from the state
   * hash, a whole state and maybe the `values` since). What can be decided without reading the
   * state is decided first: a topic not held here, or polled here, costs no decode.
   */
  private received(key: string, text: string, values?: string): void {
    const topic = this.parts.registry.topic(key);
    if (topic === undefined || !this.link.up) return;
    const group = groupKey(topic.name);
    if (this.leases.has(group)) return; // this node polls it
    this.parts.metrics.inc("gatecast_cluster_states_received_total");
    let state: SharedState;
    try {
      state = decodeState(text);
      if (values !== undefined) state = latestState(state, decodeState(values));
    } catch (error) {
      this.parts.logger.warn("cluster message ignored", { topic: key, error: (error as Error).message });
      return;
    }
    this.take(topic, group, state);
  }

  /** A decoded state of a topic this node follows: published to its clients, unless outdated. */
  private take(topic: Topic, group: string, state: SharedState): void {
    if (state.topic !== topic.name.key || state.node === this.node) return;
    if (state.fence < (this.fences.get(group) ?? 0)) return; // from a lease since lost
    this.fences.set(group, state.fence);
    if (state.stale !== undefined) publishStale(topic, state.stale, state.epoch);
    else if (state.values !== undefined) this.receivedValues(topic, group, state);
    else publishAdopted(topic, { rows: state.rows!, seq: state.seq, epoch: state.epoch, ts: state.ts });
  }

  /**
   * A change of varying cells only: applied to the state held when that is the one before it,
   * else (a state missed, another epoch) the whole state is read from the group's state hash.
   * One already held is ignored.
   */
  private receivedValues(topic: Topic, group: string, state: SharedState): void {
    const feed = topic.feed;
    const sameEpoch = state.epoch === feed.epoch && !feed.restartPending;
    if (sameEpoch && feed.rows !== undefined && state.seq <= feed.seq) return;
    if (!sameEpoch || feed.needsSnapshot || state.seq !== feed.seq + 1) {
      this.catchUp(group, topic);
      return;
    }
    let rows;
    try {
      rows = withValues(feed.rows!, state.values!);
    } catch (error) {
      this.parts.logger.warn("cluster message ignored", {
        topic: state.topic,
        error: (error as Error).message,
      });
      this.catchUp(group, topic);
      return;
    }
    publishAdopted(topic, { rows, seq: state.seq, epoch: state.epoch, ts: state.ts });
  }

  /** Reads a topic's whole state from the hash, once at a time however many changes it missed. */
  private catchUp(group: string, topic: Topic): void {
    const key = topic.name.key;
    if (this.catchingUp.has(key)) return;
    this.catchingUp.add(key);
    this.track(this.resync(group, [topic]).finally(() => this.catchingUp.delete(key)));
  }

  // --- Leases ---

  /** Takes a group's lease when it is free; returns whether this node now polls the group. */
  private async acquire(group: TopicGroup): Promise<boolean> {
    const fence = await this.runScript(
      ACQUIRE_SCRIPT,
      [this.keys.lease(group.key), this.keys.fence(group.key)],
      [this.node, String(this.parts.settings.leaseMs)],
    );
    if (fence === 0 || this.stopped || !this.link.up) return false;
    if (this.leases.has(group.key)) return true; // taken meanwhile (a beat and a handover's wake)
    const lease = { fence, epoch: newEpoch(String(fence)) };
    this.leases.set(group.key, lease);
    this.fences.set(group.key, fence);
    this.parts.metrics.inc("gatecast_cluster_lease_changes_total", { change: "acquired" });
    this.parts.logger.info("cluster lease acquired: polling the group", { group: group.key, fence });
    for (const topic of group.topics.values()) topic.feed.restart(lease.epoch);
    await this.readInterest(group);
    this.parts.pollNow(group);
    await this.sayLoad();
    return true;
  }

  /** Extends a lease this node holds; on a lease lost, stops polling the group and follows it. */
  private async renew(group: TopicGroup): Promise<void> {
    const renewed = await this.runScript(
      RENEW_SCRIPT,
      [this.keys.lease(group.key)],
      [this.node, String(this.parts.settings.leaseMs)],
    );
    if (renewed === 1) {
      await Promise.all([
        this.link.commands.pExpire(this.keys.state(group.key), 3 * this.parts.settings.leaseMs),
        this.reportHealth(group),
        this.readInterest(group),
      ]);
      return;
    }
    this.dropLease(group.key, "lost");
    await this.resync(group.key, [...group.topics.values()]);
  }

  /** The leaseholder's report of the group's database health, for the nodes that follow the group. */
  private async reportHealth(group: TopicGroup): Promise<void> {
    const lease = this.leases.get(group.key);
    const health = this.parts.databaseHealth(group.db);
    if (lease === undefined || health === undefined) return;
    const report = encodeDatabaseReport({ node: this.node, fence: lease.fence, ...health });
    const expiration = { type: "PX", value: 3 * this.parts.settings.leaseMs } as const;
    await Promise.all([
      this.link.commands.set(this.keys.health(group.key), report, { expiration }),
      this.link.commands.set(this.keys.databaseHealth(group.db), report, { expiration }),
    ]);
  }

  /** A follower takes the leaseholder's report of the group's database health (none: its poller probes). */
  private async followHealth(group: TopicGroup): Promise<void> {
    const text = await this.link.commands.get(this.keys.health(group.key));
    if (text === null || this.leases.has(group.key)) return;
    try {
      const report = decodeDatabaseReport(text);
      if (report.fence < (this.fences.get(group.key) ?? 0)) return; // from a lease since lost
      this.parts.adoptHealth(group.db, report);
    } catch (error) {
      this.parts.logger.warn("cluster database report ignored", {
        group: group.key,
        error: (error as Error).message,
      });
    }
  }

  /**
   * A database none of this node's topics are in takes the report of whichever node polls one
   * of its groups, so that every node's `/healthz` knows it without a probe of its own (none:
   * no node polls it, and the poller probes it, as a single node does).
   */
  private async followDatabase(db: string): Promise<void> {
    const text = await this.link.commands.get(this.keys.databaseHealth(db));
    if (text === null) return;
    try {
      this.parts.adoptHealth(db, decodeDatabaseReport(text));
    } catch (error) {
      this.parts.logger.warn("cluster database report ignored", { db, error: (error as Error).message });
    }
  }

  /** Gives a lease up (the group has no topic here any more, or the node stops). */
  private async releaseLease(group: string): Promise<void> {
    this.dropLease(group, "released");
    await this.runScript(RELEASE_SCRIPT, [this.keys.lease(group)], [this.node]);
  }

  /** Forgets a lease: the topics held for peers are released. */
  private dropLease(group: string, change: "lost" | "released" | "handed over", to?: string): void {
    if (!this.leases.delete(group)) return;
    this.interested.delete(group);
    this.parts.metrics.inc("gatecast_cluster_lease_changes_total", { change: change.replace(" ", "_") });
    this.parts.logger.info(`cluster lease ${change}`, to === undefined ? { group } : { group, to });
    const topics = this.parts.registry.group(group)?.topics;
    for (const topic of [...(topics?.values() ?? [])]) {
      if (topic.heldForPeers) this.parts.registry.release(topic);
    }
  }

  /** The leaseholder holds every unit other nodes want, and releases those no node wants any more. */
  private async readInterest(group: TopicGroup): Promise<void> {
    const key = this.keys.interest(group.key);
    const now = Date.now();
    const [, members] = await Promise.all([
      this.link.commands.zRemRangeByScore(key, "-inf", now),
      this.link.commands.zRangeByScore(key, now, "+inf"),
    ]);
    if (!this.leases.has(group.key)) return;
    const wanted = new Set<Unit>();
    const nodes = new Set<string>();
    for (const member of members) {
      const parsed = parseMember(member);
      if (parsed === undefined) {
        this.parts.logger.warn("cluster interest entry ignored", { group: group.key, entry: member });
      } else if (parsed.node !== this.node) {
        wanted.add(parsed.unit);
        nodes.add(parsed.node);
      }
    }
    this.interested.set(group.key, nodes);
    for (const unit of wanted) this.parts.registry.hold(topicName(group.db, group.handle, unit));
    for (const [unit, topic] of [...group.topics]) {
      if (topic.heldForPeers && !wanted.has(unit)) this.parts.registry.release(topic);
    }
  }

  // --- The beat ---

  /**
   * Every beat: report or follow each group's database health, take free leases, give up empty
   * ones, take the reports of databases without topics here; every refresh also: register the
   * node and its interest, renew leases, read interest, hand a lease over.
   */
  private beat(): void {
    if (this.beating !== undefined || !this.link.up || this.stopped) return;
    this.beating = this.beatOnce().catch((error) => {
      // Redis went away mid-beat: the link reports it; the next beat starts over.
      this.parts.logger.debug("cluster beat failed", { error: (error as Error).message });
    }).finally(() => this.beating = undefined);
  }

  private async beatOnce(): Promise<void> {
    const now = Date.now();
    // A beat that fails (Redis away mid-beat) leaves the refresh to the next one.
    const refresh = now >= this.nextRefresh;
    if (refresh) await this.register(now);
    const present = new Set<string>();
    const watched = new Set<string>(); // databases with topics here
    for (const group of [...this.parts.registry.groups()]) {
      if (!this.parts.knows(group.db)) continue;
      present.add(group.key);
      watched.add(group.db);
      const own = [...group.topics.values()].filter((topic) => topic.subscriptions.size > 0);
      if (own.length > 0) {
        if (refresh) await this.refreshInterest(group, own);
        if (!this.listening.has(group.key)) {
          await this.listen(group.key);
          if (!this.leases.has(group.key)) await this.resync(group.key, own);
        }
      }
      if (this.leases.has(group.key)) {
        if (refresh) await this.renew(group);
        else await this.reportHealth(group);
      } else if (own.length > 0 && !(await this.acquire(group))) await this.followHealth(group);
    }
    for (const group of [...this.leases.keys()]) {
      if (!present.has(group)) await this.releaseLease(group);
    }
    for (const db of this.parts.databases()) {
      if (!watched.has(db)) await this.followDatabase(db);
    }
    for (const group of [...this.listening]) {
      if (this.parts.registry.group(group) !== undefined) continue;
      this.listening.delete(group);
      await this.link.unsubscribe(this.keys.states(group));
    }
    if (refresh) {
      await this.balance(now);
      this.nextRefresh = now + this.refreshMs;
    }
  }

  /** Registers this node and its load again and counts its peers (each refresh). */
  private async register(now: number): Promise<void> {
    const commands = this.link.commands;
    const [, , , nodes] = await Promise.all([
      commands.zAdd(this.keys.nodes, { score: this.expiry(), value: this.node }),
      commands.pExpire(this.keys.nodes, 3 * this.parts.settings.leaseMs),
      commands.zRemRangeByScore(this.keys.nodes, "-inf", now),
      commands.zCard(this.keys.nodes),
      this.sayLoad(),
    ]);
    this.peers = Math.max(0, nodes - 1);
  }

  /** Tells the other nodes how many leases this node holds (each refresh, each lease taken). */
  private async sayLoad(): Promise<void> {
    await this.link.commands.set(this.keys.load(this.node), String(this.leases.size), {
      expiration: { type: "PX", value: 3 * this.parts.settings.leaseMs },
    });
  }

  /**
   * Hands one lease to a live node holding at least two fewer, among those with topics in the
   * group (`lease_balance.ts`), at most one a refresh. Live: registered within the last two
   * refreshes, so that nothing is handed to a node that stopped beating.
   */
  private async balance(now: number): Promise<void> {
    if (this.leases.size < 2) return;
    const led = [...this.interested].map(([group, interested]) => ({ group, interested }));
    const candidates = [...new Set(led.flatMap(({ interested }) => [...interested]))];
    if (candidates.length === 0) return;
    const commands = this.link.commands;
    const seenSince = now + 3 * this.parts.settings.leaseMs - 2 * this.refreshMs;
    const live = new Set(await commands.zRangeByScore(this.keys.nodes, seenSince, "+inf"));
    const counted = candidates.filter((node) => live.has(node));
    if (counted.length === 0) return;
    const loads = new Map<string, number>();
    const texts = await commands.mGet(counted.map((node) => this.keys.load(node)));
    texts.forEach((text, i) => {
      if (text !== null && Number.isSafeInteger(Number(text))) loads.set(counted[i], Number(text));
    });
    const handover = chooseHandover(this.leases.size, led, loads);
    if (handover === undefined || !this.leases.has(handover.group)) return;
    const { group, to } = handover;
    const fence = await this.runScript(
      HANDOVER_SCRIPT,
      [this.keys.lease(group), this.keys.fence(group), this.keys.load(this.node), this.keys.load(to)],
      [this.node, to, String(this.parts.settings.leaseMs)],
    );
    if (fence === 0) return; // lost meanwhile, or the taker is gone: the next refresh sees
    this.dropLease(group, "handed over", to);
    this.sendWake(group, "lease", to);
  }

  /** Registers the interest of this node's clients in a group again (each refresh). */
  private async refreshInterest(group: TopicGroup, own: Topic[]): Promise<void> {
    const commands = this.link.commands;
    await Promise.all([
      commands.zAdd(
        this.keys.interest(group.key),
        own.map((topic) => ({ score: this.expiry(), value: this.member(topic.name.unit) })),
      ),
      // A group no node holds any more leaves nothing behind.
      commands.pExpire(this.keys.interest(group.key), 3 * this.parts.settings.leaseMs),
    ]);
  }

  // --- Redis lost and back ---

  private linkChanged(up: boolean): void {
    if (this.stopped) return;
    const registry = this.parts.registry;
    if (!up) {
      // Poll alone: every topic starts a sequence of this node's own, its clients get a snapshot.
      for (const group of [...this.leases.keys()]) this.dropLease(group, "lost");
      for (const group of [...registry.groups()]) {
        for (const topic of group.topics.values()) topic.feed.restart(newEpoch());
        this.parts.pollNow(group);
      }
      return;
    }
    // Back: fences may start over (a Redis without persistence), states are taken afresh.
    this.fences.clear();
    if (!this.wakesHeard) {
      this.wakesHeard = true;
      this.track(this.listenForWakes());
    }
    for (const group of [...registry.groups()]) {
      const own = [...group.topics.values()].filter((topic) => topic.subscriptions.size > 0);
      if (this.parts.knows(group.db)) this.track(this.resync(group.key, own));
    }
    this.beat();
  }

  // --- Helpers ---

  /** Runs one of the lease scripts on the server (Redis's `EVAL`, sent as a plain command); its number. */
  private async runScript(script: string, keys: string[], args: string[]): Promise<number> {
    return Number(
      await this.link.commands.sendCommand(["EVAL", script, String(keys.length), ...keys, ...args]),
    );
  }

  private sendWake(group: string, reason: WakeMessage["reason"], to?: string): void {
    const message: WakeMessage = { group, reason, from: this.node, ...(to === undefined ? {} : { to }) };
    this.track(this.link.commands.publish(this.keys.wake, JSON.stringify(message)));
    this.parts.metrics.inc("gatecast_cluster_messages_sent_total");
  }

  /**
   * Listens for wake requests: the leaseholder of the group reads its interest, or polls; the
   * node a lease was handed to takes it.
   */
  private async listenForWakes(): Promise<void> {
    await this.link.subscribe(this.keys.wake, (text) => {
      let message: WakeMessage;
      try {
        message = JSON.parse(text);
      } catch {
        return;
      }
      if (typeof message?.group !== "string") return; // not a wake (JSON null, a number, …)
      if (message.reason === "lease") {
        if (message.to === this.node) this.takeHandedLease(message.group);
        return;
      }
      const group = this.parts.registry.group(message.group);
      if (group === undefined || !this.leases.has(group.key)) return;
      this.parts.metrics.inc("gatecast_cluster_messages_received_total");
      if (message.reason === "notify") this.parts.pollNow(group);
      else this.track(this.readInterest(group).catch(() => {}));
    });
  }

  /**
   * Takes a lease another node handed to this one; one of a group whose last topic left here
   * meanwhile goes back at once (its other nodes take it at their next beat), not when it expires.
   */
  private takeHandedLease(key: string): void {
    if (this.leases.has(key)) return;
    this.parts.metrics.inc("gatecast_cluster_messages_received_total");
    const group = this.parts.registry.group(key);
    if (group !== undefined) this.track(this.acquire(group));
    else this.track(this.runScript(RELEASE_SCRIPT, [this.keys.lease(key)], [this.node]));
  }

  private expiry(): number {
    return Date.now() + 3 * this.parts.settings.leaseMs;
  }

  private member(unit: Unit): string {
    return JSON.stringify([this.node, unit]);
  }

  private ownMembers(group: TopicGroup): string[] {
    return [...group.topics.keys()].map((unit) => this.member(unit));
  }

  private track(promise: Promise<unknown>): void {
    const tracked = promise.catch((error) => {
      this.parts.logger.debug("cluster command failed", { error: (error as Error).message });
    });
    this.inFlight.add(tracked);
    tracked.finally(() => this.inFlight.delete(tracked));
  }
}

/** Reads an interest entry `[node, unit]`; `undefined` when it is not one. */
function parseMember(member: string): { node: string; unit: Unit } | undefined {
  try {
    const parsed = JSON.parse(member);
    if (!Array.isArray(parsed) || parsed.length !== 2 || typeof parsed[0] !== "string") return undefined;
    const unit = parsed[1];
    if (unit === null || typeof unit === "string" || Number.isSafeInteger(unit)) {
      return { node: parsed[0], unit };
    }
  } catch {
    // not JSON
  }
  return undefined;
}
