// @ts-check
/**
 * gatecast's client SDK: connect, subscribe to topics, keep each topic's rows up to date from
 * `snapshot` and `update` frames, reconnect with backoff and resubscribe, resubscribe on a `seq` gap or
 * another `epoch`.
 * A topic's rows are keyed by its key columns: the snapshot's `key` for the handles of the
 * configuration (`upsert` and `delete` applied by key), `address` and `code` for `real`'s points
 * (`changes` applied by key). The subscriptions made in one turn of the event loop go out as one
 * batch frame (`topics`); a frame the server drops for its rate limit is asked for again, with backoff.
 *
 * Plain JavaScript with JSDoc types, no dependencies and no Deno APIs: the same file runs in Deno
 * (import it) and in browsers (gatecast serves it at `/gatecast_client.js`).
 */

/** The subprotocol the SDK offers. */
export const SUBPROTOCOL = "gatecast.v1";

/**
 * The longest batch frame the SDK sends, in bytes: a quarter of the server's default
 * `maxFrameBytes` (65,536). More topics at once go out in several frames.
 */
export const MAX_BATCH_BYTES = 16384;

/** @typedef {string | number | boolean | null} Scalar */

/** One row of a topic: its columns by name, in the server's column order. @typedef {Readonly<Record<string, Scalar>>} Row */

/**
 * One point: an `archive_device` row with its latest value.
 * @typedef {object} Point
 * @property {Scalar} code measurement code (a `device_data_real` column)
 * @property {Scalar} recode alternative code
 * @property {Scalar} name point name
 * @property {Scalar} rename display name
 * @property {Scalar} show_id display order
 * @property {Scalar} address device/gateway address
 * @property {Scalar} gateway_id gateway id
 * @property {Scalar} address_type the seed's `lot_type`
 * @property {Scalar} value latest value (`null` when none)
 */

/**
 * One changed value in an `update` frame.
 * @typedef {object} PointChange
 * @property {Scalar} address the point's address
 * @property {Scalar} code the point's code
 * @property {Scalar} value the new value
 */

/** @typedef {number | string} FrameId */
/** @typedef {{ type: "subscribed" | "unsubscribed", id?: FrameId, topic: string }} AckFrame */
/**
 * A snapshot: `real`'s carries `points`, a configured handle's carries `key` and `rows`. `seq` is the
 * topic's current number (any number from 1, shared by every subscriber) and `epoch` names the run of
 * the topic's sequence (absent from servers older than the shared sequence).
 * @typedef {{ type: "snapshot", topic: string, seq: number, epoch?: string, ts: number, points?: Point[], key?: string[], rows?: Row[] }} SnapshotFrame
 */
/**
 * An update: `real`'s carries `changes`, a configured handle's carries `upsert` (a known row's key
 * and changed columns, or a new row whole) and `delete` (key columns). It follows the frame held
 * when its `epoch` is the same and its `seq` the next number.
 * @typedef {{ type: "update", topic: string, seq: number, epoch?: string, ts: number, changes?: PointChange[], upsert?: Row[], delete?: Row[] }} UpdateFrame
 */
/** A topic that cannot be served now; it takes no `seq`. @typedef {{ type: "stale", topic: string, epoch?: string, code: string, message: string }} StaleFrame */
/** @typedef {{ type: "pong", id?: FrameId }} PongFrame */
/** `topic` names the topic of a batch frame the error is about. @typedef {{ type: "error", id?: FrameId, code: string, message: string, topic?: string }} ErrorFrame */
/** A frame the server sends (protocol v1). @typedef {AckFrame | SnapshotFrame | UpdateFrame | StaleFrame | PongFrame | ErrorFrame} ServerFrame */
/** A frame the client sends. @typedef {{ type: "subscribe" | "unsubscribe", id: number, topics: string[] } | { type: "ping", id: number } | { type: "auth", id: number, token: string }} ClientFrame */

/**
 * The connection's status: `connecting` (a socket is being opened), `open` (connected, every
 * topic fresh), `stale` (connected, but at least one topic's database is failing), `closed`
 * (no socket; `detail.reconnectInMs` says when the next attempt starts, absent when final).
 * @typedef {"connecting" | "open" | "stale" | "closed"} Status
 */

