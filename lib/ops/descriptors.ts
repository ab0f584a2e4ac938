/**
 * What holds the process's file descriptors, sampled every few seconds from /proc: how many are
 * open, and how many accepted TCP connections on the listening port the server does not know of
 * (neither a WebSocket nor a request being answered). `Deno.serve` hands a connection over only
 * once its request headers are complete and has no header timeout, so a client that sends half a
 * request holds a descriptor the server cannot see, until descriptors run out and the listener
 * dies (docs/operating.md). Deno reads /proc only with `--allow-all`: under the least privilege of
 * `deno task start` and the compiled binary the watch is off, and says so in one line.
 */

import type { Logger } from "./log.ts";
import { RESERVED_DESCRIPTORS } from "../net/limits.ts";

/** Default time between two samples. */
export const DESCRIPTOR_SAMPLE_INTERVAL_MS = 5000;

/** Default least time between two warnings while the condition lasts. */
export const DESCRIPTOR_WARNING_INTERVAL_MS = 60_000;

/** TCP state `LISTEN` in /proc/net/tcp (hexadecimal). */
const TCP_LISTEN = "0A";

/**
 * Accepted TCP connections on local `port` in a /proc/net/tcp or tcp6 table: every socket on the
 * port but the listening one, that a process holds. A connection still in the accept queue, or
 * closed and lingering (`TIME_WAIT`, `FIN_WAIT`), has inode 0 and holds no descriptor.
 *
 * @example
 * ```ts
 * acceptedConnections(await Deno.readTextFile("/proc/self/net/tcp"), 4053);
 * ```
 */
export function acceptedConnections(table: string, port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  let accepted = 0;
  for (const line of table.split("\n")) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10 || !fields[0].endsWith(":")) continue;
    const local = fields[1];
    if (local.slice(local.lastIndexOf(":") + 1) !== hexPort) continue;
    if (fields[3] === TCP_LISTEN || fields[9] === "0") continue;
    accepted++;
  }
  return accepted;
}

/**
 * The default warning threshold: connections without a request that hold half the descriptors
 * the connection cap leaves free, or half of {@link RESERVED_DESCRIPTORS} when the open-file limit
 * is unknown.
 *
 * @example
 * ```ts
 * unaccountedWarningThreshold(65_536, 10_000); // 27768
 * ```
 */
export function unaccountedWarningThreshold(
  openFileLimit: number | undefined,
  connectionCap: number,
): number {
  if (openFileLimit === undefined) return RESERVED_DESCRIPTORS / 2;
  return Math.max(1, Math.floor((openFileLimit - connectionCap) / 2));
}

/** One sample of the process's descriptors. */
export interface DescriptorSample {
  /** Descriptors the process holds. */
  readonly open: number;
  /** Accepted TCP connections on the listening port. */
  readonly accepted: number;
  /** Of those, the ones that are neither a WebSocket nor a request being answered (at least 0). */
  readonly unaccounted: number;
}

/** What the server knows holds a connection, at the time of a sample. */
export interface KnownConnections {
  /** Open WebSocket connections. */
  readonly webSockets: number;
  /** HTTP requests being answered (an upgrade until it is answered). */
  readonly requests: number;
}

/** Options of {@link DescriptorWatch.start}. */
export interface DescriptorWatchOptions {
  /** The listening port whose connections are counted. */
  readonly port: number;
  /** Where the warning goes. */
  readonly logger: Logger;
  /** The server's own count of its connections. */
  known(): KnownConnections;
  /** The connection cap in force (for the default threshold and the warning). */
  connectionCap(): number;
  /** The open-file limit, when known (for the default threshold and the warning). */
  readonly openFileLimit?: number;
  /** Time between samples (default {@link DESCRIPTOR_SAMPLE_INTERVAL_MS}). */
  readonly intervalMs?: number;
  /** Unaccounted connections at which to warn (default {@link unaccountedWarningThreshold}). */
  readonly warnAt?: number;
  /** Least time between two warnings (default {@link DESCRIPTOR_WARNING_INTERVAL_MS}). */
  readonly warnEveryMs?: number;
  /** The clock of the warnings' spacing, injectable for tests. */
  readonly now?: () => number;
}

