/**
 * The close of a client the server drops (abuse, timeouts, policy), which must get its close
 * frame. Deno's server socket, once closing, drops the TCP connection at the next data frame it
 * reads instead of waiting for the client's close frame; with more of the client's frames unread
 * in the kernel's receive buffer the kernel then sends a reset, which discards the close frame at
 * the client (measured: close 1006 instead of 4029 for a client that sent 1,000 frames at once).
 * So a dropped connection first lingers: it acts on nothing and reads until the client has been
 * quiet for {@link LINGER_QUIET_MS} (at most {@link LINGER_MAX_MS}), and closes then.
 */

/** A dropped connection closes once the client has sent nothing for this long: its frames are all read. */
export const LINGER_QUIET_MS = 100;

/**
 * A dropped connection closes after this long even while the client goes on sending (its close
 * frame may then be lost to a reset: a client that never stops is not owed one).
 */
export const LINGER_MAX_MS = 2000;

/**
 * One connection's linger before its close.
 *
 * @example
 * ```ts
 * const linger = new Linger();
 * socket.onmessage = () => { if (linger.active) return linger.heard(); ... };
 * linger.start(() => socket.close(4029, "over 100 frames per second"));
 * ```
 */
export class Linger {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private lastFrameAt = 0;
  private lingering = false;

  /** Whether the connection is lingering: frames are to be read and ignored ({@link heard}). */
  get active(): boolean {
    return this.lingering;
  }

  /** Notes a frame read (and ignored) while lingering. */
  heard(): void {
    this.lastFrameAt = Date.now();
  }

  /** Starts lingering; `close` runs once the client is quiet or the longest linger is over. */
  start(close: () => void): void {
    const started = Date.now();
    const arm = (ms: number) => {
      const due = Date.now() + ms;
      this.timer = setTimeout(() => check(due), ms);
    };
    const check = (due: number) => {
      const now = Date.now();
      const quietFor = now - this.lastFrameAt;
      // A timer that fires late means the event loop was busy: the client's frames may be waiting
      // to be read, so a quiet spell counts only when the loop kept time.
      const quiet = quietFor >= LINGER_QUIET_MS && now - due < LINGER_QUIET_MS / 2;
      if (quiet || now - started >= LINGER_MAX_MS) {
        this.lingering = false;
        return close();
      }
      arm(Math.max(1, Math.min(LINGER_QUIET_MS - quietFor, started + LINGER_MAX_MS - now)));
    };
    this.lingering = true;
    this.lastFrameAt = started;
    arm(LINGER_QUIET_MS);
  }

  /** Stops lingering without running its close (the socket is gone, or closed at once). */
  end(): void {
    clearTimeout(this.timer);
    this.lingering = false;
  }
}
