/**
 * A WebSocket's send buffer, guarded: Deno's `socket.send` never blocks, so a client that stops
 * reading would grow the server's memory without bound. {@link SendBuffer.pressure} watches
 * `bufferedAmount` instead: over the soft limit frames are held back, over the hard limit (or
 * soft for longer than `slowClientGraceMs`) the client is to be closed. Shared by every protocol
 * spoken on a WebSocket (v1 and legacy in `connection.ts`, WAMP in `wamp_session.ts`).
 */

import type { Config } from "../config/config.ts";
import type { Counter, Metrics } from "../ops/metrics.ts";
import { utf8Length } from "../wire/utf8.ts";

/** The limits a send buffer is held to, read at every check (a reload reaches open sockets). */
export type SendLimits = Pick<Config, "sendBufferSoftBytes" | "sendBufferHardBytes" | "slowClientGraceMs">;

/** Where a send buffer stands; `slow` names why the client must be closed. */
export type SendPressure = "under_soft" | "over_soft" | {
  /** `slow_hard_limit` or `slow_grace_expired`, the reason counted and logged. */
  readonly slow: "slow_hard_limit" | "slow_grace_expired";
  /** Bytes buffered when it was found. */
  readonly buffered: number;
};

// Frames sent without their byte count (fan-out passes it) are small: acks, errors, pongs.
let lastMeasured = "";
let lastLength = 0;

/** The UTF-8 length of a frame, remembered for the last frame measured. */
function measuredLength(text: string): number {
  if (text !== lastMeasured) {
    lastMeasured = text;
    lastLength = utf8Length(text);
  }
  return lastLength;
}

/** The frames and bytes sent counters of a metrics set, resolved once (they count every frame). */
const sentCountersByMetrics = new WeakMap<Metrics, { frames: Counter; bytes: Counter }>();

function sentCounters(metrics: Metrics): { frames: Counter; bytes: Counter } {
  let counters = sentCountersByMetrics.get(metrics);
  if (!counters) {
    counters = {
      frames: metrics.counter("gatecast_frames_sent_total"),
      bytes: metrics.counter("gatecast_sent_bytes_total"),
    };
    sentCountersByMetrics.set(metrics, counters);
  }
  return counters;
}

/**
 * Judges a buffer's size against the limits over time: under the soft limit, over it (hold frames
 * back), or slow (over the hard limit, or over the soft one for longer than `slowClientGraceMs`).
 * One judge per client, for WebSockets and event streams alike.
 *
 * @example
 * ```ts
 * const judge = new SlowClientJudge();
 * judge.judge(2 << 20, config); // "over_soft" with the default 1 MiB soft limit
 * ```
 */
export class SlowClientJudge {
  private overSoftSince = 0;

  /** Where a buffer of `buffered` bytes stands now. */
  judge(buffered: number, limits: SendLimits): SendPressure {
    const { sendBufferSoftBytes, sendBufferHardBytes, slowClientGraceMs } = limits;
    if (buffered <= sendBufferSoftBytes) {
      this.overSoftSince = 0;
      return "under_soft";
    }
    const now = Date.now();
    if (this.overSoftSince === 0) this.overSoftSince = now;
    if (buffered > sendBufferHardBytes) return { slow: "slow_hard_limit", buffered };
    if (now - this.overSoftSince > slowClientGraceMs) return { slow: "slow_grace_expired", buffered };
    return "over_soft";
  }
}

/**
 * Sends a socket's text frames, counting them, and says how full its buffer is.
 *
 * @example
 * ```ts
 * const buffer = new SendBuffer(socket, metrics);
 * if (buffer.pressure(config) === "under_soft") buffer.send('{"type":"pong"}');
 * ```
 */
export class SendBuffer {
  private readonly judge = new SlowClientJudge();
  /** At least `socket.bufferedAmount`: its last reading plus the bytes sent since. */
  private bufferedBound = 0;

  /**
   * @param socket the open WebSocket
   * @param metrics where frames and bytes sent are counted
   */
  constructor(private readonly socket: WebSocket, private readonly metrics: Metrics) {}

  /** Where the buffer stands against the limits; a `slow` answer means close the client now. */
  pressure(limits: SendLimits): SendPressure {
    // The buffer only drains between reads of it, so while the last reading plus everything
    // sent since stays under the soft limit, so does the buffer: no need to ask the runtime.
    if (this.bufferedBound > limits.sendBufferSoftBytes) this.bufferedBound = this.socket.bufferedAmount;
    return this.judge.judge(this.bufferedBound, limits);
  }

  /** Sends one text frame on an open socket; `bytes` is its UTF-8 length when the caller knows it. */
  send(text: string, bytes?: number): void {
    this.socket.send(text);
    // UTF-8 takes at most 3 bytes per UTF-16 unit, which leaves room for the frame header too.
    this.bufferedBound += text.length * 3;
    const sent = sentCounters(this.metrics);
    sent.frames.add();
    sent.bytes.add(bytes ?? measuredLength(text));
  }
}
