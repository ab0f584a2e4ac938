/**
 * One client connection: reads its frames, keeps its subscriptions, and guards its send
 * buffer. The first frame decides the mode: a v1 frame (or the `gatecast.v1` subprotocol)
 * makes a v1 connection; the seed's subscription makes a legacy one.
 *
 * Its send buffer is guarded (`send_buffer.ts`): over the soft limit frames are held back, over
 * the hard limit (or soft for too long) the client is closed with {@link CloseCode.SLOW_CONSUMER}.
 * A client the server drops (abuse, timeouts, policy) lingers before its close, so that it gets
 * its close frame (`linger.ts`).
 */

import { type Authenticator, AuthError, type Principal } from "./auth.ts";
import type { Config } from "../config/config.ts";
import { welcome } from "../hub/fanout.ts";
import { FrameRate } from "./limits.ts";
import { Linger } from "./linger.ts";
import { SendBuffer } from "./send_buffer.ts";
import type { LogFields, Logger } from "../ops/log.ts";
import type { Metrics } from "../ops/metrics.ts";
import {
  ackFrame,
  authenticatedFrame,
  type ClientFrame,
  CloseCode,
  closeReason,
  ErrorCode,
  errorFrame,
  type FrameId,
  parseClientFrame,
  pongFrame,
  ProtocolError,
  type TopicsFrame,
} from "../wire/protocol.ts";
import { LegacyFrameError, type LegacySubscription } from "../wire/legacy.ts";
import type { Peer, Registry, Subscription } from "../hub/registry.ts";
import { type TopicName, topicName } from "../hub/topic.ts";
import { resolveHandle, resolveTopic } from "./topic_resolver.ts";
import type { Handle } from "../handles/handle.ts";
import { parseUnit, unitGrammarText } from "../config/unit.ts";
import { encoderFor } from "../wire/encoders.ts";
import { topicAllowed } from "../config/topic_pattern.ts";
import { utf8Length } from "../wire/utf8.ts";

/** What a connection needs from the rest of the server. */
export interface ConnectionContext {
  /** Limits and settings. */
  readonly config: Config;
  /** Topics and subscribers. */
  readonly registry: Registry;
  /** Handle names that exist. */
  readonly handles: ReadonlyMap<string, Handle>;
  /** Counters. */
  readonly metrics: Metrics;
  /** Logs. */
  readonly logger: Logger;
  /** Verifies tokens; absent when `auth.mode` is `none`. */
  readonly authenticator?: Authenticator;
}

/** Longest a timer may wait in one go (setTimeout's limit); later deadlines are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

let nextId = 1;

/** A WebSocket client of either protocol. */
export class Connection implements Peer {
  /** Process-unique id, for logs. */
  readonly id = nextId++;
  private mode: "undecided" | "v1" | "legacy";
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly outbox: SendBuffer;
  private closed = false;
  private warnedConfig = false;
  // Security state (docs/security.md): who this is, how fast it sends, and its deadlines.
  private principal: Principal | undefined;
  private readonly rate = new FrameRate();
  private refusedInARow = 0;
  /** Active while a dropped connection reads out the client's last frames before its close. */
  private readonly linger = new Linger();
  private verifying: unknown[] | undefined;
  private readonly timers = new Map<"first" | "auth" | "expiry", ReturnType<typeof setTimeout>>();

  /**
   * @param socket the upgraded WebSocket
   * @param context the server's shared parts
   * @param v1 whether the client offered the `gatecast.v1` subprotocol
   * @param remote the client's address, for logs
   * @param principal who the upgrade request's token named, when it carried one
   */
  constructor(
    private readonly socket: WebSocket,
    private readonly context: ConnectionContext,
    v1: boolean,
    private readonly remote: string,
    principal?: Principal,
  ) {
    this.mode = v1 ? "v1" : "undecided";
    this.outbox = new SendBuffer(socket, context.metrics);
    this.startTimers(principal);
    socket.onmessage = (event) => this.gate(event.data);
    // onclose can fire more than once; closing is idempotent. One handler serves both events and
    // the server's bookkeeping: every listener costs each connection a few hundred bytes.
    const gone = (event: Event) => {
      this.release();
      this.linger.end();
      this.onGone?.(event);
    };
    socket.onclose = gone;
    socket.onerror = gone;
  }

