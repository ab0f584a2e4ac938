/**
 * `POST /notify`: an application that has just written to the database says which topics
 * changed, and their (database, handle) groups are polled now instead of at the next tick. The
 * poll stays the source of truth: a notify carries no data, it only moves a poll forward.
 *
 * Coalescing is the poller's: `pollNow` starts an idle group's poll at once and folds every ask
 * that comes while it runs into ONE more poll after it, so a flood of notifies costs at most one
 * extra poll per group per poll duration. A group nobody subscribes to is not polled (`idle`).
 *
 * Who may notify (docs/security.md): with `auth.mode` `token`, a `Bearer` token whose `notify`
 * patterns cover every named topic; without tokens, clients on loopback or in `trustedProxies`,
 * unless `notifyFrom` is `any`. Everything is checked before anything is polled: one bad topic
 * refuses the whole request.
 */

import type { Config } from "../config/config.ts";
import { topicAllowed, type TopicPattern } from "../config/topic_pattern.ts";
import type { UnitType } from "../config/unit.ts";
import { describe } from "../config/names.ts";
import type { Poller } from "../hub/poller.ts";
import { groupKey, type Registry } from "../hub/registry.ts";
import type { TopicName } from "../hub/topic.ts";
import type { Logger } from "../ops/log.ts";
import type { Metrics } from "../ops/metrics.ts";
import { ErrorCode, ProtocolError } from "../wire/protocol.ts";
import { type Authenticator, AuthError, bearerToken, type Principal } from "./auth.ts";
import { originAllowed, type ProxySet } from "./handshake.ts";
import { resolveHandle, resolveTopic, type TopicDirectory } from "./topic_resolver.ts";

/** What the endpoint needs from the rest of the server. */
export interface NotifyContext extends TopicDirectory {
  /** The configuration in force (`notifyFrom`, `maxFrameBytes`, `allowedOrigins`). */
  readonly config: Config;
  /** Which topics have subscribers. */
  readonly registry: Registry;
  /** Polls a group now, or once more right after its running poll. */
  readonly poller: Pick<Poller, "pollNow" | "forward">;
  /** Where notifies are counted. */
  readonly metrics: Metrics;
  /** Where notifies are logged (debug). */
  readonly logger: Logger;
  /** Verifies tokens; absent when `auth.mode` is `none`. */
  readonly authenticator?: Authenticator;
  /** Proxies whose `X-Forwarded-For` is believed: with auth off they may notify too. */
  readonly proxies: ProxySet;
  /** False once shutdown began: notifies get 503. */
  readonly accepting: boolean;
}

/** The answer to an accepted notify (202). */
export interface NotifyResult {
  /** Groups (`db/handle`) polled now, or right after the poll running now. */
  readonly scheduled: string[];
  /** Groups named whose topics have no subscriber: nothing to poll. */
  readonly idle: string[];
}

/** What a notify names: a list of topics, or every topic of one group. */
export type NotifyTarget =
  | { readonly topics: readonly unknown[] }
  | { readonly db: string; readonly handle: string };

/** The codes of refused notifies, in the JSON body's `code` beside its `error`. */
export type NotifyCode =
  | typeof ErrorCode.BAD_JSON
  | typeof ErrorCode.BAD_TOPIC
  | typeof ErrorCode.UNKNOWN_DB
  | typeof ErrorCode.UNKNOWN_HANDLE
  | typeof ErrorCode.UNAUTHENTICATED
  | typeof ErrorCode.AUTH_FAILED
  | typeof ErrorCode.FORBIDDEN
  | "BAD_BODY"
  | "TOO_BIG"
  | "METHOD_NOT_ALLOWED"
  | "UNSUPPORTED_MEDIA_TYPE"
  | "SHUTTING_DOWN";

/** A notify that is refused: its HTTP status, a code and a message naming the field at fault. */
export class NotifyError extends Error {
  override name = "NotifyError";
  /**
   * @param status the HTTP status
   * @param code the body's `code`
   * @param message the body's `error`
   */
  constructor(readonly status: number, readonly code: NotifyCode, message: string) {
    super(message);
  }
}

/** The `result` label of `gatecast_notifies_total` for each status. */
const RESULTS: Readonly<Record<number, string>> = {
  202: "scheduled",
  400: "bad_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  413: "too_large",
  415: "unsupported_media_type",
  503: "shutting_down",
};

const BODY_SHAPE = '{"topics":["plant1/tanks/north", …]} or {"db":"plant1","handle":"tanks"}';

/**
 * Reads a notify's parsed JSON body.
 *
 * @example
 * ```ts
 * parseNotifyBody({ db: "plant1", handle: "tanks" }); // { db: "plant1", handle: "tanks" }
 * ```
 * @throws {NotifyError} 400 `BAD_BODY` naming the field at fault.
 */
