/**
 * The poller: one `setInterval` drives every poll. Each tick, every (database, handle) group
 * with subscribers that is due (each handle may have its own interval) is fetched with ONE
 * handle call for all of its units (a bounded number of queries), and the result is fanned out
 * to each topic.
 *
 * A group's poll never overlaps its previous one: a tick that finds it still running is
 * skipped and counted. A new topic asks for an immediate poll of its group instead of waiting
 * for the tick. Faults stay local and no error ends the loop: a failing database marks its own
 * topics stale and is retried with a capped backoff (`ops/backoff.ts`); a failing handle (its
 * SQL, its result's columns) marks only its own topics stale; a unit over its row limit only
 * its own topic.
 *
 * In a cluster, one node polls each group ({@link GroupPolling}): the poller skips the groups
 * polled elsewhere (their subscribers owed a snapshot are still served at each tick from the
 * state adopted from the polling node) and reports each topic whose state it advanced. A
 * database whose groups are all polled elsewhere takes its health from the polling node's
 * reports ({@link Poller.adoptHealth}) and is probed only while none arrive.
 */

import { type Handle, HandleError, UnitFault } from "../handles/handle.ts";
import { RetryBackoff } from "../ops/backoff.ts";
import type { Logger } from "../ops/log.ts";
import type { Metrics } from "../ops/metrics.ts";
import { type Source, SourceError } from "../sources/source.ts";
import { publishPoll, publishStale, publishUnchanged, startStale } from "./fanout.ts";
import type { Registry, Topic, TopicGroup } from "./registry.ts";

/** The `stale` code of a topic whose database cannot be reached. */
export const SOURCE_UNAVAILABLE = "SOURCE_UNAVAILABLE";
/** The `stale` code of a topic whose handle failed (its SQL, a column its result lacks). */
export const HANDLE_FAILED = "HANDLE_FAILED";

/** The shortest tick: handle intervals with a smaller common divisor are rounded to it. */
export const MIN_TICK_MS = 50;

/**
 * What {@link Poller.pollNow} did: `started` a poll, `queued` one to run right after the running
 * one, `coalesced` into the one already queued, `deferred` (the database waits for its retry), or
 * `forwarded` (another node polls the group: it was asked to).
 */
export type PollNowAnswer = "started" | "queued" | "coalesced" | "deferred" | "forwarded";

/** Which node polls which group: this one alone ({@link SOLE_NODE}), or a cluster's leaseholders. */
export interface GroupPolling {
  /** Whether this node polls the group now. */
  pollsHere(group: { readonly key: string }): boolean;
  /** Asks the node that polls a group to poll it now; `false` when no other node can be asked. */
  wakeElsewhere(groupKey: string): boolean;
  /** The topics whose state advanced (or went stale) in one poll of a group here: shares them. */
  published(group: TopicGroup, topics: readonly Topic[]): void;
}

/** A node on its own: it polls every group and shares nothing. */
export const SOLE_NODE: GroupPolling = {
  pollsHere: () => true,
  wakeElsewhere: () => false,
  published() {},
};

/** The poll state of one database, for `/healthz`. */
export interface DatabaseHealth {
  /** Time of the last successful query, ms since the epoch (0: never). */
  lastGoodPoll: number;
  /** The last failure's message while failing, else `undefined`. */
  error: string | undefined;
}

/** The failure of one (database, handle) group whose database answers, for `/healthz`. */
export interface HandleHealth {
  /** Database code. */
  readonly db: string;
  /** Handle name. */
  readonly handle: string;
  /** The failure's message. */
  readonly error: string;
}

interface GroupState {
  running: boolean;
  /** A poll was asked for while one was running: run again when it ends. */
  again: boolean;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** Polls the registry's groups on an interval. */
export class Poller {
  /** Health per configured database. */
  readonly health = new Map<string, DatabaseHealth>();
  /** Groups with subscribers whose handle is failing while their database answers, by group key. */
  readonly failingHandles = new Map<string, HandleHealth>();
  private tickMs: number;
  private ticks = 0;
  private readonly groupStates = new Map<string, GroupState>();
  private readonly probing = new Set<string>();
  /** Databases polled here at the last tick: their own polls tell their health. */
  private polledHere = new Set<string>();
  /** When another node last reported a database's health, ms since the epoch. */
  private readonly reported = new Map<string, number>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly backoffs = new Map<string, RetryBackoff>();
  private lastTickAt = 0;
  /** The longest time between two ticks so far, in ms (a blocked event loop shows here). */
  longestTickGapMs = 0;

