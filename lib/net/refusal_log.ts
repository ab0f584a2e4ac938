/**
 * The log of refused WebSocket upgrades, bounded during a flood. The first refusal of a burst is
 * logged at once, as it happens; after it, one summary line per interval while refusals go on
 * (counts by reason, the addresses refused most); nothing once an interval passes without one.
 * Every refusal is still counted by `gatecast_upgrades_refused_total`: this only decides what
 * reaches the log, so that a connection flood costs a few lines instead of one per attempt.
 */

import type { Logger } from "../ops/log.ts";

/** Default interval between two summary lines of one burst. */
export const REFUSAL_SUMMARY_INTERVAL_MS = 10_000;

/** Addresses a summary line names, those refused most first. */
export const REFUSAL_SUMMARY_TOP_ADDRESSES = 5;

/**
 * Distinct addresses counted in one interval; refusals from further addresses count in the
 * totals only, so that a flood from many addresses cannot grow the map without bound.
 */
export const REFUSAL_ADDRESSES_TRACKED = 1000;

/** A timer source: `setTimeout`/`clearTimeout` by default, a hand-driven one in tests. */
export interface Timers {
  /** Calls `fn` once after `ms` milliseconds; returns a handle for {@link Timers.clear}. */
  set(fn: () => void, ms: number): unknown;
  /** Cancels a timer that has not fired. */
  clear(handle: unknown): void;
}

// A pending summary never keeps the process alive; shutdown flushes it.
const REAL_TIMERS: Timers = {
  set: (fn, ms) => {
    const handle = setTimeout(fn, ms);
    Deno.unrefTimer(handle);
    return handle;
  },
  clear: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Options of a {@link RefusalLog}. */
export interface RefusalLogOptions {
  /** Where the lines go (level `info`). */
  readonly logger: Logger;
  /** Interval between summary lines (default {@link REFUSAL_SUMMARY_INTERVAL_MS}). */
  readonly intervalMs?: number;
  /** The timer source (default: `setTimeout`). */
  readonly timers?: Timers;
}

/**
 * Decides which refusals reach the log: the first of a burst as `upgrade refused` (`remote`,
 * `reason`), then `upgrades refused` once per interval with `refused` (the count),
 * `byReason` (`"connection_cap=290 origin=8"`), `addresses` (distinct ones seen),
 * `topAddresses` (`"203.0.113.7=250 198.51.100.2=40"`) and, past
 * {@link REFUSAL_ADDRESSES_TRACKED} addresses, `untrackedRefusals` (those from further addresses).
 *
 * @example
 * ```ts
 * const refusals = new RefusalLog({ logger });
 * refusals.record("connection_cap", "203.0.113.7"); // logged at once
 * refusals.record("connection_cap", "203.0.113.7"); // in the summary 10 s later
 * refusals.flush(); // on shutdown: the summary now, and no timer left
 * ```
 */
export class RefusalLog {
  private readonly logger: Logger;
  private readonly intervalMs: number;
  private readonly timers: Timers;
  private timer: unknown;
  private refused = 0;
  private readonly reasons = new Map<string, number>();
  private readonly addresses = new Map<string, number>();
  private untracked = 0;

  /** @param options the logger, and the interval and timers to use */
  constructor(options: RefusalLogOptions) {
    this.logger = options.logger;
    this.intervalMs = options.intervalMs ?? REFUSAL_SUMMARY_INTERVAL_MS;
    this.timers = options.timers ?? REAL_TIMERS;
  }

  /** Notes one refused upgrade from `remote` for `reason` (a `gatecast_upgrades_refused_total` label). */
  record(reason: string, remote: string): void {
    if (this.timer === undefined) {
      this.logger.info("upgrade refused", { remote, reason });
      this.arm();
      return;
    }
    this.refused++;
    this.reasons.set(reason, (this.reasons.get(reason) ?? 0) + 1);
    const seen = this.addresses.get(remote);
    if (seen !== undefined) this.addresses.set(remote, seen + 1);
    else if (this.addresses.size < REFUSAL_ADDRESSES_TRACKED) this.addresses.set(remote, 1);
    else this.untracked++;
  }

  /** Logs the refusals counted since the last line, if any, and ends the burst (no timer is left). */
  flush(): void {
    if (this.timer !== undefined) this.timers.clear(this.timer);
    this.timer = undefined;
    this.summarize();
  }

  private arm(): void {
    this.timer = this.timers.set(() => {
      this.timer = undefined;
      // An interval without refusals ends the burst: the next refusal is logged at once again.
      if (this.summarize()) this.arm();
    }, this.intervalMs);
  }

  /** Logs the counted refusals and starts counting afresh; false when there were none. */
  private summarize(): boolean {
    if (this.refused === 0) return false;
    const top = [...this.addresses].sort((a, b) => b[1] - a[1]).slice(0, REFUSAL_SUMMARY_TOP_ADDRESSES);
    this.logger.info("upgrades refused", {
      refused: this.refused,
      intervalMs: this.intervalMs,
      byReason: [...this.reasons].sort((a, b) => b[1] - a[1]).map(([r, n]) => `${r}=${n}`).join(" "),
      addresses: this.addresses.size,
      topAddresses: top.map(([address, n]) => `${address}=${n}`).join(" "),
      untrackedRefusals: this.untracked > 0 ? this.untracked : undefined,
    });
    this.refused = 0;
    this.untracked = 0;
    this.reasons.clear();
    this.addresses.clear();
    return true;
  }
}