/**
 * @typedef {object} StatusDetail
 * @property {number} [attempt] `connecting`: the attempt number since the server last sent a frame (1, 2, …)
 * @property {number} [reconnectInMs] `closed`: delay before the next attempt; absent when the client stopped
 * @property {number} [code] `closed`: the WebSocket close code
 * @property {string} [reason] `closed`: the close reason
 * @property {string[]} [staleTopics] `stale`: the topics that cannot be served now
 */

/**
 * What a subscription handler gets after every change of its topic. The arrays and row objects
 * are never changed afterwards: a handler may keep a state and compare it with the next one.
 * @typedef {object} TopicState
 * @property {string} topic the topic, e.g. `plant1/real/12`, `plant1/tanks/north` or `plant1/alarms`
 * @property {"snapshot" | "update" | "stale" | "error"} reason what just arrived
 * @property {"points" | "rows" | undefined} frames the topic's kind, from its first snapshot: `points`
 *   (`real`: the seed's points) or `rows` (a handle of the configuration); `undefined` before it
 * @property {readonly Row[]} rows every row, current, in the server's order (empty before the first
 *   snapshot); for `real`, its points
 * @property {readonly string[]} key the columns that identify a row: the snapshot's `key`, or
 *   {@link POINT_KEY} for `real` (empty before the first snapshot)
 * @property {readonly Point[]} points `real`'s points: the same array as `rows`; empty for a topic of rows
 * @property {ReadonlySet<string>} changed {@link rowKey}s of the rows new or changed with this frame
 *   (for `real`, the {@link pointKey}s of the points whose value changed); on a snapshot, those new or
 *   different from the previous state (all of them on the first)
 * @property {ReadonlyMap<string, readonly string[]>} changedColumns for each key in `changed`, the
 *   columns whose value changed (every column of a new row)
 * @property {ReadonlySet<string>} removed {@link rowKey}s of the rows gone with this frame
 * @property {number} seq the last `seq` applied: the topic's own number, shared by every subscriber
 *   (0 before the first snapshot)
 * @property {string | undefined} epoch the `epoch` of the last `snapshot` or `update` applied: the run of
 *   the topic's sequence that `seq` counts in (`undefined` before the first snapshot, or from a server
 *   that sends none)
 * @property {number} ts time (ms since the epoch) of the poll that last changed the topic
 * @property {{ code: string, message: string } | undefined} stale set while the topic cannot be served (its
 *   database or its handle failing): its `code` (`SOURCE_UNAVAILABLE`, `HANDLE_FAILED`, `TOO_MANY_ROWS`) and message
 * @property {{ code: string, message: string } | undefined} error set when the server refused the subscription
 */

/** @typedef {(state: TopicState) => void} TopicHandler */

/**
 * @typedef {object} ClientOptions
 * @property {number} [initialDelayMs] first reconnect delay (default 500)
 * @property {number} [maxDelayMs] longest reconnect delay (default 30000)
 * @property {number} [factor] growth of the delay per failed attempt (default 2)
 * @property {number} [jitter] fraction of each delay that is random, 0 to 1 (default 0.5)
 * @property {number} [maxAttempts] lost or refused connections in a row before giving up (default:
 *   never give up). The same delays (and jitter) space the retries of subscriptions the server
 *   dropped for its rate limit, which never give up.
 * @property {number} [pingIntervalMs] ping period; a connection silent for two periods is
 *   replaced (default 20000; 0 disables)
 * @property {(status: Status, detail: StatusDetail) => void} [onStatus] called on every status change
 * @property {(frame: ErrorFrame) => void} [onError] error frames that belong to no subscription
 * @property {{ new (url: string, protocols?: string | string[]): WebSocket }} [WebSocket] the
 *   WebSocket constructor (default `globalThis.WebSocket`)
 * @property {() => number} [random] source of jitter (default `Math.random`)
 * @property {string | (() => string)} [token] a token (JWT or API key) sent in an `auth` frame
 *   right after every connect, before the subscriptions; a function is asked again each time, so
 *   it can hand out a refreshed token. Omit it when the server runs with `auth.mode` `none`.
 */

/** The key columns of `real`'s points: a point is identified by its address and code. */
export const POINT_KEY = Object.freeze(["address", "code"]);

