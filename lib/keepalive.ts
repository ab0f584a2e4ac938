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
 * Calls `onDead` once when the socket is closed for not answering a ping (Deno fires `close`
 * more than once in that case).
 */
export function onDeadPeer(socket: WebSocket, onDead: () => void): void {
  let seen = false;
  socket.addEventListener("close", (event) => {
    if (seen || event.reason !== NO_PONG_REASON) return;
    seen = true;
    onDead();
  });
}