  /**
   * Called after the connection is released, on every `close` and `error` event of its socket;
   * like those events, it may come more than once.
   */
  onGone: ((event: Event) => void) | undefined;

  /** Number of topics held. */
  get subscriptionCount(): number {
    return this.subscriptions.size;
  }

  /** Implements {@link Peer.admit}: checks the send buffer before a frame. */
  admit(): "send" | "skip" | "dropped" {
    const pressure = this.sendPressure();
    if (pressure !== "over_soft") return pressure === "under_soft" ? "send" : "dropped";
    this.context.metrics.inc("gatecast_frames_held_back_total");
    return "skip";
  }

  /** Where the send buffer stands; a client over the hard limit (or the soft one for too long) is dropped here. */
  private sendPressure(): "under_soft" | "over_soft" | "dropped" {
    if (this.closed) return "dropped";
    if (this.socket.readyState === WebSocket.CLOSING || this.socket.readyState === WebSocket.CLOSED) {
      // Closed by Deno's keep-alive (or the peer) while frames were queued: its close event can
      // wait until the peer goes away, so stop serving it now.
      this.release();
      return "dropped";
    }
    const pressure = this.outbox.pressure(this.context.config);
    if (typeof pressure === "string") return pressure;
    this.drop(pressure.slow, CloseCode.SLOW_CONSUMER, "client is not reading its frames", {
      buffered: pressure.buffered,
    });
    return "dropped";
  }

  /**
   * Implements {@link Peer.revoke}: ends one subscription the server can no longer serve (its
   * database was removed from the configuration). A v1 client gets an `error` frame naming the
   * topic; a legacy client, which cannot read one, is closed with 1008.
   */
  revoke(subscription: Subscription, code: ErrorCode, message: string): void {
    const key = subscription.topic.name.key;
    if (this.subscriptions.get(key) !== subscription) return;
    this.subscriptions.delete(key);
    this.context.registry.unsubscribe(subscription);
    if (this.mode === "legacy") return this.drop("policy", CloseCode.POLICY_VIOLATION, message);
    this.send(errorFrame(code, message, undefined, key));
  }

  /** Implements {@link Peer.send}. */
  send(text: string, bytes?: number): void {
    if (this.closed || this.socket.readyState !== WebSocket.OPEN) return;
    this.outbox.send(text, bytes);
  }

  /** Closes the socket at once with a code and reason (ending a linger) and releases every subscription. */
  close(code: number, reason: string): void {
    this.linger.end();
    this.closeSocket(code, reason);
    this.release();
  }

  private closeSocket(code: number, reason: string): void {
    if (this.socket.readyState === WebSocket.OPEN || this.socket.readyState === WebSocket.CONNECTING) {
      try {
        this.socket.close(code, closeReason(reason));
      } catch {
        // already closing
      }
    }
  }

  /** Releases every subscription; safe to call more than once. */
  private release(): void {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.verifying = undefined;
    for (const subscription of this.subscriptions.values()) this.context.registry.unsubscribe(subscription);
    this.subscriptions.clear();
    this.context.logger.debug("connection closed", { conn: this.id, remote: this.remote });
  }