/**
 * The key of a row within its topic: the JSON array of its key columns' values, in `key`'s order.
 *
 * @example
 * ```js
 * rowKey({ tank_id: 3, level_m: 4.2 }, ["tank_id"]); // "[3]"
 * ```
 * @param {Row} row
 * @param {readonly string[]} key the topic's key columns ({@link TopicState} `key`)
 * @returns {string}
 */
export function rowKey(row, key) {
  return JSON.stringify(key.map((column) => row[column] ?? null));
}

/**
 * The key of a point within its topic: its address and code (its {@link rowKey} over {@link POINT_KEY}).
 * @param {{ address: Scalar, code: Scalar }} point
 * @returns {string}
 */
export function pointKey(point) {
  return JSON.stringify([point.address, point.code]);
}

/**
 * The parts of a topic: `<db>/<handle>/<unit>`, or `<db>/<handle>` for a handle without units
 * (`unit` is then `undefined`). Only the shape is checked; the server judges the names.
 *
 * @example
 * ```js
 * topicParts("plant1/tanks/north"); // { db: "plant1", handle: "tanks", unit: "north" }
 * topicParts("plant1/alarms"); // { db: "plant1", handle: "alarms", unit: undefined }
 * ```
 * @param {string} topic
 * @returns {{ db: string, handle: string, unit: string | undefined }}
 */
export function topicParts(topic) {
  const parts = topic.split("/");
  if ((parts.length !== 2 && parts.length !== 3) || parts.some((part) => part === "")) {
    throw new SyntaxError(
      `expected a topic <db>/<handle>/<unit> or <db>/<handle>, got ${JSON.stringify(topic)}`,
    );
  }
  return { db: parts[0], handle: parts[1], unit: parts[2] };
}

/**
 * The topic of a database, a handle and a unit (none for a handle without units).
 *
 * @example
 * ```js
 * topicOf("plant1", "real", 12); // "plant1/real/12"
 * topicOf("plant1", "alarms"); // "plant1/alarms"
 * ```
 * @param {string} db
 * @param {string} handle
 * @param {string | number} [unit]
 * @returns {string}
 */
export function topicOf(db, handle, unit) {
  return unit === undefined || unit === "" ? `${db}/${handle}` : `${db}/${handle}/${unit}`;
}

/**
 * The delay before reconnect attempt `attempt` (1, 2, …): exponential, capped at `maxDelayMs`,
 * and lowered by up to `jitter` of itself at random so that clients do not return in step.
 *
 * @example
 * ```js
 * backoffDelay(3, { initialDelayMs: 500, factor: 2, maxDelayMs: 30000, jitter: 0 }); // 2000
 * ```
 * @param {number} attempt
 * @param {{ initialDelayMs?: number, maxDelayMs?: number, factor?: number, jitter?: number }} [options]
 * @param {() => number} [random]
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, options = {}, random = Math.random) {
  const { initialDelayMs = 500, maxDelayMs = 30000, factor = 2, jitter = 0.5 } = options;
  const full = Math.min(maxDelayMs, initialDelayMs * factor ** Math.max(0, attempt - 1));
  return Math.round(full * (1 - jitter * random()));
}

/**
 * A topic subscribed to. `rows` are its rows in the server's order, `index` each row's position
 * by {@link rowKey}. `pendingId` is the id of the frame that last asked the server for it,
 * until the answer (`subscribed` or an error) comes; 0 when answered. `held` says whether the
 * server holds it on this connection, as far as its answers tell.
 * @typedef {{ topic: string, handlers: Set<TopicHandler>, frames: "points" | "rows" | undefined, key: readonly string[], rows: Row[], index: Map<string, number>, seq: number, epoch: string | undefined, ts: number, stale: { code: string, message: string } | undefined, error: { code: string, message: string } | undefined, resyncing: boolean, pendingId: number, held: boolean }} Entry
 */

const encoder = new TextEncoder();

/** Room for `{"type":"unsubscribe","id":…,"topics":[]}` in a batch frame. */
const BATCH_OVERHEAD_BYTES = 64;

/**
 * Splits topics into batches whose frames stay within {@link MAX_BATCH_BYTES}.
 * @param {string[]} topics
 * @returns {string[][]}
 */