export function parseNotifyBody(body: unknown): NotifyTarget {
  const bad = (message: string) => new NotifyError(400, "BAD_BODY", message);
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw bad(`the body must be a JSON object, ${BODY_SHAPE}; got ${describe(body)}`);
  }
  const record = body as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (key !== "topics" && key !== "db" && key !== "handle") {
      throw bad(`${key}: unknown key; accepted keys are topics, or db and handle`);
    }
  }
  if (record.topics !== undefined) {
    if (record.db !== undefined || record.handle !== undefined) {
      throw bad(
        `${record.db !== undefined ? "db" : "handle"}: give either topics, or db and handle, not both`,
      );
    }
    if (!Array.isArray(record.topics) || record.topics.length === 0) {
      throw bad(`topics: expected a non-empty array of topic strings, got ${describe(record.topics)}`);
    }
    return { topics: record.topics };
  }
  if (record.db === undefined && record.handle === undefined) throw bad(`the body must be ${BODY_SHAPE}`);
  for (const key of ["db", "handle"] as const) {
    if (record[key] === undefined) throw bad(`${key}: is required with ${key === "db" ? "handle" : "db"}`);
    if (typeof record[key] !== "string" || record[key] === "") {
      throw bad(`${key}: expected a non-empty string, got ${describe(record[key])}`);
    }
  }
  return { db: record.db as string, handle: record.handle as string };
}

/** One group a notify names, with the topics it names in it (`undefined`: all of them). */
export interface NamedGroup {
  /** Database code. */
  readonly db: string;
  /** Handle name. */
  readonly handle: string;
  /** The handle's unit grammar. */
  readonly unitType: UnitType;
  /** The named topics of the group; `undefined` when the request named the whole group. */
  readonly topics: TopicName[] | undefined;
}

/**
 * The groups a notify names, by group key, in the order named; the topics are resolved as a
 * `subscribe` frame's are (`topic_resolver.ts`).
 *
 * @throws {NotifyError} 400 `BAD_TOPIC`, 404 `UNKNOWN_DB` or `UNKNOWN_HANDLE`, naming the field.
 */
export function namedGroups(directory: TopicDirectory, target: NotifyTarget): Map<string, NamedGroup> {
  const groups = new Map<string, NamedGroup>();
  if (!("topics" in target)) {
    const handle = refusedAs("db", () => resolveHandle(directory, target.db, target.handle));
    groups.set(groupKey(target), { ...target, unitType: handle.unitType, topics: undefined });
    return groups;
  }
  target.topics.forEach((topic, i) => {
    const [name, handle] = refusedAs(`topics[${i}]`, () => resolveTopic(directory, topic));
    const key = groupKey(name);
    let group = groups.get(key);
    if (!group) {
      group = { db: name.db, handle: name.handle, unitType: handle.unitType, topics: [] };
      groups.set(key, group);
    }
    group.topics!.push(name);
  });
  return groups;
}

/** Runs a resolution, turning its protocol error into the notify's, prefixed by the field. */
function refusedAs<T>(field: string, resolve: () => T): T {
  try {
    return resolve();
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    // An unknown handle is the `handle` field's fault when the group was named by its parts.
    const at = field === "db" && error.code === ErrorCode.UNKNOWN_HANDLE ? "handle" : field;
    const status = error.code === ErrorCode.BAD_TOPIC ? 400 : 404;
    throw new NotifyError(status, error.code as NotifyCode, `${at}: ${error.message}`);
  }
}

/**
 * True when the patterns cover every topic of a group, as `db/handle/*` does (or `db/handle`
 * for a handle without units).
 *
 * @example
 * ```ts
 * groupCovered([parseTopicPattern("plant1/tanks/*")], "plant1", "tanks", "string"); // true
 * ```
 */
export function groupCovered(
  patterns: readonly TopicPattern[],
  db: string,
  handle: string,
  unitType: UnitType,
): boolean {
  return patterns.some((p) =>
    (p.db === undefined || p.db === db) &&
    (p.handle === undefined || p.handle === handle) &&
    (p.unit === undefined || (unitType === "none" && p.unit === null))
  );
}

/** Refuses the request unless the principal's notify patterns cover everything it names. @throws {NotifyError} 403 */
function authorize(principal: Principal, groups: Map<string, NamedGroup>): void {
  for (const [key, group] of groups) {
    if (group.topics === undefined) {
      if (groupCovered(principal.notify, group.db, group.handle, group.unitType)) continue;
      const all = group.unitType === "none" ? key : `${key}/*`;
      throw new NotifyError(403, ErrorCode.FORBIDDEN, `your token does not grant notify for '${all}'`);
    }
    for (const name of group.topics) {
      if (topicAllowed(principal.notify, name)) continue;
      throw new NotifyError(403, ErrorCode.FORBIDDEN, `your token does not grant notify for '${name.key}'`);
    }
  }
}

/**
 * Hands each named group with subscribers to the poller. A group is idle when none of the topics
 * named in it has a subscriber (a change nobody watches costs no query).
 */
