/**
 * HTTP routes on `Deno.serve`: WebSocket upgrades on `/ws` and `/`, `/healthz`, `/metrics`
 * and the dashboard at `/` (`dashboard.ts`). Upgraded sockets are handed to a {@link Connection}.
 *
 * The `Sec-WebSocket-Protocol` header is parsed here, not by `Deno.upgradeWebSocket`, which
 * splits it only on ", " and throws for "a,b" (as Node's `ws` sends it).
 */

import { Connection, type ConnectionContext } from "./connection.ts";
import { dashboardResponse } from "./dashboard.ts";
import { keepAliveOptions, onDeadPeer } from "./keepalive.ts";
import { SUBPROTOCOL } from "./protocol.ts";

/** What the routes need besides the connection context. */
export interface RouteContext extends ConnectionContext {
  /** Open connections; the server adds and removes them. */
  readonly connections: Set<Connection>;
  /** The `/healthz` body and whether it is healthy. */
  health(): { healthy: boolean; body: unknown };
  /** Most open connections (see `lib/fd_limit.ts`); upgrades over it get 503 with `Retry-After`. */
  readonly maxConnections: number;
  /** False once shutdown began: upgrades get 503. */
  readonly accepting: boolean;
}

/** Seconds a client refused for capacity is told to wait (`Retry-After`). */
export const RETRY_AFTER_SECONDS = 5;

/** The subprotocols a client offered, however the header separates them. */
export function offeredProtocols(header: string | null): string[] {
  return header ? header.split(",").map((p) => p.trim()).filter((p) => p.length > 0) : [];
}

/** Builds the request handler for `Deno.serve`. */
export function createHandler(
  context: RouteContext,
): (request: Request, info: Deno.ServeHandlerInfo) => Response {
  return (request, info) => {
    const url = new URL(request.url);
    const remote = (info.remoteAddr as Deno.NetAddr).hostname ?? "unknown";
    if (request.headers.get("upgrade")?.toLowerCase() === "websocket") {
      if (url.pathname !== "/ws" && url.pathname !== "/") {
        return json(404, { error: `no WebSocket endpoint at ${url.pathname}; use /ws` });
      }
      return upgrade(request, context, remote);
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return json(405, { error: `${request.method} is not allowed; use GET` });
    }
    switch (url.pathname) {
      case "/healthz": {
        const { healthy, body } = context.health();
        return json(healthy ? 200 : 503, body);
      }
      case "/metrics":
        return new Response(context.metrics.render(), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      default:
        return dashboardResponse(url.pathname) ?? json(404, { error: `no route ${url.pathname}` });
    }
  };
}

function refuse(context: RouteContext, reason: "connection_cap" | "shutting_down", error: string): Response {
  context.metrics.inc("gatecast_upgrades_refused_total", "WebSocket upgrades answered 503, by reason.", {
    reason,
  });
  const response = json(503, { error });
  response.headers.set("retry-after", String(RETRY_AFTER_SECONDS));
  return response;
}

function upgrade(request: Request, context: RouteContext, remote: string): Response {
  if (!context.accepting) return refuse(context, "shutting_down", "the server is shutting down");
  if (context.connections.size >= context.maxConnections) {
    return refuse(
      context,
      "connection_cap",
      `the server holds its maximum of ${context.maxConnections} connections`,
    );
  }
  const v1 = offeredProtocols(request.headers.get("sec-websocket-protocol")).includes(SUBPROTOCOL);
  let upgraded;
  try {
    upgraded = Deno.upgradeWebSocket(request, keepAliveOptions(context.config.keepAliveSeconds));
  } catch (error) {
    return json(400, { error: `bad WebSocket upgrade: ${(error as Error).message}` });
  }
  const { socket, response } = upgraded;
  if (v1) response.headers.set("sec-websocket-protocol", SUBPROTOCOL);
  const connection = new Connection(socket, context, v1, remote);
  context.connections.add(connection);
  socket.addEventListener("close", () => context.connections.delete(connection));
  onDeadPeer(
    socket,
    () =>
      context.metrics.inc("gatecast_clients_dropped_total", "Clients closed by the server, by reason.", {
        reason: "no_pong",
      }),
  );
  socket.addEventListener(
    "open",
    () => context.logger.debug("connection opened", { conn: connection.id, remote, v1 }),
  );
  return response;
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json" },
  });
}