  /**
   * @param registry the topics to poll
   * @param sources databases by code
   * @param handles handles by name
   * @param intervalMs the tick interval
   * @param metrics where ticks, skipped polls and failed polls are counted (queries: `metered_source.ts`)
   * @param logger where failures and recoveries are logged
   * @param retryMaxMs the longest retry delay of a failing database (default two intervals)
   * @param polling which groups this node polls (default: all of them)
   */
  constructor(
    private readonly registry: Registry,
    private readonly sources: Map<string, Source>,
    private readonly handles: ReadonlyMap<string, Handle>,
    private intervalMs: number,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private retryMaxMs = 2 * intervalMs,
    private readonly polling: GroupPolling = SOLE_NODE,
  ) {
    this.tickMs = this.tickInterval();
    for (const code of sources.keys()) this.addHealth(code);
    metrics.gauge(
      "gatecast_tick_gap_max_seconds",
      () => this.longestTickGapMs / 1000,
    );
  }

  /** Polls a database added by a configuration reload from the next tick on. */
  addSource(code: string, source: Source): void {
    this.sources.set(code, source);
    this.addHealth(code);
  }

  /** Forgets a database removed by a configuration reload; returns its source, to be closed. */
  removeSource(code: string): Source | undefined {
    const source = this.sources.get(code);
    this.sources.delete(code);
    this.health.delete(code);
    this.backoffs.delete(code);
    this.reported.delete(code);
    return source;
  }

  /**
   * Changes the tick interval and the retry cap (a configuration reload). A failing database
   * stays failing: its backoff keeps its failures and plans its next attempt with the new timing.
   */
  retime(intervalMs: number, retryMaxMs: number): void {
    this.intervalMs = intervalMs;
    this.retryMaxMs = retryMaxMs;
    for (const backoff of this.backoffs.values()) backoff.retime(intervalMs, retryMaxMs);
    this.tickMs = this.tickInterval();
    if (this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.lastTickAt = 0;
      this.start();
    }
  }

  private addHealth(code: string): void {
    this.health.set(code, { lastGoodPoll: 0, error: undefined });
    this.backoffs.set(code, new RetryBackoff(this.intervalMs, this.retryMaxMs));
  }

  /** The tick: the largest that every handle's interval is a multiple of, at least {@link MIN_TICK_MS}. */
  private tickInterval(): number {
    let tick = this.intervalMs;
    for (const handle of this.handles.values()) {
      if (handle.pollIntervalMs !== undefined) tick = gcd(tick, handle.pollIntervalMs);
    }
    return Math.max(tick, MIN_TICK_MS);
  }

  /** A group's poll interval: its handle's own, else the configuration's. */
  private intervalOf(group: TopicGroup): number {
    return this.handles.get(group.handle)?.pollIntervalMs ?? this.intervalMs;
  }

  /** Starts ticking. */
  start(): void {
    this.timer ??= setInterval(() => this.tick(), this.tickMs);
  }

  /** Stops ticking and waits for polls under way to end. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await Promise.allSettled([...this.inFlight]);
  }

  /**
   * Polls a group now (a topic was added, a notify), or right after its running poll ends; a
   * group polled by another node is forwarded to it.
   */
  pollNow(group: TopicGroup): PollNowAnswer {
    if (!this.polling.pollsHere(group) && this.polling.wakeElsewhere(group.key)) return "forwarded";
    const error = this.health.get(group.db)?.error;
    if (error !== undefined && !this.backoffs.get(group.db)?.ready(Date.now())) {
      // Its database is failing and waits for a retry: the new topic starts stale (its
      // subscriber is told so when welcomed), without a query.
      for (const topic of group.topics.values()) {
        startStale(topic, { code: SOURCE_UNAVAILABLE, message: error });
      }
      return "deferred";
    }
    const state = this.stateOf(group.key);
    if (!state.running) {
      this.track(this.poll(group, state));
      return "started";
    }
    if (state.again) return "coalesced";
    state.again = true;
    return "queued";
  }

