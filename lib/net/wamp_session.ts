/**
 * One WAMP v2 session over a WebSocket (`wamp.2.json`), gatecast being its router with the
 * broker role only: HELLO → WELCOME (or CHALLENGE/AUTHENTICATE with WAMP-Ticket when tokens are
 * on), SUBSCRIBE/UNSUBSCRIBE to topic URIs with dots for slashes (`plant1.real.12`), EVENTs whose
 * one argument is the v1 frame (`lib/wire/wamp.ts`), GOODBYE. What a broker cannot do (PUBLISH,
 * CALL, REGISTER) is answered with ERROR, and a message that breaks the protocol with ABORT.
 *
 * The limits of `/ws` hold here too: the frame rate, the frame size, the subscription limit,
 * the first-frame and auth deadlines, and the send buffer guard (`send_buffer.ts`); a dropped
 * client lingers before its close (`linger.ts`).
 */

import { AuthError, type Principal } from "./auth.ts";
import type { ConnectionContext } from "./connection.ts";
import { FrameRate } from "./limits.ts";
import { Linger } from "./linger.ts";
import { SendBuffer } from "./send_buffer.ts";
import { resolveTopic } from "./topic_resolver.ts";
import { topicAllowed } from "../config/topic_pattern.ts";
import { welcome } from "../hub/fanout.ts";
import type { Peer, Subscription } from "../hub/registry.ts";
import type { LogFields } from "../ops/log.ts";
import { encoderFor } from "../wire/encoders.ts";
import { CloseCode, closeReason, ErrorCode, ProtocolError } from "../wire/protocol.ts";
import { utf8Length } from "../wire/utf8.ts";
import { subscriptionIdOf, WampCode } from "../wire/wamp.ts";

/** The error URI a subscriber gets for each reason a topic is refused. */
const TOPIC_ERRORS: Readonly<Record<string, string>> = {
  [ErrorCode.BAD_TOPIC]: "wamp.error.invalid_uri",
  [ErrorCode.UNKNOWN_DB]: "gatecast.error.unknown_db",
  [ErrorCode.UNKNOWN_HANDLE]: "gatecast.error.unknown_handle",
  [ErrorCode.FORBIDDEN]: "wamp.error.not_authorized",
  [ErrorCode.TOO_MANY_SUBSCRIPTIONS]: "gatecast.error.too_many_subscriptions",
};

/** What a broker-only router answers to the messages of roles it does not have. */
const REFUSED: Readonly<Record<number, readonly [string, string]>> = {
  [WampCode.PUBLISH]: [
    "wamp.error.not_authorized",
    "gatecast publishes its topics itself; clients only subscribe",
  ],
  [WampCode.CALL]: [
    "wamp.error.no_such_procedure",
    "gatecast is a broker only: it has no procedures to call",
  ],
  [WampCode.REGISTER]: [
    "wamp.error.not_authorized",
    "gatecast is a broker only: procedures cannot be registered",
  ],
  [WampCode.UNREGISTER]: [
    "wamp.error.no_such_registration",
    "gatecast is a broker only: nothing is registered",
  ],
};

/** The largest WAMP id (2^53). */
const MAX_ID = 2 ** 53;

/** Longest a timer may wait in one go (setTimeout's limit); later deadlines are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A message that breaks the WAMP protocol: the session is aborted with `wamp.error.protocol_violation`. */
export class WampViolation extends Error {
  override name = "WampViolation";
}

/** A WAMP message as read: its code and the rest of its array. */
export interface WampMessage {
  /** The message code (`1` HELLO, `32` SUBSCRIBE, …). */
  readonly code: number;
  /** The whole array. */
  readonly parts: readonly unknown[];
}

/**
 * Parses one `wamp.2.json` text frame: a JSON array whose first element is a message code.
 *
 * @example
 * ```ts
 * parseWampMessage('[32,1,{},"plant1.real.12"]'); // { code: 32, parts: [32, 1, {}, "plant1.real.12"] }
 * ```
 * @throws {WampViolation} naming what is wrong.
 */
export function parseWampMessage(text: string): WampMessage {
  let parts: unknown;
  try {
    parts = JSON.parse(text);
  } catch {
    throw new WampViolation("a message must be JSON (wamp.2.json)");
  }
  if (!Array.isArray(parts) || !Number.isInteger(parts[0])) {
    throw new WampViolation("a message must be a JSON array starting with its message code");
  }
  return { code: parts[0], parts };
}

