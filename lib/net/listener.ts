/**
 * The HTTP listener, on `Deno.serve`, that comes back after it fails. When the process runs out
 * of file descriptors, `Deno.serve`'s accept loop dies for good ("Too many open files") and,
 * unhandled, takes the process with it. Here the failure is logged and the listener is started
 * again on the same address once descriptors are free; open connections are not touched.
 */

import type { LogFields, Logger } from "../ops/log.ts";

/** How long to wait before listening again after the listener failed. */
export const RELISTEN_DELAY_MS = 1000;

/** Options for {@link Listener.start}. */
export interface ListenerOptions {
  /** Address to listen on. */
  readonly hostname: string;
  /** Port (0 picks a free one; a restart reuses the port first bound). */
  readonly port: number;
  /**
   * Sets SO_REUSEPORT (POSIX), so that several processes may listen on this address and port; on
   * Linux the kernel spreads new connections among them. Default false.
   */
  readonly reusePort?: boolean;
  /** PEM certificate chain and key, for TLS. */
  readonly cert?: string;
  /** PEM private key, with `cert`. */
  readonly key?: string;
  /**
   * Fields for the `listener failed` line, read when it fails: the app gives its connections and
   * cap, which tell descriptors spent on WebSockets from those held by connections it cannot see.
   */
  readonly failureFields?: () => LogFields;
}

/** A `Deno.serve` listener that restarts itself after its accept loop fails. */
export class Listener {
  private server: Deno.HttpServer<Deno.NetAddr> | undefined;
  private stopped = false;
  private retry: ReturnType<typeof setTimeout> | undefined;
  /** Times the listener was started again after a failure. */
  restarts = 0;

  private constructor(
    private options: ListenerOptions,
    private readonly handler: Deno.ServeHandler<Deno.NetAddr>,
    private readonly logger: Logger,
  ) {}

  /**
   * Starts listening and resolves with the bound address.
   *
   * @example
   * ```ts
   * const { listener, addr } = await Listener.start({ hostname: "127.0.0.1", port: 0 }, handler, logger);
   * await listener.stop();
   * ```
   */
  static async start(
    options: ListenerOptions,
    handler: Deno.ServeHandler<Deno.NetAddr>,
    logger: Logger,
  ): Promise<{ listener: Listener; addr: Deno.NetAddr }> {
    const listener = new Listener(options, handler, logger);
    const addr = await listener.listen();
    listener.options = { ...options, port: addr.port };
    return { listener, addr };
  }

  /** Stops listening for good and waits for the server to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    await this.server?.shutdown();
  }

  private listen(): Promise<Deno.NetAddr> {
    const listening = Promise.withResolvers<Deno.NetAddr>();
    const { failureFields, ...address } = this.options;
    const server = Deno.serve({
      ...address,
      onListen: (addr) => listening.resolve(addr),
      onError: (error) => {
        this.logger.error("request failed", { error: String(error) });
        return new Response("internal error\n", { status: 500 });
      },
    }, this.handler);
    this.server = server;
    server.finished.catch((error) => {
      if (this.stopped) return;
      this.logger.error("listener failed; listening again soon", {
        error: String(error),
        retryInMs: RELISTEN_DELAY_MS,
        ...failureFields?.(),
      });
      this.scheduleRestart();
    });
    return listening.promise;
  }

  private scheduleRestart(): void {
    this.retry = setTimeout(() => {
      if (this.stopped) return;
      try {
        this.listen().then(() => {
          this.restarts++;
          this.logger.warn("listening again", { port: this.options.port, restarts: this.restarts });
        });
      } catch (error) {
        this.logger.error("cannot listen yet", { error: String(error) });
        this.scheduleRestart();
      }
    }, RELISTEN_DELAY_MS);
  }
}
