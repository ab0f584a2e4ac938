/**
 * HTTP routes on `Deno.serve`: WebSocket upgrades on `/ws` and `/`, Server-Sent Events on
 * `GET /sse` (`sse_peer.ts`), `/healthz`, `/metrics`, `POST /notify` (`notify.ts`) and the
 * dashboard at `/` (`dashboard.ts`). Upgraded sockets are handed to a {@link Connection}, or a
 * {@link WampSession} when the client offers `wamp.2.json` (and not `gatecast.v1`); every
 * kind of client passes the same door (origin, connection limits, token).
 *
 * The `Sec-WebSocket-Protocol` header is parsed here, not by `Deno.upgradeWebSocket`, which
 * splits it only on ", " and throws for "a,b" (as Node's `ws` sends it).
 */

import { AuthError, type Principal, requestToken } from "./auth.ts";
import { Connection, type ConnectionContext } from "./connection.ts";
import { dashboardResponse } from "./dashboard.ts";
import { clientAddress, originAllowed, type ProxySet } from "./handshake.ts";
import type { AddressCounter } from "./limits.ts";
import { isNoPongClose, keepAliveOptions } from "./keepalive.ts";
import { notifyResponse } from "./notify.ts";
import type { Poller } from "../hub/poller.ts";
import { ErrorCode, ProtocolError, SUBPROTOCOL } from "../wire/protocol.ts";
import { SsePeer } from "./sse_peer.ts";
import { resolveTopic } from "./topic_resolver.ts";
import { topicAllowed } from "../config/topic_pattern.ts";
import type { TopicName } from "../hub/topic.ts";
import type { Handle } from "../handles/handle.ts";
import type { RefusalLog } from "./refusal_log.ts";
import { WampSession } from "./wamp_session.ts";
import { WAMP_SUBPROTOCOL } from "../wire/wamp.ts";

/** What the routes need besides the connection context. */
export interface RouteContext extends ConnectionContext {
  /** Open connections and event streams; the server adds and removes them. */
  readonly connections: Set<Connection | SsePeer | WampSession>;
  /** The `/catalog` body: each database's handles. */
  catalog(): unknown;
  /** The `/healthz` body and whether it is healthy. */
  health(): { healthy: boolean; body: unknown };
  /** Proxies whose `X-Forwarded-For` is believed. */
  readonly proxies: ProxySet;
  /** Open connections per client address. */
  readonly addresses: AddressCounter;
  /** Most connections open at once: `maxConnections`, kept below the open-file limit. */
  readonly connectionCap: number;
  /** False once shutdown began: upgrades get 503. */
  readonly accepting: boolean;
  /** Logs refused upgrades, the first of a burst at once and then a summary per interval. */
  readonly refusals: RefusalLog;
  /** Polls a group now, for `POST /notify`. */
  readonly poller: Pick<Poller, "pollNow" | "forward">;
}

/** The routes' handler for `Deno.serve`, and the count of requests it is answering. */
export interface Routes {
  /** The handler to pass to `Deno.serve`. */
  readonly handler: (request: Request, info: Deno.ServeHandlerInfo) => Promise<Response>;
  /** Requests whose answer is not ready yet (an upgrade until it is answered). */
  readonly inFlight: number;
}

/** Seconds a client refused for capacity is told to wait (`Retry-After`). */
export const RETRY_AFTER_SECONDS = 5;

/** The subprotocols a client offered, however the header separates them. */
export function offeredProtocols(header: string | null): string[] {
  return header ? header.split(",").map((p) => p.trim()).filter((p) => p.length > 0) : [];
}

/**
 * Builds the request handler for `Deno.serve`; it counts the requests it is answering, so that
 * connections held without a request can be told apart (`descriptors.ts`).
 *
 * @example
 * ```ts
 * const routes = createRoutes(context);
 * Deno.serve({ port: 4053 }, routes.handler);
 * ```
 */
export function createRoutes(context: RouteContext): Routes {
  let inFlight = 0;
  return {
    async handler(request, info) {
      inFlight++;
      try {
        return await route(request, info, context);
      } finally {
        inFlight--;
      }
    },
    get inFlight() {
      return inFlight;
    },
  };
}

