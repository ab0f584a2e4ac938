/**
 * Protocol v1: the frames a client may send, the error codes it may get back, the close codes
 * the server uses, and the builders of the small server frames. Pure, no I/O.
 * `docs/protocol.md` is the prose version of this file; keep them in step.
 */

import {
  isLegacyShape,
  type LegacySubscription,
  parseJsonOrLegacyLiteral,
  parseLegacySubscription,
} from "./legacy.ts";
import { describe } from "../config/names.ts";

/** The subprotocol selected when a client offers it. */
export const SUBPROTOCOL = "gatecast.v1";

/** Error codes carried by `error` frames. */
export const ErrorCode = {
  /** The text frame is not JSON. */
  BAD_JSON: "BAD_JSON",
  /** JSON, but not a frame: not an object, a field of the wrong type, a bad `topics` list, or a binary frame. */
  BAD_FRAME: "BAD_FRAME",
  /** `type` names no frame type. */
  UNKNOWN_TYPE: "UNKNOWN_TYPE",
  /** The topic is not `<db>/<handle>/<unit_id>`. */
  BAD_TOPIC: "BAD_TOPIC",
  /** No database of that code is configured. */
  UNKNOWN_DB: "UNKNOWN_DB",
  /** No handle of that name exists. */
  UNKNOWN_HANDLE: "UNKNOWN_HANDLE",
  /** `unsubscribe` of a topic the connection does not hold. */
  NOT_SUBSCRIBED: "NOT_SUBSCRIBED",
  /** The connection holds the most subscriptions allowed. */
  TOO_MANY_SUBSCRIPTIONS: "TOO_MANY_SUBSCRIPTIONS",
  /** A legacy frame on a v1 connection or the reverse. */
  MODE_MISMATCH: "MODE_MISMATCH",
  /** A frame other than `auth` before the connection authenticated. */
  UNAUTHENTICATED: "UNAUTHENTICATED",
  /** An `auth` frame's token was refused (a refresh; before authentication the close is 4003). */
  AUTH_FAILED: "AUTH_FAILED",
  /** The topic is outside the patterns the token (or `legacy.allow`) grants. */
  FORBIDDEN: "FORBIDDEN",
  /** The client sent frames faster than `maxFramesPerSecond`; the frame was dropped. */
  RATE_LIMITED: "RATE_LIMITED",
  /** The topic's database was removed from the configuration (SIGHUP reload); the subscription ended. */
  DB_REMOVED: "DB_REMOVED",
} as const;

/** One of {@link ErrorCode}. */
export type ErrorCode = typeof ErrorCode[keyof typeof ErrorCode];

/** Close codes the server uses. */
export const CloseCode = {
  /** Server shutting down. */
  GOING_AWAY: 1001,
  /** Legacy subscription that cannot be served (unknown database or handle, bad frame). */
  POLICY_VIOLATION: 1008,
  /** A frame over the configured size limit. */
  MESSAGE_TOO_BIG: 1009,
  /** The client did not read its frames fast enough (send buffer over the hard limit, or over the soft one too long). */
  SLOW_CONSUMER: 4008,
  /** No frame within `firstFrameTimeoutMs` of connecting. */
  FIRST_FRAME_TIMEOUT: 4000,
  /** No valid token within `auth.timeoutMs` of connecting. */
  AUTH_TIMEOUT: 4001,
  /** The token of an `auth` frame on an unauthenticated connection was refused. */
  AUTH_FAILED: 4003,
  /** The token expired and no fresh `auth` frame came in time. */
  TOKEN_EXPIRED: 4004,
  /** The client went on sending after `RATE_LIMITED` errors (twice its rate in dropped frames). */
  RATE_LIMITED: 4029,
} as const;

/** A client frame that could not be accepted. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
  /**
   * @param code the error code sent to the client
   * @param message what was wrong and what is accepted
   * @param id the frame's `id`, when it had a valid one
   */
  constructor(readonly code: ErrorCode, message: string, readonly id?: FrameId) {
    super(message);
  }
}