/**
 * The v1 topic of a topic URI: its first two components are the database and the handle, the
 * rest (dots kept) the unit, so `plant1.real.12` is `plant1/real/12` and `plant1.alarms` is
 * `plant1/alarms`.
 *
 * @example
 * ```ts
 * topicOfUri("plant1.tanks.north"); // "plant1/tanks/north"
 * ```
 * @throws {ProtocolError} `BAD_TOPIC` when the URI has an empty component or fewer than two.
 */
export function topicOfUri(uri: unknown, id?: number): string {
  if (typeof uri !== "string" || !/^[^\s.#]+(\.[^\s.#]+)+$/.test(uri)) {
    throw new ProtocolError(
      ErrorCode.BAD_TOPIC,
      `topic ${JSON.stringify(uri)} is not a topic URI like plant1.real.12 or plant1.alarms`,
      id,
    );
  }
  const [db, handle, ...unit] = uri.split(".");
  return unit.length === 0 ? `${db}/${handle}` : `${db}/${handle}/${unit.join(".")}`;
}

/** A request id of a message: an integer from 1 to 2^53. @throws {WampViolation} */
function requestId(message: WampMessage): number {
  const id = message.parts[1];
  if (!Number.isInteger(id) || (id as number) < 1 || (id as number) > MAX_ID) {
    throw new WampViolation(`message ${message.code}: its request id must be an integer from 1 to 2^53`);
  }
  return id as number;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A random session id, 1 to 2^53, as WAMP asks. */
function sessionId(): number {
  const [high, low] = crypto.getRandomValues(new Uint32Array(2));
  return ((high & 0x1fffff) * 2 ** 32 + low) % MAX_ID + 1;
}

/** The WAMP peer of one WebSocket. */
export class WampSession implements Peer {
  private static nextId = 1;
  /** Process-unique id, for logs (negative: apart from the v1 connections' ids). */
  readonly id = -WampSession.nextId++;
  private state: "hello" | "challenged" | "verifying" | "established" = "hello";
  private session = 0;
  private principal: Principal | undefined;
  /** By topic key. */
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly outbox: SendBuffer;
  private readonly rate = new FrameRate();
  private readonly linger = new Linger();
  private refusedInARow = 0;
  private closed = false;
  private readonly timers = new Map<"first" | "auth" | "expiry", ReturnType<typeof setTimeout>>();

  /**
   * @param socket the upgraded WebSocket, its subprotocol `wamp.2.json`
   * @param context the server's shared parts
   * @param remote the client's address, for logs
   * @param principal who the upgrade request's token named, when it carried one
   */
  constructor(
    private readonly socket: WebSocket,
    private readonly context: ConnectionContext,
    private readonly remote: string,
    principal?: Principal,
  ) {
    this.principal = principal;
    this.outbox = new SendBuffer(socket, context.metrics);
    const { config } = context;
    this.setTimer("first", config.firstFrameTimeoutMs, () => {
      this.drop(
        "first_frame_timeout",
        CloseCode.FIRST_FRAME_TIMEOUT,
        `no HELLO within ${config.firstFrameTimeoutMs} ms`,
      );
    });
    if (context.authenticator && !principal) {
      this.setTimer("auth", config.auth.timeoutMs, () => {
        this.drop(
          "auth_timeout",
          CloseCode.AUTH_TIMEOUT,
          `not authenticated within ${config.auth.timeoutMs} ms`,
        );
      });
    }
    socket.onmessage = (event) => this.gate(event.data);
    // onclose can fire more than once; releasing is idempotent.
    const gone = (event: Event) => {
      this.release();
      this.linger.end();
      this.onGone?.(event);
    };
    socket.onclose = gone;
    socket.onerror = gone;
  }

  /** Called after the session is released, on every `close` and `error` event of its socket. */
  onGone: ((event: Event) => void) | undefined;

  /** Number of topics held. */
  get subscriptionCount(): number {
    return this.subscriptions.size;
  }

  /** Implements {@link Peer.admit}: checks the send buffer before a frame. */
  admit(): "send" | "skip" | "dropped" {
    if (this.closed) return "dropped";
    if (this.socket.readyState === WebSocket.CLOSING || this.socket.readyState === WebSocket.CLOSED) {
      this.release();
      return "dropped";
    }
    const pressure = this.outbox.pressure(this.context.config);
    if (pressure === "under_soft") return "send";
    if (pressure === "over_soft") {
      this.context.metrics.inc("gatecast_frames_held_back_total");
      return "skip";
    }
    this.drop(pressure.slow, CloseCode.SLOW_CONSUMER, "client is not reading its frames", {
      buffered: pressure.buffered,
    });
    return "dropped";
  }

  /** Implements {@link Peer.send}. */
  send(text: string, bytes?: number): void {
    if (this.closed || this.socket.readyState !== WebSocket.OPEN) return;
    this.outbox.send(text, bytes);
  }

  /**
   * Implements {@link Peer.revoke}: the router revokes the subscription (WAMP's subscription
   * revocation: `[35, 0, {"subscription": id, "reason": "gatecast.error.db_removed"}]`).
   */
  revoke(subscription: Subscription, _code: "DB_REMOVED", message: string): void {
    const key = subscription.topic.name.key;
    if (this.subscriptions.get(key) !== subscription) return;
    this.subscriptions.delete(key);
    this.context.registry.unsubscribe(subscription);
    this.sendMessage([WampCode.UNSUBSCRIBED, 0, {
      subscription: subscriptionIdOf(subscription.topic),
      reason: "gatecast.error.db_removed",
      message,
    }]);
  }

  /** Ends the session at once (server shutdown): GOODBYE, then the close. */
  close(code: number, reason: string): void {
    if (this.state === "established" && code === CloseCode.GOING_AWAY) {
      this.sendMessage([WampCode.GOODBYE, { message: reason }, "wamp.close.system_shutdown"]);
    }
    this.linger.end();
    this.closeSocket(code, reason);
    this.release();
  }

  private sendMessage(message: readonly unknown[]): void {
    this.send(JSON.stringify(message));
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

  private release(): void {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const subscription of this.subscriptions.values()) this.context.registry.unsubscribe(subscription);
    this.subscriptions.clear();
    this.context.logger.debug("wamp session closed", { conn: this.id, remote: this.remote });
  }

  /** Closes for something the client did: counted and logged by `why`, closed once the client is quiet. */
  private drop(why: string, code: number, reason: string, fields: LogFields = {}): void {
    if (this.closed) return;
    this.context.metrics.inc("gatecast_clients_dropped_total", { reason: why });
    this.context.logger[code === CloseCode.SLOW_CONSUMER ? "warn" : "info"]("dropping client", {
      conn: this.id,
      remote: this.remote,
      wamp: true,
      reason: why,
      closeCode: code,
      closeReason: reason,
      ...fields,
    });
    this.release();
    this.linger.start(() => this.closeSocket(code, reason));
  }

  /** Sends ABORT and closes: the session cannot go on. */
  private abort(uri: string, message: string): void {
    this.context.metrics.inc("gatecast_client_errors_total", { code: uri });
    this.sendMessage([WampCode.ABORT, { message }, uri]);
    this.drop("wamp_abort", 1000, uri);
  }

  private setTimer(name: "first" | "auth" | "expiry", ms: number, fire: () => void): void {
    clearTimeout(this.timers.get(name));
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

  /** Runs before any parsing: the linger, the first-frame deadline, the frame rate and size. */
  private gate(data: unknown): void {
    if (this.linger.active) return this.linger.heard();
    if (this.closed) return;
    this.clearTimer("first");
    const { maxFramesPerSecond: rate, maxFrameBytes } = this.context.config;
    const size = typeof data === "string"
      ? (data.length * 3 > maxFrameBytes ? utf8Length(data) : 0)
      : data instanceof ArrayBuffer
      ? data.byteLength
      : data instanceof Blob
      ? data.size
      : 0;
    if (size > maxFrameBytes) {
      return this.drop(
        "frame_too_big",
        CloseCode.MESSAGE_TOO_BIG,
        `frame of ${size} bytes is over the ${maxFrameBytes}-byte limit`,
      );
    }
    if (!this.rate.take(rate)) {
      if (++this.refusedInARow > 2 * rate) {
        return this.drop("rate_limited", CloseCode.RATE_LIMITED, `over ${rate} frames per second`);
      }
      return this.refuseOverRate(data, rate);
    }
    this.refusedInARow = 0;
    if (typeof data !== "string") {
      return this.abort(
        "wamp.error.protocol_violation",
        "binary frames are not accepted: this is wamp.2.json",
      );
    }
    try {
      this.receive(parseWampMessage(data));
    } catch (error) {
      if (error instanceof WampViolation) return this.abort("wamp.error.protocol_violation", error.message);
      throw error;
    }
  }

  /** A request over the rate gets an ERROR, so that its caller is not left waiting. */
  private refuseOverRate(data: unknown, rate: number): void {
    this.context.metrics.inc("gatecast_client_errors_total", { code: ErrorCode.RATE_LIMITED });
    if (typeof data !== "string" || this.state !== "established") return;
    try {
      const message = parseWampMessage(data);
      if (message.code === WampCode.GOODBYE) return;
      this.sendError(
        message.code,
        requestId(message),
        "gatecast.error.rate_limited",
        `frame dropped: at most ${rate} frames per second`,
      );
    } catch {
      // not a request: nothing to answer
    }
  }

  private receive(message: WampMessage): void {
    switch (this.state) {
      case "hello":
        if (message.code !== WampCode.HELLO) {
          throw new WampViolation(`expected HELLO (1), got message ${message.code}`);
        }
        return this.hello(message.parts);
      case "challenged":
        if (message.code !== WampCode.AUTHENTICATE) {
          throw new WampViolation(`expected AUTHENTICATE (5), got message ${message.code}`);
        }
        return this.authenticate(message.parts);
      case "verifying":
        throw new WampViolation(`message ${message.code} before WELCOME`);
      case "established":
        return this.serve(message);
    }
  }

  /** HELLO: the realm must be the configured one; then WELCOME, or CHALLENGE for a ticket. */
  private hello(parts: readonly unknown[]): void {
    const [, realm, details] = parts;
    if (typeof realm !== "string" || !isObject(details)) {
      throw new WampViolation("HELLO must be [1, realm, details]");
    }
    const expected = this.context.config.wampRealm;
    if (realm !== expected) {
      return this.abort("wamp.error.no_such_realm", `no realm '${realm}'; this router serves '${expected}'`);
    }
    if (!this.context.authenticator || this.principal) {
      return this.welcome(this.principal ? "token" : undefined);
    }
    const methods = details.authmethods;
    if (!Array.isArray(methods) || !methods.includes("ticket")) {
      return this.abort(
        "wamp.error.no_auth_method",
        'authentication is required: offer authmethods ["ticket"] with your JWT or API key as the ticket',
      );
    }
    this.state = "challenged";
    this.sendMessage([WampCode.CHALLENGE, "ticket", {}]);
  }

  /** AUTHENTICATE: the ticket is a JWT or an API key, verified as a `/ws` token is. */
  private authenticate(parts: readonly unknown[]): void {
    const [, ticket, extra] = parts;
    if (typeof ticket !== "string" || !isObject(extra)) {
      throw new WampViolation("AUTHENTICATE must be [5, ticket, extra]");
    }
    this.state = "verifying";
    this.context.authenticator!.verify(ticket).then(
      (principal) => {
        if (this.closed) return;
        this.principal = principal;
        this.welcome("ticket");
      },
      (error) => {
        if (this.closed) return;
        if (!(error instanceof AuthError)) {
          this.context.logger.error("token verification failed", { conn: this.id, error: String(error) });
          error = new AuthError("the token could not be verified");
        }
        this.context.logger.info("token refused", {
          conn: this.id,
          remote: this.remote,
          reason: error.message,
        });
        this.abort("wamp.error.authentication_failed", `authentication failed: ${error.message}`);
      },
    );
  }

  private welcome(authmethod: "ticket" | "token" | undefined): void {
    this.state = "established";
    this.session = sessionId();
    this.clearTimer("auth");
    const details: Record<string, unknown> = { roles: { broker: { features: {} } } };
    if (this.principal && authmethod) {
      Object.assign(details, { authid: this.principal.subject, authrole: "user", authmethod });
      if (this.principal.expiresAt !== undefined) this.armExpiry(this.principal.expiresAt);
    }
    this.sendMessage([WampCode.WELCOME, this.session, details]);
  }

  private armExpiry(expiresAt: number): void {
    this.setTimer("expiry", expiresAt - Date.now(), () => {
      if (Date.now() < expiresAt) return this.armExpiry(expiresAt);
      this.sendMessage([WampCode.GOODBYE, { message: "token expired" }, "gatecast.close.token_expired"]);
      this.drop("token_expired", CloseCode.TOKEN_EXPIRED, "token expired; connect again with a fresh ticket");
    });
  }

  /** The messages of an established session. */
  private serve(message: WampMessage): void {
    const { code, parts } = message;
    switch (code) {
      case WampCode.SUBSCRIBE:
        return this.subscribe(requestId(message), parts[2], parts[3]);
      case WampCode.UNSUBSCRIBE:
        return this.unsubscribe(requestId(message), parts[2]);
      case WampCode.GOODBYE:
        this.sendMessage([WampCode.GOODBYE, {}, "wamp.close.goodbye_and_out"]);
        this.release();
        return this.linger.start(() => this.closeSocket(1000, "wamp.close.goodbye_and_out"));
      default: {
        const refused = REFUSED[code];
        if (!refused) throw new WampViolation(`message ${code} is not accepted by a broker-only router`);
        this.context.metrics.inc("gatecast_client_errors_total", { code: refused[0] });
        return this.sendError(code, requestId(message), refused[0], refused[1]);
      }
    }
  }

  private sendError(type: number, request: number, uri: string, message: string): void {
    this.sendMessage([WampCode.ERROR, type, request, {}, uri, [message]]);
  }

  /** SUBSCRIBE: SUBSCRIBED with the topic's subscription id, then its snapshot as an EVENT. */
  private subscribe(request: number, options: unknown, uri: unknown): void {
    if (!isObject(options)) throw new WampViolation("SUBSCRIBE must be [32, request, options, topic]");
    if (options.match !== undefined && options.match !== "exact") {
      return this.sendError(
        WampCode.SUBSCRIBE,
        request,
        "wamp.error.invalid_argument",
        `match ${JSON.stringify(options.match)} is not supported; topics match exactly`,
      );
    }
    let subscription: Subscription;
    try {
      subscription = this.hold(topicOfUri(uri, request), request);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      this.context.metrics.inc("gatecast_client_errors_total", { code: error.code });
      return this.sendError(WampCode.SUBSCRIBE, request, TOPIC_ERRORS[error.code], error.message);
    }
    this.sendMessage([WampCode.SUBSCRIBED, request, subscriptionIdOf(subscription.topic)]);
    welcome(subscription);
  }

  /** The subscription to a topic, as `/ws` checks it. @throws {ProtocolError} */
  private hold(topic: string, request: number): Subscription {
    const [name, handle] = resolveTopic(this.context, topic, request);
    if (this.context.authenticator && !(this.principal && topicAllowed(this.principal.topics, name))) {
      throw new ProtocolError(ErrorCode.FORBIDDEN, `your token does not grant '${name.key}'`, request);
    }
    let subscription = this.subscriptions.get(name.key);
    if (subscription) return subscription;
    const most = this.context.config.maxSubscriptionsPerConnection;
    if (this.subscriptions.size >= most) {
      throw new ProtocolError(
        ErrorCode.TOO_MANY_SUBSCRIPTIONS,
        `a connection may hold at most ${most} subscriptions`,
        request,
      );
    }
    subscription = this.context.registry.subscribe(name, this, encoderFor("wamp", handle.frames));
    this.subscriptions.set(name.key, subscription);
    return subscription;
  }

  /** UNSUBSCRIBE by subscription id: UNSUBSCRIBED, or ERROR `wamp.error.no_such_subscription`. */
  private unsubscribe(request: number, id: unknown): void {
    for (const [key, subscription] of this.subscriptions) {
      if (subscriptionIdOf(subscription.topic) !== id) continue;
      this.subscriptions.delete(key);
      this.context.registry.unsubscribe(subscription);
      return this.sendMessage([WampCode.UNSUBSCRIBED, request]);
    }
    this.sendError(
      WampCode.UNSUBSCRIBE,
      request,
      "wamp.error.no_such_subscription",
      `no subscription ${JSON.stringify(id)} on this session`,
    );
  }
}