  private receive(data: unknown): void {
    if (this.closed) return;
    if (typeof data !== "string") {
      const size = data instanceof ArrayBuffer ? data.byteLength : data instanceof Blob ? data.size : 0;
      if (size > this.context.config.maxFrameBytes) return this.tooBig(size);
      return this.reject(
        new ProtocolError(ErrorCode.BAD_FRAME, "binary frames are not accepted; send UTF-8 JSON text frames"),
      );
    }
    // A string's UTF-8 length is at most three times its length: short frames need no count.
    if (data.length * 3 > this.context.config.maxFrameBytes) {
      const bytes = utf8Length(data);
      if (bytes > this.context.config.maxFrameBytes) return this.tooBig(bytes);
    }
    let frame: ClientFrame;
    try {
      frame = parseClientFrame(data);
    } catch (error) {
      if (error instanceof ProtocolError || error instanceof LegacyFrameError) return this.reject(error);
      throw error;
    }
    if (frame.type === "legacy") return this.legacySubscribe(frame.subscription);
    if (this.mode === "legacy") {
      return this.drop(
        "policy",
        CloseCode.POLICY_VIOLATION,
        "a legacy connection takes only seed subscriptions",
      );
    }
    this.mode = "v1";
    if (frame.type === "auth") return this.authenticate(frame.token, frame.id);
    if (!this.authenticated) {
      return this.reject(
        new ProtocolError(
          ErrorCode.UNAUTHENTICATED,
          'authenticate first: send {"type":"auth","token":"..."} or connect with a token',
          frame.id,
        ),
      );
    }
    if (frame.type === "ping") return this.send(pongFrame(frame.id));
    this.serveTopics(frame);
  }

  /**
   * Answers each topic of a `subscribe` or `unsubscribe` frame in order, as a frame of its own
   * would be answered. A batch's replies can be many, so the send buffer is checked before each.
   */
  private serveTopics(frame: TopicsFrame): void {
    for (const topic of frame.topics) {
      if (this.sendPressure() === "dropped") return;
      try {
        const [name, handle] = resolveTopic(this.context, topic, frame.id);
        if (frame.type === "subscribe") this.subscribe(name, handle, frame.id);
        else this.unsubscribe(name, frame.id);
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        this.reject(error, frame.batch ? topic as string : undefined);
      }
    }
  }

  /** Runs before any parsing: first-frame deadline, frame rate, and the queue kept while a token is verified. */
  private gate(data: unknown): void {
    if (this.linger.active) return this.linger.heard(); // read and ignored: see linger.ts
    if (this.closed) return;
    this.clearTimer("first");
    // The rate in force now, for the bucket and the close alike: a reload applies to both at once.
    const rate = this.context.config.maxFramesPerSecond;
    if (!this.rate.take(rate)) {
      // Over the rate the frame is dropped with an error; a client that goes on is closed.
      if (++this.refusedInARow > 2 * rate) {
        return this.drop("rate_limited", CloseCode.RATE_LIMITED, `over ${rate} frames per second`);
      }
      return this.reject(
        new ProtocolError(ErrorCode.RATE_LIMITED, `frame dropped: at most ${rate} frames per second`),
      );
    }
    this.refusedInARow = 0;
    if (this.verifying) this.verifying.push(data);
    else this.receive(data);
  }

  /** Whether frames other than `auth` may be served. */
  private get authenticated(): boolean {
    return !this.context.authenticator || this.principal !== undefined;
  }

  /** Whether the connection may read a topic. */
  private mayRead(name: TopicName): boolean {
    if (!this.context.authenticator) return true;
    if (this.principal && topicAllowed(this.principal.topics, name)) return true;
    return this.mode === "legacy" && topicAllowed(this.context.config.legacyAllow, name);
  }

  private startTimers(principal: Principal | undefined): void {
    this.setTimer("first", this.context.config.firstFrameTimeoutMs, () => {
      this.drop(
        "first_frame_timeout",
        CloseCode.FIRST_FRAME_TIMEOUT,
        `no frame within ${this.context.config.firstFrameTimeoutMs} ms`,
      );
    });
    if (principal) return this.accept(principal);
    if (!this.context.authenticator) return;
    this.setTimer("auth", this.context.config.auth.timeoutMs, () => {
      this.drop(
        "auth_timeout",
        CloseCode.AUTH_TIMEOUT,
        `not authenticated within ${this.context.config.auth.timeoutMs} ms`,
      );
    });
  }

  private setTimer(name: "first" | "auth" | "expiry", ms: number, fire: () => void): void {
    this.clearTimer(name);
    this.timers.set(
      name,
      setTimeout(() => {
        this.timers.delete(name);
        fire();
      }, Math.max(0, Math.min(ms, MAX_TIMER_MS))),
    );
  }