function batches(topics) {
  /** @type {string[][]} */
  const out = [];
  let batch = /** @type {string[]} */ ([]);
  let bytes = BATCH_OVERHEAD_BYTES;
  for (const topic of topics) {
    const size = encoder.encode(JSON.stringify(topic)).length + 1;
    if (batch.length > 0 && bytes + size > MAX_BATCH_BYTES) {
      out.push(batch);
      batch = [];
      bytes = BATCH_OVERHEAD_BYTES;
    }
    batch.push(topic);
    bytes += size;
  }
  if (batch.length > 0) out.push(batch);
  return out;
}

/**
 * A connection to gatecast that survives restarts: it reconnects with exponential backoff and
 * jitter, subscribes again to every topic, and keeps each topic's rows current.
 *
 * @example
 * ```js
 * const client = new GatecastClient("ws://gateway:4053/ws", { onStatus: (s) => console.log(s) });
 * const stop = client.subscribe("plant1/tanks/north", ({ rows, key, changedColumns }) => {
 *   for (const row of rows) render(rowKey(row, key), row, changedColumns.get(rowKey(row, key)));
 * });
 * client.subscribe("plant1/real/12", ({ points, changed }) => render(points, changed));
 * // later
 * stop();
 * client.close();
 * ```
 */
export class GatecastClient {
  /** @type {Status} */
  #status = "closed";
  /** @type {WebSocket | undefined} */
  #socket;
  /** @type {Map<string, Entry>} */
  #topics = new Map();
  /** Topics to subscribe to at the end of this turn of the event loop. @type {Set<Entry>} */
  #toSubscribe = new Set();
  /** Topics to unsubscribe from: the id of the frame that asked, 0 while not yet sent. @type {Map<string, number>} */
  #unsubscribing = new Map();
  #flushQueued = false;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #rateRetryTimer;
  /** Retry rounds since a retried frame got through: the backoff's attempt number. */
  #rateRetries = 0;
  /** The first frame id of the latest retry round. */
  #rateRetryFromId = 0;
  #nextId = 1;
  /** Connections lost or refused since the server last sent a frame. */
  #failures = 0;
  #stopped = false;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #retryTimer;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  #pingTimer;
  #lastFrameAt = 0;
  /** @type {Required<Pick<ClientOptions, "initialDelayMs" | "maxDelayMs" | "factor" | "jitter" | "maxAttempts" | "pingIntervalMs" | "random">> & ClientOptions} */
  #options;
  /** @type {{ new (url: string, protocols?: string | string[]): WebSocket }} */
  #WebSocket;

  /**
   * Starts connecting as soon as the caller's code yields.
   * @param {string} url the WebSocket endpoint, e.g. `ws://gateway:4053/ws`
   * @param {ClientOptions} [options]
   */
  constructor(url, options = {}) {
    /** The endpoint. */
    this.url = url;
    this.#options = {
      initialDelayMs: 500,
      maxDelayMs: 30000,
      factor: 2,
      jitter: 0.5,
      maxAttempts: Infinity,
      pingIntervalMs: 20000,
      random: Math.random,
      ...options,
    };
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    const scheme = new URL(url).protocol; // throws a TypeError for a bad URL, here and now
    if (scheme !== "ws:" && scheme !== "wss:") {
      throw new SyntaxError(`expected a ws: or wss: URL, got ${url}`);
    }
    // Connect after the constructor returns, so that callbacks can already use the client.
    queueMicrotask(() => {
      if (!this.#stopped) this.#connect();
    });
  }

  /** The current status. @returns {Status} */
  get status() {
    return this.#status;
  }

