/**
 * Connection limits that protect the process: a frame-rate bucket per connection, a count of
 * connections per client address, and the total connection cap, which stays below the
 * process's open-file limit (running out of descriptors kills `Deno.serve`'s listener for good).
 */

/**
 * A token bucket of frames: `rate` frames per second, bursts of up to `rate`. The rate is given
 * at every {@link FrameRate.take}, not at construction, so that a reloaded `maxFramesPerSecond`
 * reaches connections that are already open.
 *
 * @example
 * ```ts
 * const bucket = new FrameRate();
 * if (!bucket.take(config.maxFramesPerSecond)) refuse();
 * ```
 */
export class FrameRate {
  /** Full at the start: the first take caps it at the rate. */
  private tokens = Infinity;
  private last: number;

  /** @param now the clock in milliseconds, injectable for tests */
  constructor(private readonly now: () => number = performance.now.bind(performance)) {
    this.last = now();
  }

  /**
   * Takes one frame's token at `rate` frames per second (also the burst size); false when the
   * client is over its rate. A lower rate than before caps the tokens saved up at once.
   */
  take(rate: number): boolean {
    const t = this.now();
    this.tokens = Math.min(rate, this.tokens + ((t - this.last) / 1000) * rate);
    this.last = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** Open connections per client address. */
export class AddressCounter {
  private readonly counts = new Map<string, number>();

  /** Counts a new connection from `address` unless it already holds `max`; false when refused. */
  acquire(address: string, max: number): boolean {
    const n = this.counts.get(address) ?? 0;
    if (n >= max) return false;
    this.counts.set(address, n + 1);
    return true;
  }

  /** Forgets one connection from `address`. */
  release(address: string): void {
    const n = (this.counts.get(address) ?? 0) - 1;
    if (n <= 0) this.counts.delete(address);
    else this.counts.set(address, n);
  }

  /** Connections counted for `address`. */
  count(address: string): number {
    return this.counts.get(address) ?? 0;
  }
}

/** Descriptors kept free for the listener, in-flight HTTP requests, database pools and files. */
export const RESERVED_DESCRIPTORS = 128;

/**
 * The connection cap in force: the configured one, lowered so that connections plus a reserve
 * stay below the open-file limit.
 *
 * @example
 * ```ts
 * connectionCap(10_000, 1024); // 1024 - 128 - 1024/10 = 793 (rounded down)
 * ```
 */
export function connectionCap(configured: number, openFileLimit: number | undefined): number {
  if (openFileLimit === undefined) return configured;
  const reserve = RESERVED_DESCRIPTORS + Math.ceil(openFileLimit / 10);
  return Math.max(1, Math.min(configured, openFileLimit - reserve));
}

/** The environment variable `deno task start` sets to the hard open-file limit (`ulimit -Hn`). */
export const OPEN_FILE_LIMIT_ENV = "GATECAST_OPEN_FILE_LIMIT";

/**
 * The open-file limit the process runs under, or `undefined` when unknown. Deno raises the soft
 * limit to the hard one at start, and reads `/proc/self/limits` only with `--allow-all`; under
 * least privilege the launcher passes the hard limit in {@link OPEN_FILE_LIMIT_ENV}
 * (`--allow-env=GATECAST_*`).
 */
export function readOpenFileLimit(): number | undefined {
  let text: string | undefined;
  try {
    text = /^Max open files\s+(\d+|unlimited)/m.exec(Deno.readTextFileSync("/proc/self/limits"))?.[1];
  } catch {
    try {
      text = Deno.env.get(OPEN_FILE_LIMIT_ENV)?.trim();
    } catch { /* no permission: unknown */ }
  }
  return text !== undefined && /^[0-9]{1,9}$/.test(text) ? Number(text) : undefined;
}