  private clearTimer(name: "first" | "auth" | "expiry"): void {
    clearTimeout(this.timers.get(name));
    this.timers.delete(name);
  }

  /**
   * Closes the connection for something the client did (or did not do), counted and logged by
   * `why`: its subscriptions end now, the close frame goes out once the client is quiet.
   */
  private drop(why: string, code: number, reason: string, fields: LogFields = {}): void {
    if (this.closed) return;
    this.context.metrics.inc("gatecast_clients_dropped_total", { reason: why });
    const slow = code === CloseCode.SLOW_CONSUMER;
    this.context.logger[slow ? "warn" : "info"]("dropping client", {
      conn: this.id,
      remote: this.remote,
      reason: why,
      closeCode: code,
      closeReason: reason,
      ...fields,
    });
    this.release();
    // Reads (and ignores) the client's frames until it has been quiet, then closes (linger.ts).
    this.linger.start(() => this.closeSocket(code, reason));
  }

  /** Verifies an `auth` frame's token; frames that arrive meanwhile wait in order. */
  private authenticate(token: string, id: FrameId | undefined): void {
    const authenticator = this.context.authenticator;
    if (!authenticator) return this.send(authenticatedFrame("anonymous", undefined, id));
    this.verifying = [];
    authenticator.verify(token).then(
      (principal) => {
        if (this.closed) return;
        this.accept(principal);
        this.send(authenticatedFrame(principal.subject, principal.expiresAt, id));
      },
      (error) => {
        if (this.closed) return;
        if (!(error instanceof AuthError)) {
          // A fault of ours, not of the token: refuse without taking the process down.
          this.context.logger.error("token verification failed", { conn: this.id, error: String(error) });
          error = new AuthError("the token could not be verified");
        }
        this.context.logger.info("token refused", {
          conn: this.id,
          remote: this.remote,
          reason: error.message,
        });
        if (!this.principal) {
          return this.drop("auth_failed", CloseCode.AUTH_FAILED, `authentication failed: ${error.message}`);
        }
        this.reject(new ProtocolError(ErrorCode.AUTH_FAILED, `token refused: ${error.message}`, id));
      },
    ).finally(() => {
      const queued = this.verifying ?? [];
      this.verifying = undefined;
      while (queued.length > 0 && !this.closed) {
        if (this.verifying) return void (this.verifying as unknown[]).push(...queued);
        this.receive(queued.shift());
      }
    });
  }

  /**
   * Takes a verified principal: arms its expiry and drops subscriptions it no longer grants
   * (a refresh keeps every subscription the new token still covers).
   */
  private accept(principal: Principal): void {
    this.principal = principal;
    this.clearTimer("auth");
    this.clearTimer("expiry");
    if (principal.expiresAt !== undefined) this.armExpiry(principal.expiresAt);
    for (const [key, subscription] of this.subscriptions) {
      if (this.mayRead(subscription.topic.name)) continue;
      this.subscriptions.delete(key);
      this.context.registry.unsubscribe(subscription);
      this.reject(
        new ProtocolError(ErrorCode.FORBIDDEN, `the new token does not grant '${key}'; unsubscribed`),
      );
    }
  }

  private armExpiry(expiresAt: number): void {
    this.setTimer("expiry", expiresAt - Date.now(), () => {
      if (Date.now() < expiresAt) return this.armExpiry(expiresAt);
      this.drop(
        "token_expired",
        CloseCode.TOKEN_EXPIRED,
        "token expired; send a fresh auth frame before expiry",
      );
    });
  }

  private tooBig(size: number): void {
    this.drop(
      "frame_too_big",
      CloseCode.MESSAGE_TOO_BIG,
      `frame of ${size} bytes is over the ${this.context.config.maxFrameBytes}-byte limit`,
    );
  }