function schedule(context: NotifyContext, groups: Map<string, NamedGroup>): NotifyResult {
  const result: NotifyResult = { scheduled: [], idle: [] };
  for (const [key, named] of groups) {
    const group = context.registry.group(key);
    const watched = group !== undefined &&
      (named.topics === undefined || named.topics.some((name) => context.registry.topic(name.key)));
    if (!watched) {
      // No subscriber here: in a cluster, the node that polls the group may have some.
      if (context.poller.forward(key)) {
        context.metrics.inc("gatecast_notified_groups_total", {
          db: named.db,
          handle: named.handle,
          answer: "forwarded",
        });
        result.scheduled.push(key);
      } else result.idle.push(key);
      continue;
    }
    const answer = context.poller.pollNow(group);
    context.metrics.inc("gatecast_notified_groups_total", { db: named.db, handle: named.handle, answer });
    result.scheduled.push(key);
  }
  return result;
}

/** True for an address only this machine can have. */
function isLoopbackAddress(address: string): boolean {
  return /^127\./.test(address) || address === "::1" || /^::ffff:127\./i.test(address);
}

/** Refuses a caller that may not notify at all: no or a bad token, or not local. @throws {NotifyError} */
async function admitCaller(
  request: Request,
  remote: string,
  context: NotifyContext,
): Promise<Principal | undefined> {
  if (
    !originAllowed(request.headers.get("origin"), request.headers.get("host"), context.config.allowedOrigins)
  ) {
    throw new NotifyError(403, ErrorCode.FORBIDDEN, "origin not allowed; see allowedOrigins");
  }
  const authenticator = context.authenticator;
  if (!authenticator) {
    if (context.config.notifyFrom === "any" || isLoopbackAddress(remote) || context.proxies.has(remote)) {
      return undefined;
    }
    throw new NotifyError(
      403,
      ErrorCode.FORBIDDEN,
      `notify is accepted only from loopback and trustedProxies while auth is off (notifyFrom "local"); ${remote} is neither`,
    );
  }
  const token = bearerToken(request);
  if (token === undefined) {
    // A query string ends up in access logs: a token there is not taken.
    const query = new URL(request.url).searchParams.has("token") ? " (?token= is not accepted here)" : "";
    throw new NotifyError(
      401,
      ErrorCode.UNAUTHENTICATED,
      `send a token as Authorization: Bearer <token>${query}`,
    );
  }
  try {
    return await authenticator.verify(token);
  } catch (error) {
    if (error instanceof AuthError) {
      throw new NotifyError(401, ErrorCode.AUTH_FAILED, `authentication failed: ${error.message}`);
    }
    throw error;
  }
}

/** The body's text, refused over `limit` bytes before more is read. @throws {NotifyError} 413 or 400 */
async function readBody(request: Request, limit: number): Promise<string> {
  const tooBig = () =>
    new NotifyError(413, "TOO_BIG", `the body is over the ${limit}-byte limit (maxFrameBytes)`);
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) throw tooBig();
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body) {
    const reader = request.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel().catch(() => {});
        throw tooBig();
      }
      chunks.push(value);
    }
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new NotifyError(400, ErrorCode.BAD_JSON, "the body is not UTF-8 text");
  }
}

/** Every check of a notify in order, then the polls. @throws {NotifyError} */
async function accept(request: Request, remote: string, context: NotifyContext): Promise<NotifyResult> {
  if (request.method !== "POST") {
    throw new NotifyError(405, "METHOD_NOT_ALLOWED", `${request.method} is not allowed on /notify; use POST`);
  }
  if (!context.accepting) throw new NotifyError(503, "SHUTTING_DOWN", "the server is shutting down");
  // Who asks is settled before the body is read: a refused caller costs no parsing.
  const principal = await admitCaller(request, remote, context);
  // A browser can send a simple cross-site POST (text/plain) without asking first; JSON it cannot.
  if (!/^application\/json\s*(;|$)/i.test(request.headers.get("content-type") ?? "")) {
    throw new NotifyError(415, "UNSUPPORTED_MEDIA_TYPE", "send the body with Content-Type: application/json");
  }
  const text = await readBody(request, context.config.maxFrameBytes);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new NotifyError(400, ErrorCode.BAD_JSON, `the body is not valid JSON; send ${BODY_SHAPE}`);
  }
  const groups = namedGroups(context, parseNotifyBody(body));
  if (principal) authorize(principal, groups);
  return schedule(context, groups);
}

/**
 * Answers `POST /notify` (any method reaches it, to be told 405): 202 with what was scheduled,
 * else the status and `{"error": …, "code": …}` of the first check that failed.
 *
 * @example
 * ```ts
 * if (url.pathname === "/notify") return await notifyResponse(request, remote, context);
 * ```
 */
export async function notifyResponse(
  request: Request,
  remote: string,
  context: NotifyContext,
): Promise<Response> {
  let status = 202;
  let body: unknown;
  try {
    const result = await accept(request, remote, context);
    body = result;
    context.logger.debug("notify", {
      remote,
      scheduled: result.scheduled.join(","),
      idle: result.idle.join(","),
    });
  } catch (error) {
    if (!(error instanceof NotifyError)) throw error;
    status = error.status;
    body = { error: error.message, code: error.code };
    context.logger.debug("notify refused", { remote, status, error: error.message });
  }
  context.metrics.inc("gatecast_notifies_total", { result: RESULTS[status] });
  const response = new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json" },
  });
  if (status === 405) response.headers.set("allow", "POST");
  if (status === 401) response.headers.set("www-authenticate", "Bearer");
  return response;
}