/**
 * Samples the process's descriptors every few seconds and warns, at most once a minute, when
 * connections the server cannot see reach the threshold.
 *
 * @example
 * ```ts
 * const watch = await DescriptorWatch.start({ port, logger, known, connectionCap: () => cap });
 * metrics.gauge("gatecast_unaccounted_connections", () => watch!.latest.unaccounted);
 * await watch?.stop();
 * ```
 */
export class DescriptorWatch {
  /** The latest sample. */
  latest: DescriptorSample = { open: 0, accepted: 0, unaccounted: 0 };
  private timer: ReturnType<typeof setTimeout> | undefined;
  private sampling: Promise<unknown> | undefined;
  private stopped = false;
  private lastWarning = -Infinity;
  private readonly now: () => number;

  private constructor(private readonly options: DescriptorWatchOptions) {
    this.now = options.now ?? Date.now;
  }

  /**
   * Takes a first sample and starts sampling; `undefined`, said in one `info` line, when the
   * process may not read /proc.
   */
  static async start(options: DescriptorWatchOptions): Promise<DescriptorWatch | undefined> {
    const watch = new DescriptorWatch(options);
    try {
      watch.latest = await watch.read();
    } catch (error) {
      const why = error instanceof Deno.errors.NotCapable
        ? "Deno reads /proc only with --allow-all"
        : `cannot read /proc: ${(error as Error).message}`;
      options.logger.info(
        `descriptor watch off (${why}); count /proc/<pid>/fd from outside (docs/operating.md)`,
      );
      return undefined;
    }
    watch.schedule();
    return watch;
  }

  /** Takes a sample now and warns if it calls for it; the timer does this every interval. */
  async sample(): Promise<DescriptorSample> {
    try {
      this.latest = await this.read();
    } catch (error) {
      // Out of descriptors, the directory itself cannot be opened: that is the news.
      this.warn("cannot sample descriptors", { error: String(error) });
      return this.latest;
    }
    const warnAt = this.options.warnAt ??
      unaccountedWarningThreshold(this.options.openFileLimit, this.options.connectionCap());
    if (this.latest.unaccounted >= warnAt) {
      this.warn(
        "connections without a request hold descriptors; new clients are refused once they run out (docs/operating.md)",
        { warnAt },
      );
    }
    return this.latest;
  }

  /** Stops sampling, once a sample under way has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.sampling;
  }

  private schedule(): void {
    this.timer = setTimeout(async () => {
      this.sampling = this.sample();
      await this.sampling;
      if (!this.stopped) this.schedule();
    }, this.options.intervalMs ?? DESCRIPTOR_SAMPLE_INTERVAL_MS);
    Deno.unrefTimer(this.timer); // sampling never keeps the process alive
  }

  private warn(msg: string, fields: Record<string, string | number>): void {
    const now = this.now();
    if (now - this.lastWarning < (this.options.warnEveryMs ?? DESCRIPTOR_WARNING_INTERVAL_MS)) return;
    this.lastWarning = now;
    const known = this.options.known();
    this.options.logger.warn(msg, {
      unaccounted: this.latest.unaccounted,
      openDescriptors: this.latest.open,
      openFileLimit: this.options.openFileLimit ?? "unknown",
      connections: known.webSockets,
      connectionCap: this.options.connectionCap(),
      ...fields,
    });
  }

  private async read(): Promise<DescriptorSample> {
    let open = -1; // the directory being read holds one descriptor itself
    for await (const _ of Deno.readDir("/proc/self/fd")) open++;
    const tables = await Promise.all(["/proc/self/net/tcp", "/proc/self/net/tcp6"].map(readTable));
    const accepted = tables.reduce((sum, table) => sum + acceptedConnections(table, this.options.port), 0);
    const known = this.options.known();
    return { open, accepted, unaccounted: Math.max(0, accepted - known.webSockets - known.requests) };
  }
}

/** A /proc/net table's text; empty when the kernel has none (no IPv6). */
async function readTable(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "";
    throw error;
  }
}
