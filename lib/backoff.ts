/**
 * Capped exponential backoff for a failing database, counted in poll intervals: after the n-th
 * failure in a row the next attempt waits `min(interval × 2^(n-1), max)`. The cap is small by
 * default (two intervals), so that a database that comes back is polled again within two ticks
 * and every subscriber holds its latest values soon after; a larger cap spares a database that
 * is down for long at the cost of a later recovery. Pure, no I/O.
 */

import type { Config } from "./config.ts";

/** The longest retry delay of a configuration: `dbRetryMaxMs`, or twice the poll interval when 0. */
export function retryCap(config: Config): number {
  return config.dbRetryMaxMs || 2 * config.pollIntervalMs;
}

/** Retry timing of one database. */
export class RetryBackoff {
  private failures = 0;
  private nextAt = 0;

  /**
   * @param intervalMs the poll interval, the first delay
   * @param maxMs the longest delay
   */
  constructor(private readonly intervalMs: number, private readonly maxMs: number) {}

  /** Failures in a row so far (0: healthy). */
  get failureCount(): number {
    return this.failures;
  }

  /** Whether an attempt may run at `now` (ms). */
  ready(now: number): boolean {
    return now >= this.nextAt;
  }

  /**
   * Records a failed attempt that started at `startedAt`; returns the delay before the next.
   * The next attempt is due half an interval early, so that it falls on the tick it is meant for.
   *
   * @example
   * ```ts
   * const b = new RetryBackoff(1000, 4000);
   * [b.failed(0), b.failed(0), b.failed(0), b.failed(0)]; // [1000, 2000, 4000, 4000]
   * ```
   */
  failed(startedAt: number): number {
    this.failures++;
    const delay = Math.min(this.intervalMs * 2 ** Math.min(this.failures - 1, 30), this.maxMs);
    this.nextAt = startedAt + delay - this.intervalMs / 2;
    return delay;
  }

  /** Records a success: the next attempt may run at once. */
  succeeded(): void {
    this.failures = 0;
    this.nextAt = 0;
  }
}
