/**
 * Counters, gauges and histograms, rendered in the Prometheus text format for `GET /metrics`.
 * Deliberately small: no dependency, labels fixed when a series is first touched.
 */

type Labels = Readonly<Record<string, string>>;

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  readonly series: Map<string, { labels: Labels; value: number; buckets?: number[]; sum?: number }>;
}

/** Upper bounds, in seconds, of the query duration histogram. */
export const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** One metric family gatecast exports, declared up front so `/metrics` lists it from the start. */
export interface FamilyInfo {
  /** Prometheus name: `gatecast_…`, counters end in `_total`, durations in `_seconds`. */
  readonly name: string;
  /** Counter, gauge or histogram. */
  readonly type: Family["type"];
  /** The `# HELP` text. */
  readonly help: string;
  /** Label sets that start at 0 (a counter without labels always does). */
  readonly initial?: readonly Labels[];
}

/**
 * Every metric gatecast exports. Series labelled by database start at 0 when the database is
 * opened (`metered_source.ts`); README's metrics table lists the same names.
 */
export const METRIC_FAMILIES: readonly FamilyInfo[] = [
  {
    name: "gatecast_connections",
    type: "gauge",
    help: "Open client connections: WebSockets (v1, legacy, WAMP) and event streams.",
  },
  { name: "gatecast_subscriptions", type: "gauge", help: "Subscriptions over all topics." },
  { name: "gatecast_topics", type: "gauge", help: "Topics with at least one subscriber." },
  { name: "gatecast_ticks_total", type: "counter", help: "Poll ticks run." },
  {
    name: "gatecast_ticks_skipped_total",
    type: "counter",
    help: "Group polls skipped because the previous one was still running.",
  },
  { name: "gatecast_db_queries_total", type: "counter", help: "SQL queries run, per database." },
  {
    name: "gatecast_db_query_duration_seconds",
    type: "histogram",
    help: "Duration of one SQL query, per database.",
  },
  {
    name: "gatecast_db_query_errors_total",
    type: "counter",
    help: "Failed SQL queries, per database and failure (unavailable, timeout, query).",
  },
  { name: "gatecast_poll_duration_seconds", type: "histogram", help: "Duration of one group poll." },
  { name: "gatecast_poll_errors_total", type: "counter", help: "Failed group polls, per database." },
  {
    name: "gatecast_duplicate_keys_total",
    type: "counter",
    help: "Result rows dropped for repeating a key within their unit (the first row wins), per handle.",
  },
  { name: "gatecast_frames_sent_total", type: "counter", help: "Frames sent to clients." },
  { name: "gatecast_sent_bytes_total", type: "counter", help: "Bytes (UTF-8) of frames sent to clients." },
  {
    name: "gatecast_clients_dropped_total",
    type: "counter",
    help: "Clients closed by the server, by reason.",
    initial: [
      { reason: "slow_hard_limit" },
      { reason: "slow_grace_expired" },
      { reason: "no_pong" },
      { reason: "frame_too_big" },
      { reason: "policy" },
      { reason: "rate_limited" },
      { reason: "first_frame_timeout" },
      { reason: "auth_timeout" },
      { reason: "auth_failed" },
      { reason: "token_expired" },
    ],
  },
  { name: "gatecast_client_errors_total", type: "counter", help: "Error frames sent to clients, by code." },
  {
    name: "gatecast_frames_held_back_total",
    type: "counter",
    help: "Frames not sent to clients over the soft send-buffer limit.",
  },
  {
    name: "gatecast_upgrades_refused_total",
    type: "counter",
    help: "WebSocket upgrades and event streams refused at the door, by reason.",
    initial: [
      { reason: "origin" },
      { reason: "connection_cap" },
      { reason: "max_connections_per_address" },
      { reason: "auth_failed" },
      { reason: "shutting_down" },
    ],
  },
  { name: "gatecast_connection_cap", type: "gauge", help: "Most connections accepted at once." },
  {
    name: "gatecast_listener_restarts",
    type: "gauge",
    help: "Times the listener was started again after it failed (out of file descriptors).",
  },
  {
    name: "gatecast_open_file_limit",
    type: "gauge",
    help: "The open-file limit the connection cap is kept below (absent when unknown).",
  },
  {
    name: "gatecast_open_descriptors",
    type: "gauge",
    help: "File descriptors the process holds, sampled every 5 s (absent without /proc access).",
  },
  {
    name: "gatecast_unaccounted_connections",
    type: "gauge",
    help:
      "Accepted connections that are neither a WebSocket nor a request being answered: requests whose headers never finished, idle keep-alive (sampled; absent without /proc access).",
  },
  {
    name: "gatecast_polls_deferred_total",
    type: "counter",
    help: "Group polls put off while a database waits for a retry.",
  },
  {
    name: "gatecast_notifies_total",
    type: "counter",
    help: "POST /notify requests, by result.",
    initial: [
      { result: "scheduled" },
      { result: "bad_request" },
      { result: "unauthorized" },
      { result: "forbidden" },
      { result: "not_found" },
      { result: "method_not_allowed" },
      { result: "too_large" },
      { result: "unsupported_media_type" },
      { result: "shutting_down" },
    ],
  },
  {
    name: "gatecast_notified_groups_total",
    type: "counter",
    help:
      "Groups notifies asked to poll now, per database, handle and answer: started and queued are the extra polls they caused; coalesced folded into one already queued; deferred waits for the database's retry; forwarded went to the cluster node that polls the group.",
  },
  {
    name: "gatecast_binlog_events_total",
    type: "counter",
    help: "Binlog row events on tables a handle reads, per database (each polls the handles that read it).",
  },
  {
    name: "gatecast_tick_gap_max_seconds",
    type: "gauge",
    help: "Longest time between two poll ticks since start.",
  },
  {
    name: "gatecast_cluster_redis_up",
    type: "gauge",
    help: "Cluster mode: 1 while this node's Redis link is up, 0 while it polls its own topics alone.",
  },
  {
    name: "gatecast_cluster_leases",
    type: "gauge",
    help: "Cluster mode: groups this node holds the lease of.",
  },
  {
    name: "gatecast_cluster_peers",
    type: "gauge",
    help: "Cluster mode: other live nodes, as Redis last told.",
  },
  {
    name: "gatecast_cluster_lease_changes_total",
    type: "counter",
    help:
      "Cluster mode: leases acquired, lost (not renewed in time, Redis lost), released (no topic left, stop) and handed over (to a node holding fewer).",
    initial: [{ change: "acquired" }, { change: "lost" }, { change: "released" }, { change: "handed_over" }],
  },
  {
    name: "gatecast_cluster_messages_sent_total",
    type: "counter",
    help:
      "Cluster mode: Redis messages this node published: state batches (one a poll of a group it leads) and wake requests.",
  },
  {
    name: "gatecast_cluster_messages_received_total",
    type: "counter",
    help:
      "Cluster mode: Redis messages this node took from other nodes: state batches of groups it follows and wake requests.",
  },
  {
    name: "gatecast_cluster_states_sent_total",
    type: "counter",
    help: "Cluster mode: topic states this node published in its state batches.",
  },
  {
    name: "gatecast_cluster_states_received_total",
    type: "counter",
    help: "Cluster mode: topic states this node decoded from other nodes (batches and the state hash).",
  },
];

