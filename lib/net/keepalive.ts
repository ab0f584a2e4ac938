/**
 * Keep-alive of client connections: Deno's own ping/pong (`upgradeWebSocket`'s `idleTimeout`).
 * A connection with no traffic for half the period gets a ping; without an answer by the end of
 * the period it is closed, and its `close` event carries the reason below, by which the server
 * tells a dead peer from one that left. A silent peer is thus gone within one period.
 */

/** The reason Deno gives when a peer did not answer its ping. */
export const NO_PONG_REASON = "No response from ping frame.";

/** Options for `Deno.upgradeWebSocket` giving a keep-alive period of `seconds`. */
export function keepAliveOptions(seconds: number): Deno.UpgradeWebSocketOptions {
  return { idleTimeout: seconds };
}

/**
 * Whether a socket event is the close Deno makes when the peer did not answer its ping (Deno
 * fires that `close` more than once).
 */
export function isNoPongClose(event: Event): boolean {
  return event.type === "close" && (event as CloseEvent).reason === NO_PONG_REASON;
}