  /**
   * Asks the cluster node that polls a group to poll it now (a notify for a group with no
   * subscriber here); `false` for a node on its own, or without Redis.
   */
  forward(groupKey: string): boolean {
    return this.polling.wakeElsewhere(groupKey);
  }

  /**
   * The health of a database this node does not poll, as the cluster node that polls its groups
   * reports it. While reports keep coming (each at most three intervals after the one before),
   * the database is not probed here; a database polled here keeps the health of its own polls.
   */
  adoptHealth(db: string, report: DatabaseHealth): void {
    const health = this.health.get(db);
    if (health === undefined || this.polledHere.has(db)) return;
    this.reported.set(db, Date.now());
    const lastGoodPoll = Math.max(health.lastGoodPoll, report.lastGoodPoll);
    if (report.error === undefined) this.recordSuccess(db, lastGoodPoll);
    else {
      this.recordFailure(db, report.error);
      health.lastGoodPoll = lastGoodPoll;
    }
  }

  /** One tick: poll every group with subscribers; probe databases that have none. */
  tick(): void {
    this.metrics.inc("gatecast_ticks_total");
    const ticks = this.ticks++;
    const tickAt = performance.now();
    if (this.lastTickAt > 0) {
      this.longestTickGapMs = Math.max(this.longestTickGapMs, tickAt - this.lastTickAt);
    }
    this.lastTickAt = tickAt;
    const now = Date.now();
    const active = new Set<string>();
    for (const group of this.registry.groups()) {
      const due = ticks % Math.max(1, Math.round(this.intervalOf(group) / this.tickMs)) === 0;
      if (!this.polling.pollsHere(group)) {
        // Polled elsewhere: its states arrive from that node; serve who waits for a snapshot.
        // Its database's health comes from that node's reports, or from probes while none do.
        this.failingHandles.delete(group.key);
        if (due) { for (const topic of group.topics.values()) publishUnchanged(topic); }
        continue;
      }
      active.add(group.db);
      if (!this.sources.has(group.db)) continue;
      // A handle with an interval of its own is polled on every n-th tick.
      if (!due) continue;
      if (!this.backoffs.get(group.db)!.ready(now)) {
        this.metrics.inc(
          "gatecast_polls_deferred_total",
          {
            db: group.db,
          },
        );
        continue;
      }
      const state = this.stateOf(group.key);
      if (state.running) {
        this.metrics.inc(
          "gatecast_ticks_skipped_total",
          {
            db: group.db,
            handle: group.handle,
          },
        );
        continue;
      }
      this.track(this.poll(group, state));
    }
    for (const key of this.groupStates.keys()) {
      if (!this.registry.group(key) && !this.groupStates.get(key)!.running) this.groupStates.delete(key);
    }
    // A failing handle no one subscribes to any more is not polled: its failure is not known now.
    for (const [key, failing] of this.failingHandles) {
      if (this.registry.group(key)) continue;
      this.failingHandles.delete(key);
      this.logger.info("handle no longer polled", { db: failing.db, handle: failing.handle });
    }
    this.polledHere = active;
    // Databases without topics polled here are probed at the configuration's interval, unless
    // the node that polls their groups reports their health.
    if (ticks % Math.max(1, Math.round(this.intervalMs / this.tickMs)) !== 0) return;
    for (const code of this.sources.keys()) {
      if (active.has(code) || this.probing.has(code) || this.reportedSince(code, now - 3 * this.intervalMs)) {
        continue;
      }
      if (this.backoffs.get(code)!.ready(now)) this.track(this.probe(code));
    }
  }

  /** Whether another node reported a database's health after `since`. */
  private reportedSince(code: string, since: number): boolean {
    const at = this.reported.get(code);
    if (at === undefined) return false;
    if (at > since) return true;
    this.reported.delete(code);
    return false;
  }

  private stateOf(key: string): GroupState {
    let state = this.groupStates.get(key);
    if (!state) {
      state = { running: false, again: false };
      this.groupStates.set(key, state);
    }
    return state;
  }

  private track(promise: Promise<void>): void {
    this.inFlight.add(promise);
    promise.finally(() => this.inFlight.delete(promise));
  }