  /** Answers a frame (or, with `topic`, one topic of a batch) that could not be accepted. */
  private reject(error: ProtocolError | LegacyFrameError, topic?: string): void {
    this.context.metrics.inc("gatecast_client_errors_total", {
      code: error instanceof ProtocolError ? error.code : "LEGACY",
    });
    if (this.mode === "legacy" || error instanceof LegacyFrameError) {
      // Old clients cannot read error frames: tell them with the close reason.
      return this.drop("policy", CloseCode.POLICY_VIOLATION, error.message);
    }
    this.send(errorFrame(error.code, error.message, error.id, topic));
  }

  /**
   * The subscription to a topic, made when the client may read it and has room for one more;
   * the same one when it already holds the topic. @throws {ProtocolError} FORBIDDEN or
   * TOO_MANY_SUBSCRIPTIONS
   */
  private hold(name: TopicName, handle: Handle, id: FrameId | undefined): Subscription {
    const legacy = this.mode === "legacy";
    if (!this.mayRead(name)) {
      throw new ProtocolError(
        ErrorCode.FORBIDDEN,
        legacy
          ? `forbidden: '${name.key}' needs a token (?token=) or legacy.allow`
          : `your token does not grant '${name.key}'`,
        id,
      );
    }
    let subscription = this.subscriptions.get(name.key);
    if (subscription) return subscription;
    const most = this.context.config.maxSubscriptionsPerConnection;
    if (this.subscriptions.size >= most) {
      throw new ProtocolError(
        ErrorCode.TOO_MANY_SUBSCRIPTIONS,
        `a connection may hold at most ${most} subscriptions`,
        id,
      );
    }
    subscription = this.context.registry.subscribe(
      name,
      this,
      encoderFor(legacy ? "legacy" : "v1", handle.frames),
    );
    this.subscriptions.set(name.key, subscription);
    return subscription;
  }

  /** Subscribes to one topic: `subscribed`, then its snapshot. @throws {ProtocolError} */
  private subscribe(name: TopicName, handle: Handle, id: FrameId | undefined): void {
    const subscription = this.hold(name, handle, id);
    this.send(ackFrame("subscribed", name.key, id));
    welcome(subscription);
  }

  /** Ends the subscription to one topic: `unsubscribed`. @throws {ProtocolError} NOT_SUBSCRIBED */
  private unsubscribe(name: TopicName, id: FrameId | undefined): void {
    const subscription = this.subscriptions.get(name.key);
    if (!subscription) {
      throw new ProtocolError(ErrorCode.NOT_SUBSCRIBED, `not subscribed to '${name.key}'`, id);
    }
    this.subscriptions.delete(name.key);
    this.context.registry.unsubscribe(subscription);
    this.send(ackFrame("unsubscribed", name.key, id));
  }

  /** A seed subscription; what v1 answers with an error frame closes a legacy client (1008). */
  private legacySubscribe(request: LegacySubscription): void {
    if (this.mode === "v1") {
      return this.reject(
        new ProtocolError(
          ErrorCode.MODE_MISMATCH,
          'seed-style subscriptions are not accepted on a v1 connection; send {"type":"subscribe",...}',
        ),
      );
    }
    this.mode = "legacy";
    this.clearTimer("auth"); // a legacy client's access is its query token or legacy.allow, checked in hold()
    if (request.sentConfig && !this.warnedConfig) {
      this.warnedConfig = true;
      this.context.logger.info("legacy client sent database settings in 'config'; ignored", {
        conn: this.id,
        remote: this.remote,
      });
    }
    try {
      const handle = resolveHandle(this.context, request.db, request.handle);
      const unit = parseUnit(handle.unitType, request.unit);
      if (unit === undefined) {
        throw new LegacyFrameError(
          `unit_id of handle '${handle.name}' must be ${unitGrammarText(handle.unitType)}`,
        );
      }
      const name = topicName(request.db, handle.name, unit);
      if (this.subscriptions.has(name.key)) return; // the seed's clients repeat themselves
      welcome(this.hold(name, handle, undefined));
    } catch (error) {
      if (error instanceof LegacyFrameError) return this.reject(error);
      if (error instanceof ProtocolError) return this.reject(error);
      throw error;
    }
  }
}
