/**
 * HTTP routes on `Deno.serve`: WebSocket upgrades on `/ws` and `/`, `/healthz`, `/metrics`,
 * `POST /notify` (`notify.ts`) and the dashboard at `/` (`dashboard.ts`). Upgraded sockets are
 * handed to a {@link Connection}.
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
import { SUBPROTOCOL } from "../wire/protocol.ts";
import type { RefusalLog } from "./refusal_log.ts";

/** What the routes need besides the connection context. */
export interface RouteContext extends ConnectionContext {
  /** Open connections; the server adds and removes them. */
  readonly connections: Set<Connection>;
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
  readonly poller: Pick<Poller, "pollNow">;
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
  const response = upgrade(request, context, remote, principal);
  if (response.status !== 101) context.addresses.release(remote);
  return response;
}

function upgrade(request: Request, context: RouteContext, remote: string, principal?: Principal): Response {
  const v1 = offeredProtocols(request.headers.get("sec-websocket-protocol")).includes(SUBPROTOCOL);
  let upgraded;
  try {
    upgraded = Deno.upgradeWebSocket(request, keepAliveOptions(context.config.keepAliveSeconds));
  } catch (error) {
    return json(400, { error: `bad WebSocket upgrade: ${(error as Error).message}` });
  }
  const { socket, response } = upgraded;
  if (v1) response.headers.set("sec-websocket-protocol", SUBPROTOCOL);
  const connection = new Connection(socket, context, v1, remote, principal);
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
  context.logger.debug("connection opened", { conn: connection.id, remote, v1 });
  return response;
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json" },
  });
}