/** One counter series; see {@link Metrics.counter}. */
export interface Counter {
  /** Adds `by` (default 1). */
  add(by?: number): void;
}

/** A set of metric families. */
export class Metrics {
  private readonly families = new Map<string, Family>();
  private readonly gauges = new Map<string, () => number>();

  /**
   * @param declared the families this set may hold, with their type and help (the server passes
   *   {@link METRIC_FAMILIES}); using any other name is a programming error and throws
   */
  constructor(declared: readonly FamilyInfo[] = []) {
    for (const info of declared) {
      this.families.set(info.name, { name: info.name, help: info.help, type: info.type, series: new Map() });
      if (info.type !== "counter") continue;
      for (const labels of info.initial ?? [{}]) this.series(info.name, "counter", labels);
    }
  }

  /** Adds `by` (default 1) to a counter. */
  inc(name: string, labels: Labels = {}, by = 1): void {
    this.series(name, "counter", labels).value += by;
  }

  /**
   * One counter series, resolved once, for hot paths: `add` costs no lookup. Counts the same
   * series as {@link inc} with the same name and labels.
   *
   * @example
   * ```ts
   * const framesSent = metrics.counter("gatecast_frames_sent_total");
   * framesSent.add(); // per frame
   * ```
   */
  counter(name: string, labels: Labels = {}): Counter {
    const s = this.series(name, "counter", labels);
    return {
      add(by = 1) {
        s.value += by;
      },
    };
  }

  /** Records one observation, in seconds, in a histogram over {@link DURATION_BUCKETS}. */
  observe(name: string, labels: Labels, seconds: number): void {
    const s = this.series(name, "histogram", labels);
    s.buckets ??= DURATION_BUCKETS.map(() => 0);
    s.sum = (s.sum ?? 0) + seconds;
    s.value++;
    DURATION_BUCKETS.forEach((bound, i) => {
      if (seconds <= bound) s.buckets![i]++;
    });
  }

  /** Registers a gauge whose value is read when metrics are rendered. */
  gauge(name: string, read: () => number): void {
    this.series(name, "gauge", {});
    this.gauges.set(name, read);
  }

  /** The current value of a counter or gauge series (0 when never touched). */
  value(name: string, labels: Labels = {}): number {
    const read = this.gauges.get(name);
    if (read) return read();
    return this.families.get(name)?.series.get(labelText(labels))?.value ?? 0;
  }

  /** All families in the Prometheus text exposition format. */
  render(): string {
    const lines: string[] = [];
    for (const family of this.families.values()) {
      lines.push(`# HELP ${family.name} ${family.help}`, `# TYPE ${family.name} ${family.type}`);
      for (const [key, s] of family.series) {
        if (family.type === "gauge") {
          lines.push(`${family.name}${key} ${this.gauges.get(family.name)?.() ?? s.value}`);
        } else if (family.type === "counter") {
          lines.push(`${family.name}${key} ${s.value}`);
        } else {
          DURATION_BUCKETS.forEach((bound, i) => {
            lines.push(
              `${family.name}_bucket${labelText({ ...s.labels, le: String(bound) })} ${s.buckets![i]}`,
            );
          });
          lines.push(`${family.name}_bucket${labelText({ ...s.labels, le: "+Inf" })} ${s.value}`);
          lines.push(`${family.name}_sum${key} ${s.sum}`, `${family.name}_count${key} ${s.value}`);
        }
      }
    }
    return lines.join("\n") + "\n";
  }

  private series(name: string, type: Family["type"], labels: Labels) {
    const family = this.families.get(name);
    if (!family) throw new Error(`metric ${name} is not declared`);
    if (family.type !== type) throw new Error(`metric ${name} is a ${family.type}, not a ${type}`);
    const key = labelText(labels);
    let s = family.series.get(key);
    if (!s) {
      s = { labels, value: 0 };
      family.series.set(key, s);
    }
    return s;
  }
}

function labelText(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return "";
  return "{" +
    entries.map(([k, v]) => `${k}="${v.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : "\\" + c)}"`).join(
      ",",
    ) + "}";
}