/** A client-chosen request id, echoed in the reply: an integer or a string of at most 64 characters. */
export type FrameId = number | string;

/**
 * A `subscribe` or `unsubscribe` frame: the single form names one topic in `topic`, the batch form
 * a list in `topics`. Each topic is answered on its own, in order, as if it came in a frame of
 * its own; the batch is one frame for the rate limit.
 */
export interface TopicsFrame {
  /** What to do with each topic. */
  readonly type: "subscribe" | "unsubscribe";
  /** The frame's id, echoed in every answer. */
  readonly id?: FrameId;
  /** The topics in the order sent; unchecked (the single form's `topic` may be anything). */
  readonly topics: readonly unknown[];
  /**
   * Whether the frame used `topics`. A batch's answers share its id, so its per-topic errors name
   * their topic; the single form's errors stay as they always were, without one.
   */
  readonly batch: boolean;
}

/** A client frame, validated. Topics are checked later, against the configuration. */
export type ClientFrame =
  | TopicsFrame
  | { readonly type: "ping"; readonly id?: FrameId }
  | { readonly type: "auth"; readonly id?: FrameId; readonly token: string }
  | { readonly type: "legacy"; readonly subscription: LegacySubscription };

const CLIENT_TYPES = ["subscribe", "unsubscribe", "ping", "auth"];

/**
 * Parses one text frame from a client.
 *
 * @example
 * ```ts
 * parseClientFrame('{"type":"subscribe","id":1,"topic":"plant1/real/12"}');
 * // { type: "subscribe", id: 1, topics: ["plant1/real/12"], batch: false }
 * parseClientFrame('{"type":"subscribe","id":2,"topics":["plant1/real/1","plant1/real/2"]}');
 * // { type: "subscribe", id: 2, topics: ["plant1/real/1", "plant1/real/2"], batch: true }
 * ```
 * @throws {ProtocolError} with BAD_JSON, BAD_FRAME or UNKNOWN_TYPE; a legacy frame that cannot
 * be served throws {@link LegacyFrameError} from `legacy.ts`.
 */
export function parseClientFrame(text: string): ClientFrame {
  const parsed = parseJsonOrLegacyLiteral(text);
  if (!parsed) {
    throw new ProtocolError(ErrorCode.BAD_JSON, "frame is not valid JSON");
  }
  const frame = parsed.value;
  if (isLegacyShape(frame)) {
    return { type: "legacy", subscription: parseLegacySubscription(frame) };
  }
  if (typeof frame !== "object" || frame === null || Array.isArray(frame)) {
    throw new ProtocolError(ErrorCode.BAD_FRAME, `frame must be a JSON object, got ${describe(frame)}`);
  }
  const record = frame as Record<string, unknown>;
  const id = parseId(record.id);
  const type = record.type;
  if (typeof type !== "string") {
    throw new ProtocolError(ErrorCode.BAD_FRAME, `"type" must be a string, got ${describe(type)}`, id);
  }
  if (!CLIENT_TYPES.includes(type)) {
    throw new ProtocolError(
      ErrorCode.UNKNOWN_TYPE,
      `unknown type ${describe(type)}; expected one of ${CLIENT_TYPES.join(", ")}`,
      id,
    );
  }
  if (type === "ping") return { type, id };
  if (type === "auth") {
    if (typeof record.token !== "string" || record.token.length === 0) {
      throw new ProtocolError(
        ErrorCode.BAD_FRAME,
        `"token" must be a non-empty string, got ${describe(record.token)}`,
        id,
      );
    }
    return { type, id, token: record.token };
  }
  return parseTopics(type as TopicsFrame["type"], id, record);
}

/**
 * The topics of a `subscribe` or `unsubscribe` frame. The batch's shape is the frame's: a list
 * that is not a non-empty array of distinct strings refuses the whole frame, and nothing in it
 * is done. What each string names is checked per topic, later.
 */