function route(
  request: Request,
  info: Deno.ServeHandlerInfo,
  context: RouteContext,
): Response | Promise<Response> {
  const url = new URL(request.url);
  const peer = (info.remoteAddr as Deno.NetAddr).hostname ?? "unknown";
  const remote = clientAddress(peer, request.headers.get("x-forwarded-for"), context.proxies);
  if (request.headers.get("upgrade")?.toLowerCase() === "websocket") {
    if (url.pathname !== "/ws" && url.pathname !== "/") {
      return json(404, { error: `no WebSocket endpoint at ${url.pathname}; use /ws` });
    }
    return admit(request, url, context, remote);
  }
  // Every method reaches it, so that a GET is told to POST.
  if (url.pathname === "/notify") return notifyResponse(request, remote, context);
  if (request.method !== "GET" && request.method !== "HEAD") {
    return json(405, { error: `${request.method} is not allowed; use GET` });
  }
  switch (url.pathname) {
    case "/healthz": {
      const { healthy, body } = context.health();
      return json(healthy ? 200 : 503, body);
    }
    case "/catalog":
      return json(200, context.catalog());
    case "/sse":
      if (request.method !== "GET") return json(405, { error: "HEAD is not allowed on /sse; use GET" });
      return openEventStream(request, url, context, remote);
    case "/metrics":
      return new Response(context.metrics.render(), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    default:
      return dashboardResponse(url.pathname) ?? json(404, { error: `no route ${url.pathname}` });
  }
}

/**
 * Refuses an upgrade before any socket exists when its origin, the connection limits or its
 * token say no (docs/security.md); else upgrades, holding one of the address's slots.
 */
async function admit(request: Request, url: URL, context: RouteContext, remote: string): Promise<Response> {
  const entered = await enter(request, url, context, remote);
  if (entered instanceof Response) return entered;
  const response = upgrade(request, context, remote, entered.principal);
  if (response.status !== 101) context.addresses.release(remote);
  return response;
}

/**
 * The door of every long-lived client, WebSocket or event stream (docs/security.md): its origin,
 * the connection cap, the per-address limit and its token. Returns the token's principal (none
 * without a token) holding one of the address's slots, or the refusal.
 */
async function enter(
  request: Request,
  url: URL,
  context: RouteContext,
  remote: string,
): Promise<{ principal: Principal | undefined } | Response> {
  const { config, metrics } = context;
  const refuse = (status: number, reason: string, error: string) => {
    metrics.inc("gatecast_upgrades_refused_total", { reason });
    context.refusals.record(reason, remote);
    const response = json(status, { error });
    // A capacity refusal is temporary: tell the client when to try again.
    if (status === 503) response.headers.set("retry-after", String(RETRY_AFTER_SECONDS));
    return response;
  };
  if (!context.accepting) return refuse(503, "shutting_down", "the server is shutting down");
  if (!originAllowed(request.headers.get("origin"), request.headers.get("host"), config.allowedOrigins)) {
    return refuse(403, "origin", "origin not allowed; see allowedOrigins");
  }
  if (context.connections.size >= context.connectionCap) {
    return refuse(
      503,
      "connection_cap",
      `the server holds its maximum of ${context.connectionCap} connections`,
    );
  }
  if (!context.addresses.acquire(remote, config.maxConnectionsPerAddress)) {
    return refuse(
      429,
      "max_connections_per_address",
      `at most ${config.maxConnectionsPerAddress} connections per address`,
    );
  }
  let principal: Principal | undefined;
  const token = context.authenticator ? requestToken(request, url) : undefined;
  if (token !== undefined) {
    try {
      principal = await context.authenticator!.verify(token);
    } catch (error) {
      context.addresses.release(remote);
      if (error instanceof AuthError) {
        return refuse(401, "auth_failed", `authentication failed: ${error.message}`);
      }
      throw error;
    }
  }
  return { principal };
}

/** The HTTP status of a topic an event stream's request names wrongly. */
function topicStatus(code: string): number {
  return code === ErrorCode.UNKNOWN_DB || code === ErrorCode.UNKNOWN_HANDLE ? 404 : 400;
}

/**
 * Opens an event stream on the topics of `?topic=` (docs/protocol.md, "Server-Sent Events").
 * Everything is checked before the stream starts; the first topic that fails answers with a JSON
 * `{"error","code"}`. A reconnecting `EventSource`'s `Last-Event-ID` is not read: every stream
 * starts with fresh snapshots.
 */
async function openEventStream(
  request: Request,
  url: URL,
  context: RouteContext,
  remote: string,
): Promise<Response> {
  const refuse = (status: number, code: ErrorCode, error: string) => {
    context.metrics.inc("gatecast_client_errors_total", { code });
    return json(status, { error, code });
  };
  const asked = url.searchParams.getAll("topic");
  if (asked.length === 0) {
    return refuse(400, ErrorCode.BAD_TOPIC, "name at least one topic: /sse?topic=<db>/<handle>/<unit>");
  }
  const topics = new Map<string, [TopicName, Handle]>();
  for (const topic of asked) {
    try {
      const resolved = resolveTopic(context, topic);
      topics.set(resolved[0].key, resolved);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      return refuse(topicStatus(error.code), error.code, error.message);
    }
  }
  const most = context.config.maxSubscriptionsPerConnection;
  if (topics.size > most) {
    return refuse(400, ErrorCode.TOO_MANY_SUBSCRIPTIONS, `a stream may hold at most ${most} topics`);
  }
  const entered = await enter(request, url, context, remote);
  if (entered instanceof Response) return entered;
  if (context.authenticator) {
    const principal = entered.principal;
    const forbidden = [...topics.values()].find(([name]) =>
      !principal || !topicAllowed(principal.topics, name)
    );
    if (forbidden) {
      context.addresses.release(remote);
      return principal
        ? refuse(403, ErrorCode.FORBIDDEN, `your token does not grant '${forbidden[0].key}'`)
        : refuse(
          401,
          ErrorCode.UNAUTHENTICATED,
          "a token is required: Authorization: Bearer <token> or ?token=",
        );
    }
  }
  const peer = new SsePeer(context, remote);
  context.connections.add(peer);
  peer.onGone = () => {
    if (context.connections.delete(peer)) context.addresses.release(remote);
  };
  peer.subscribe(topics.values());
  context.logger.debug("event stream opened", { sse: peer.id, remote, topics: [...topics.keys()].join(" ") });
  return new Response(peer.body, {
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      // Proxies such as nginx would otherwise hold the events back.
      "x-accel-buffering": "no",
    },
  });
}

