/**
 * Capped exponential backoff for a failing database, counted in poll intervals: after the n-th
 * failure in a row the next attempt waits `min(interval × 2^(n-1), max)`. The cap is small by
 * default (two intervals), so that a database that comes back is polled again within two ticks
 * and every subscriber holds its latest values soon after; a larger cap spares a database that
 * is down for long at the cost of a later recovery. Pure, no I/O.
 */

import type { Config } from "../config/config.ts";

/** The longest retry delay of a configuration: `dbRetryMaxMs`, or twice the poll interval when 0. */
export function retryCap(config: Config): number {
  return config.dbRetryMaxMs || 2 * config.pollIntervalMs;
}

/** Retry timing of one database. */
export class RetryBackoff {
  private failures = 0;
  /** When the last failed attempt started (ms); meaningful while failing. */
  private failedAt = 0;

  /**
   * @param intervalMs the poll interval, the first delay
   * @param maxMs the longest delay
   */
  constructor(private intervalMs: number, private maxMs: number) {}

  /** Failures in a row so far (0: healthy). */
  get failureCount(): number {
    return this.failures;
  }

  /** Whether an attempt may run at `now` (ms). */
  ready(now: number): boolean {
    // The next attempt is due half an interval early, so that it falls on the tick it is meant for.
    return this.failures === 0 || now >= this.failedAt + this.delay() - this.intervalMs / 2;
  }

  /**
   * Records a failed attempt that started at `startedAt`; returns the delay before the next.
   *
   * @example
   * ```ts
   * const b = new RetryBackoff(1000, 4000);
   * [b.failed(0), b.failed(0), b.failed(0), b.failed(0)]; // [1000, 2000, 4000, 4000]
   * ```
   */
  failed(startedAt: number): number {
    this.failures++;
    this.failedAt = startedAt;
    return this.delay();
  }

  /** Records a success: the next attempt may run at once. */
  succeeded(): void {
    this.failures = 0;
  }

  /**
   * Takes a new interval and cap (a configuration reload). A failing database stays failing:
   * its failures in a row are kept, and its next attempt is planned anew from its last failure.
   *
   * @example
   * ```ts
   * const b = new RetryBackoff(1000, 4000);
   * b.failed(0); b.failed(0); // the next attempt waits 2000 ms
   * b.retime(500, 4000); // now 1000 ms (two failures at the new interval); failureCount is still 2
   * ```
   */
  retime(intervalMs: number, maxMs: number): void {
    this.intervalMs = intervalMs;
    this.maxMs = maxMs;
  }

  /** The wait after the current run of failures. */
  private delay(): number {
    return Math.min(this.intervalMs * 2 ** Math.min(this.failures - 1, 30), this.maxMs);
  }
}