function parseTopics(
  type: TopicsFrame["type"],
  id: FrameId | undefined,
  record: Record<string, unknown>,
): TopicsFrame {
  if (!Object.hasOwn(record, "topics")) return { type, id, topics: [record.topic], batch: false };
  const bad = (message: string) => new ProtocolError(ErrorCode.BAD_FRAME, message, id);
  if (Object.hasOwn(record, "topic")) {
    throw bad(`a ${type} frame names one "topic" or a list of "topics", not both`);
  }
  const topics = record.topics;
  if (!Array.isArray(topics)) {
    throw bad(`"topics" must be an array of topic strings, got ${describe(topics)}`);
  }
  if (topics.length === 0) throw bad(`"topics" must name at least one topic`);
  const seen = new Set<string>();
  for (const [i, topic] of topics.entries()) {
    if (typeof topic !== "string") throw bad(`"topics[${i}]" must be a topic string, got ${describe(topic)}`);
    if (seen.has(topic)) throw bad(`"topics" names ${describe(topic)} twice (at ${i}); name each topic once`);
    seen.add(topic);
  }
  return { type, id, topics, batch: true };
}

function parseId(id: unknown): FrameId | undefined {
  if (id === undefined) return undefined;
  if (typeof id === "number" && Number.isSafeInteger(id)) return id;
  if (typeof id === "string" && id.length <= 64) return id;
  throw new ProtocolError(
    ErrorCode.BAD_FRAME,
    `"id" must be an integer or a string of at most 64 characters, got ${describe(id)}`,
  );
}

/**
 * `{"type":"error",...}`, with a `topic` when the error is about one topic of a batch frame, or
 * names the subscription the server ended.
 */
export function errorFrame(code: ErrorCode, message: string, id?: FrameId, topic?: string): string {
  return JSON.stringify({ type: "error", id, code, message, topic });
}

/** `{"type":"subscribed"|"unsubscribed","id":..,"topic":..}` */
export function ackFrame(type: "subscribed" | "unsubscribed", topic: string, id?: FrameId): string {
  return JSON.stringify({ type, id, topic });
}

/** `{"type":"pong","id":..}` */
export function pongFrame(id?: FrameId): string {
  return JSON.stringify({ type: "pong", id });
}

/**
 * `{"type":"stale","topic":..,"epoch":..,"code":..,"message":..}`: the topic cannot be served now.
 * Codes: `SOURCE_UNAVAILABLE` (its database), `HANDLE_FAILED` (its handle's SQL or columns),
 * `TOO_MANY_ROWS` (its unit is over `maxRowsPerUnit`). `stale` takes no `seq`.
 */
export function staleFrame(
  topic: string,
  epoch: string,
  stale: { readonly code: string; readonly message: string },
): string {
  return JSON.stringify({ type: "stale", topic, epoch, code: stale.code, message: stale.message });
}

/** `{"type":"authenticated","id":..,"sub":..,"expiresAt":..}`: reply to an accepted `auth` frame. */
export function authenticatedFrame(subject: string, expiresAt: number | undefined, id?: FrameId): string {
  return JSON.stringify({ type: "authenticated", id, sub: subject, expiresAt: expiresAt ?? null });
}

/** The longest close reason WebSocket allows, in UTF-8 bytes. */
export const MAX_CLOSE_REASON_BYTES = 123;

/**
 * A close reason that `WebSocket.close` accepts: well-formed UTF-16 (lone surrogates, which a
 * client may have sent inside a value quoted in the reason, become U+FFFD) and at most
 * {@link MAX_CLOSE_REASON_BYTES} bytes of UTF-8, cut between characters.
 */
export function closeReason(text: string): string {
  const encoder = new TextEncoder();
  let reason = text.toWellFormed();
  while (encoder.encode(reason).length > MAX_CLOSE_REASON_BYTES) {
    reason = [...reason].slice(0, -1).join("");
  }
  return reason;
}