function upgrade(request: Request, context: RouteContext, remote: string, principal?: Principal): Response {
  const offered = offeredProtocols(request.headers.get("sec-websocket-protocol"));
  const v1 = offered.includes(SUBPROTOCOL);
  const wamp = !v1 && offered.includes(WAMP_SUBPROTOCOL);
  let upgraded;
  try {
    upgraded = Deno.upgradeWebSocket(request, keepAliveOptions(context.config.keepAliveSeconds));
  } catch (error) {
    return json(400, { error: `bad WebSocket upgrade: ${(error as Error).message}` });
  }
  const { socket, response } = upgraded;
  if (v1 || wamp) response.headers.set("sec-websocket-protocol", v1 ? SUBPROTOCOL : WAMP_SUBPROTOCOL);
  const connection = wamp
    ? new WampSession(socket, context, remote, principal)
    : new Connection(socket, context, v1, remote, principal);
  context.connections.add(connection);
  let deadPeerCounted = false;
  // Either event may come alone, or both, or twice: the address slot is given back once, a dead
  // peer is counted once.
  connection.onGone = (event) => {
    if (context.connections.delete(connection)) context.addresses.release(remote);
    if (!deadPeerCounted && isNoPongClose(event)) {
      deadPeerCounted = true;
      context.metrics.inc("gatecast_clients_dropped_total", { reason: "no_pong" });
    }
  };
  context.logger.debug("connection opened", { conn: connection.id, remote, v1, wamp });
  return response;
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json" },
  });
}