  /**
   * Subscribes a handler to a topic. The handler is called with the topic's state after every
   * snapshot, update, stale or error frame, and at once when the topic already has a snapshot.
   * Several handlers may share a topic; the server sees one subscription.
   *
   * @param {string} topic `<db>/<handle>/<unit>`, or `<db>/<handle>` for a handle without units
   * @param {TopicHandler} handler
   * @returns {() => void} removes this handler (and unsubscribes once no handler is left)
   */
  subscribe(topic, handler) {
    let entry = this.#topics.get(topic);
    if (!entry) {
      entry = {
        topic,
        handlers: new Set(),
        frames: undefined,
        key: [],
        rows: [],
        index: new Map(),
        seq: 0,
        epoch: undefined,
        ts: 0,
        stale: undefined,
        error: undefined,
        resyncing: false,
        pendingId: 0,
        held: false,
      };
      this.#topics.set(topic, entry);
      // Back before its unsubscribe went out: the server still holds the topic.
      if (this.#unsubscribing.get(topic) === 0) entry.held = true;
      this.#unsubscribing.delete(topic);
      this.#queueSubscribe(entry);
    }
    entry.handlers.add(handler);
    if (entry.seq > 0) handler(stateOf(entry, "snapshot", everyRowNew(entry.rows, entry.key)));
    const owner = entry;
    return () => {
      owner.handlers.delete(handler);
      if (owner.handlers.size > 0 || this.#topics.get(topic) !== owner) return;
      this.#topics.delete(topic);
      this.#toSubscribe.delete(owner);
      if (owner.held || owner.pendingId !== 0) {
        this.#unsubscribing.set(topic, 0);
        this.#queueFlush();
      }
      this.#updateStaleStatus();
    };
  }

  /** The topics subscribed to. @returns {string[]} */
  get topics() {
    return [...this.#topics.keys()];
  }

  /** Closes the connection for good: no more reconnects, status `closed`. */
  close() {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    this.#toSubscribe.clear();
    this.#unsubscribing.clear();
    const socket = this.#socket;
    this.#detach();
    if (socket) socket.close(1000, "client closed");
    this.#setStatus("closed", { code: 1000, reason: "client closed" });
  }

  #connect() {
    this.#setStatus("connecting", { attempt: this.#failures + 1 });
    /** @type {WebSocket} */
    let socket;
    try {
      socket = new this.#WebSocket(this.url, SUBPROTOCOL);
    } catch (error) {
      this.#lost(1006, String(error));
      return;
    }
    this.#socket = socket;
    socket.onopen = () => this.#opened();
    socket.onmessage = (event) => {
      if (typeof event.data === "string") this.#receive(event.data);
    };
    socket.onclose = (event) => this.#lost(event.code, event.reason);
    socket.onerror = () => {}; // a close event follows
  }

  #opened() {
    this.#lastFrameAt = Date.now();
    const token = this.#options.token;
    if (token !== undefined) {
      // The server holds frames back while it verifies the token, so the subscriptions may follow at once.
      this.#send({ type: "auth", id: this.#nextId++, token: typeof token === "function" ? token() : token });
    }
    // A new connection holds nothing: every topic is subscribed to again, in batches.
    this.#unsubscribing.clear();
    this.#rateRetries = 0;
    for (const entry of this.#topics.values()) {
      entry.resyncing = true;
      entry.stale = undefined;
      entry.held = false;
      entry.pendingId = 0;
      this.#toSubscribe.add(entry);
    }
    this.#flush();
    this.#setStatus("open", {});
    const every = this.#options.pingIntervalMs;
    if (every > 0) {
      this.#pingTimer = setInterval(() => {
        if (Date.now() - this.#lastFrameAt > 2 * every) {
          // A dead peer may never finish a close handshake: give up on the socket ourselves.
          const socket = this.#socket;
          this.#detach();
          socket?.close(4000, "no frames from the server");
          this.#lost(4000, "no frames from the server");
        } else {
          this.#send({ type: "ping", id: this.#nextId++ });
        }
      }, every);
    }
  }

  /**
   * @param {number} code
   * @param {string} reason
   */
  #lost(code, reason) {
    this.#detach();
    if (this.#stopped) return;
    this.#failures++;
    if (this.#failures >= this.#options.maxAttempts) {
      this.#stopped = true;
      this.#setStatus("closed", { code, reason });
      return;
    }
    const delay = backoffDelay(this.#failures, this.#options, this.#options.random);
    this.#setStatus("closed", { code, reason, reconnectInMs: delay });
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
  }

  #detach() {
    clearInterval(this.#pingTimer);
    this.#pingTimer = undefined;
    clearTimeout(this.#rateRetryTimer);
    this.#rateRetryTimer = undefined;
    const socket = this.#socket;
    this.#socket = undefined;
    if (!socket) return;
    socket.onopen =
      socket.onmessage =
      socket.onclose =
      socket.onerror =
        null;
  }

  /** @param {string} text */
  #receive(text) {
    this.#lastFrameAt = Date.now();
    this.#failures = 0; // the server answers: the next loss starts the backoff over
    /** @type {ServerFrame} */
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame.type === "snapshot") this.#snapshot(frame);
    else if (frame.type === "update") this.#update(frame);
    else if (frame.type === "stale") this.#stale(frame);
    else if (frame.type === "error") this.#error(frame);
    else if (frame.type === "subscribed") this.#subscribed(frame);
    else if (frame.type === "unsubscribed" && this.#unsubscribing.get(frame.topic) === frame.id) {
      this.#unsubscribing.delete(frame.topic);
    }
  }

  /** @param {AckFrame} frame */
  #subscribed(frame) {
    const entry = this.#topics.get(frame.topic);
    if (!entry || entry.pendingId !== frame.id) return;
    entry.pendingId = 0;
    entry.held = true;
    // A retried frame got through: the next refusal starts the backoff over.
    if (typeof frame.id === "number" && frame.id >= this.#rateRetryFromId) this.#rateRetries = 0;
  }

  /** @param {SnapshotFrame} frame */
  #snapshot(frame) {
    const entry = this.#topics.get(frame.topic);
    if (!entry) return;
    const previous = entry.rows;
    const previousIndex = entry.index;
    const previousKey = entry.key;
    entry.frames = frame.rows ? "rows" : "points";
    entry.key = frame.rows ? frame.key ?? [] : POINT_KEY;
    entry.rows = (frame.rows ?? frame.points ?? []).slice();
    entry.index = indexOf(entry.rows, entry.key);
    // Any seq is a base: a snapshot carries the topic's current number, not 1.
    entry.seq = frame.seq;
    entry.epoch = frame.epoch;
    entry.ts = frame.ts;
    entry.resyncing = false;
    entry.error = undefined;
    const wasStale = entry.stale !== undefined;
    entry.stale = undefined;
    const change = sameKey(previousKey, entry.key)
      ? compareRows(previous, previousIndex, entry.rows, entry.key)
      : {
        changedColumns: everyRowNew(entry.rows, entry.key).changedColumns,
        removed: new Set(previousIndex.keys()),
      };
    notify(entry, stateOf(entry, "snapshot", change));
    if (wasStale) this.#updateStaleStatus();
  }

  /**
   * An update applied to the rows held: `delete` removes rows by key, `upsert` (or `real`'s
   * `changes`) merges into a known row and appends a new one, so the rows stay in the server's
   * order. A `seq` gap, another `epoch` (the topic's sequence started again: a server restart, a
   * new cluster leaseholder), or a frame that does not fit the rows held (an unknown row to delete, a
   * new row that is not whole) means the rows held are no base for it: subscribe again for a fresh
   * snapshot. A server that sends no `epoch` compares as `undefined` to `undefined`.
   * @param {UpdateFrame} frame
   */
  #update(frame) {
    const entry = this.#topics.get(frame.topic);
    if (!entry || entry.resyncing) return;
    const applied = frame.epoch === entry.epoch && frame.seq === entry.seq + 1
      ? applyUpdate(
        entry.rows,
        entry.index,
        entry.key,
        frame.upsert ?? frame.changes ?? [],
        frame.delete ?? [],
      )
      : undefined;
    if (!applied) {
      entry.resyncing = true;
      this.#queueSubscribe(entry);
      return;
    }
    entry.rows = applied.rows;
    entry.index = applied.index;
    entry.seq = frame.seq;
    entry.ts = frame.ts;
    notify(entry, stateOf(entry, "update", applied));
  }

  /** @param {StaleFrame} frame */
  #stale(frame) {
    const entry = this.#topics.get(frame.topic);
    if (!entry) return;
    entry.stale = { code: frame.code, message: frame.message };
    notify(entry, stateOf(entry, "stale", NO_CHANGE));
    this.#updateStaleStatus();
  }

  /**
   * An error frame: a dropped frame (RATE_LIMITED, which names no frame) is asked for again;
   * an error about a topic (a batch names it) or about a whole frame reaches the subscriptions it
   * refused, or `onError` when it belongs to none.
   * @param {ErrorFrame} frame
   */
  #error(frame) {
    if (frame.code === "RATE_LIMITED" && frame.id === undefined) {
      this.#retryLater();
      return;
    }
    const unsubscribed = frame.topic === undefined
      ? [...this.#unsubscribing].filter(([, id]) => id === frame.id).map(([topic]) => topic)
      : this.#unsubscribing.get(frame.topic) === frame.id
      ? [frame.topic]
      : [];
    for (const topic of unsubscribed) this.#unsubscribing.delete(topic); // NOT_SUBSCRIBED: as good as done
    const refused = frame.topic === undefined
      ? [...this.#topics.values()].filter((e) => e.pendingId !== 0 && e.pendingId === frame.id)
      : [this.#topics.get(frame.topic)].filter((e) => e !== undefined && e.pendingId === frame.id);
    if (refused.length === 0) {
      if (unsubscribed.length === 0) this.#options.onError?.(frame);
      return;
    }
    for (const entry of /** @type {Entry[]} */ (refused)) {
      entry.pendingId = 0;
      entry.held = false;
      entry.error = { code: frame.code, message: frame.message };
      entry.resyncing = false;
      notify(entry, stateOf(entry, "error", NO_CHANGE));
    }
  }

  /**
   * The server dropped a frame for its rate limit without saying which: after a backoff, every
   * subscription and unsubscription still unanswered is asked for again. One that was only slow
   * to be answered is asked twice, which the server answers with a fresh snapshot.
   */
  #retryLater() {
    if (this.#rateRetryTimer !== undefined) return;
    const delay = backoffDelay(++this.#rateRetries, this.#options, this.#options.random);
    this.#rateRetryTimer = setTimeout(() => {
      this.#rateRetryTimer = undefined;
      for (const entry of this.#topics.values()) if (entry.pendingId !== 0) this.#toSubscribe.add(entry);
      for (const [topic, id] of this.#unsubscribing) if (id !== 0) this.#unsubscribing.set(topic, 0);
      this.#rateRetryFromId = this.#nextId;
      this.#flush();
    }, delay);
  }

  /** @param {Entry} entry */
  #queueSubscribe(entry) {
    this.#toSubscribe.add(entry);
    this.#queueFlush();
  }

  /** Sends what this turn of the event loop asked for once it ends, as batch frames. */
  #queueFlush() {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      this.#flush();
    });
  }

  /** Sends the queued unsubscriptions, then the queued subscriptions, in frames of at most {@link MAX_BATCH_BYTES}. */
  #flush() {
    // Not yet open: `#opened` subscribes to every topic, and the new connection holds no other.
    if (this.#socket?.readyState !== 1) return;
    const leaving = [...this.#unsubscribing].filter(([, id]) => id === 0).map(([topic]) => topic);
    for (const topics of batches(leaving)) {
      const id = this.#nextId++;
      for (const topic of topics) this.#unsubscribing.set(topic, id);
      this.#send({ type: "unsubscribe", id, topics });
    }
    const entries = new Map([...this.#toSubscribe].map((entry) => [entry.topic, entry]));
    this.#toSubscribe.clear();
    for (const topics of batches([...entries.keys()])) {
      const id = this.#nextId++;
      for (const topic of topics) /** @type {Entry} */ (entries.get(topic)).pendingId = id;
      this.#send({ type: "subscribe", id, topics });
    }
  }

  /** @param {ClientFrame} frame */
  #send(frame) {
    if (this.#socket?.readyState === 1) this.#socket.send(JSON.stringify(frame));
  }

  #updateStaleStatus() {
    if (this.#status !== "open" && this.#status !== "stale") return;
    const staleTopics = [...this.#topics.values()].filter((e) => e.stale !== undefined).map((e) => e.topic);
    if (staleTopics.length > 0) this.#setStatus("stale", { staleTopics });
    else this.#setStatus("open", {});
  }

  /**
   * @param {Status} status
   * @param {StatusDetail} detail
   */
  #setStatus(status, detail) {
    if (status === this.#status && status !== "stale" && status !== "connecting") return;
    this.#status = status;
    this.#options.onStatus?.(status, detail);
  }
}

/**
 * What one frame changed: for each new or changed row (by {@link rowKey}) its changed columns,
 * and the keys of the rows gone.
 * @typedef {{ changedColumns: Map<string, string[]>, removed: Set<string> }} RowsChange
 */

/** @type {RowsChange} */
const NO_CHANGE = { changedColumns: new Map(), removed: new Set() };

/**
 * @param {readonly Row[]} rows
 * @param {readonly string[]} key
 * @returns {Map<string, number>} each row's position by key
 */
function indexOf(rows, key) {
  return new Map(rows.map((row, i) => [rowKey(row, key), i]));
}

/**
 * @param {readonly string[]} a
 * @param {readonly string[]} b
 */
function sameKey(a, b) {
  return a.length === b.length && a.every((column, i) => column === b[i]);
}

/**
 * Every row as new, every column changed: the first snapshot, or the state a late handler gets.
 * @param {readonly Row[]} rows
 * @param {readonly string[]} key
 * @returns {RowsChange}
 */
function everyRowNew(rows, key) {
  return {
    changedColumns: new Map(rows.map((row) => [rowKey(row, key), Object.keys(row)])),
    removed: new Set(),
  };
}

/**
 * What a snapshot changed against the rows held before it (same key columns).
 * @param {readonly Row[]} before
 * @param {Map<string, number>} beforeIndex
 * @param {readonly Row[]} after
 * @param {readonly string[]} key
 * @returns {RowsChange}
 */
function compareRows(before, beforeIndex, after, key) {
  const changedColumns = new Map();
  const kept = new Set();
  for (const row of after) {
    const k = rowKey(row, key);
    const i = beforeIndex.get(k);
    if (i === undefined) {
      changedColumns.set(k, Object.keys(row));
      continue;
    }
    kept.add(k);
    const old = before[i];
    const columns = Object.keys(row).filter((column) => old[column] !== row[column]);
    if (columns.length > 0) changedColumns.set(k, columns);
  }
  const removed = new Set([...beforeIndex.keys()].filter((k) => !kept.has(k)));
  return { changedColumns, removed };
}

/**
 * Applies an update to the rows held, into new arrays and objects (the old ones stay as they
 * were). `undefined` when the update does not fit them: a row to delete that is not held, or a
 * row not held that does not come whole (it lacks a column the rows held have, or a key column).
 * @param {readonly Row[]} rows
 * @param {Map<string, number>} index
 * @param {readonly string[]} key
 * @param {readonly Row[]} upserts
 * @param {readonly Row[]} deletes
 * @returns {(RowsChange & { rows: Row[], index: Map<string, number> }) | undefined}
 */
function applyUpdate(rows, index, key, upserts, deletes) {
  const removed = new Set(deletes.map((row) => rowKey(row, key)));
  for (const k of removed) if (!index.has(k)) return undefined;
  const next = removed.size > 0 ? rows.filter((row) => !removed.has(rowKey(row, key))) : rows.slice();
  const nextIndex = removed.size > 0 ? indexOf(next, key) : new Map(index);
  const columns = rows.length > 0 ? Object.keys(rows[0]) : key;
  /** @type {Map<string, string[]>} */
  const changedColumns = new Map();
  for (const upsert of upserts) {
    const k = rowKey(upsert, key);
    const i = nextIndex.get(k);
    if (i === undefined) {
      if (!columns.every((column) => column in upsert)) return undefined;
      nextIndex.set(k, next.length);
      next.push(upsert);
      changedColumns.set(k, Object.keys(upsert));
    } else {
      next[i] = { ...next[i], ...upsert };
      changedColumns.set(k, Object.keys(upsert).filter((column) => !key.includes(column)));
    }
  }
  return { rows: next, index: nextIndex, changedColumns, removed };
}

/**
 * @param {Entry} entry
 * @param {TopicState["reason"]} reason
 * @param {RowsChange} change
 * @returns {TopicState}
 */
function stateOf(entry, reason, change) {
  return {
    topic: entry.topic,
    reason,
    frames: entry.frames,
    rows: entry.rows,
    key: entry.key,
    points: entry.frames === "points" ? /** @type {Point[]} */ (/** @type {unknown} */ (entry.rows)) : [],
    changed: new Set(change.changedColumns.keys()),
    changedColumns: change.changedColumns,
    removed: change.removed,
    seq: entry.seq,
    epoch: entry.epoch,
    ts: entry.ts,
    stale: entry.stale,
    error: entry.error,
  };
}

/**
 * @param {Entry} entry
 * @param {TopicState} state
 */
function notify(entry, state) {
  for (const handler of [...entry.handlers]) handler(state);
}