  private async poll(group: TopicGroup, state: GroupState): Promise<void> {
    state.running = true;
    const source = this.sources.get(group.db)!;
    const handle = this.handles.get(group.handle)!;
    const labels = { db: group.db };
    const started = performance.now();
    const startedAt = Date.now();
    const advanced = new Set<Topic>();
    try {
      const units = [...group.topics.keys()];
      const polls = await handle.fetch(source, units);
      this.metrics.observe(
        "gatecast_poll_duration_seconds",
        labels,
        (performance.now() - started) / 1000,
      );
      const now = Date.now();
      this.recordSuccess(group.db, now);
      this.backoffs.get(group.db)?.succeeded();
      this.recordHandleSuccess(group);
      for (const [unit, poll] of polls) {
        const topic = group.topics.get(unit);
        if (!topic) continue;
        if (!(poll instanceof UnitFault)) {
          if (publishPoll(topic, poll, now)) advanced.add(topic);
          continue;
        }
        if (topic.feed.stale?.code !== poll.code) {
          this.logger.warn("topic not served", {
            topic: topic.name.key,
            code: poll.code,
            error: poll.message,
          });
        }
        if (publishStale(topic, { code: poll.code, message: poll.message })) advanced.add(topic);
      }
    } catch (error) {
      let message = error instanceof Error ? error.message : String(error);
      this.metrics.inc("gatecast_poll_errors_total", labels);
      if (error instanceof HandleError || (error instanceof SourceError && error.failure === "query")) {
        // The database answered: only this handle's topics are stale. The server's own message
        // (a dropped table) does not know which handle ran the query: say it.
        if (!(error instanceof HandleError)) message = `handle '${group.handle}': ${message}`;
        this.recordSuccess(group.db, Date.now());
        this.backoffs.get(group.db)?.succeeded();
        this.recordHandleFailure(group, message);
        for (const topic of group.topics.values()) {
          if (publishStale(topic, { code: HANDLE_FAILED, message })) advanced.add(topic);
        }
      } else {
        this.recordFailure(group.db, message);
        this.backoffs.get(group.db)?.failed(startedAt);
        for (const topic of group.topics.values()) {
          if (publishStale(topic, { code: SOURCE_UNAVAILABLE, message })) advanced.add(topic);
        }
      }
    } finally {
      if (advanced.size > 0) this.polling.published(group, [...advanced]);
      state.running = false;
      if (state.again) {
        state.again = false;
        const current = this.registry.group(group.key);
        if (current) this.track(this.poll(current, state));
      }
    }
  }

  /** Checks a database no topic uses, so that `/healthz` knows whether it is reachable. */
  private async probe(code: string): Promise<void> {
    this.probing.add(code);
    const startedAt = Date.now();
    try {
      await this.sources.get(code)!.select("SELECT 1", []);
      this.recordSuccess(code, Date.now());
      this.backoffs.get(code)?.succeeded();
    } catch (error) {
      this.recordFailure(code, error instanceof Error ? error.message : String(error));
      this.backoffs.get(code)?.failed(startedAt);
    } finally {
      this.probing.delete(code);
    }
  }

  private recordSuccess(code: string, now: number): void {
    const health = this.health.get(code);
    if (!health) return; // removed by a reload while its poll ran
    if (health.error !== undefined) this.logger.info("database recovered", { db: code });
    health.lastGoodPoll = now;
    health.error = undefined;
  }

  private recordHandleSuccess(group: TopicGroup): void {
    if (!this.failingHandles.delete(group.key)) return;
    this.logger.info("handle recovered", { db: group.db, handle: group.handle });
  }

  private recordHandleFailure(group: TopicGroup, message: string): void {
    if (!this.registry.group(group.key)) return; // its last subscriber left during the poll
    if (!this.failingHandles.has(group.key)) {
      this.logger.warn("handle failing", { db: group.db, handle: group.handle, error: message });
    }
    this.failingHandles.set(group.key, { db: group.db, handle: group.handle, error: message });
  }

  private recordFailure(code: string, message: string): void {
    const health = this.health.get(code);
    if (!health) return;
    if (health.error === undefined) this.logger.warn("database failing", { db: code, error: message });
    health.error = message;
  }
}
