/**
 * A WebSocket test client over a real socket: frames queue up and tests take them in order
 * with a timeout, or assert that none arrives.
 */

/** A server frame, parsed. */
// deno-lint-ignore no-explicit-any
export type Frame = any;

/** A test client; every wait has a timeout so a missing frame fails the test instead of hanging. */
export class TestClient {
  private readonly queue: string[] = [];
  private waiter: (() => void) | undefined;
  /** Resolves with the close event once the socket closes. */
  readonly closed: Promise<CloseEvent>;

  private constructor(readonly socket: WebSocket) {
    socket.onmessage = (event) => {
      this.queue.push(typeof event.data === "string" ? event.data : "<binary>");
      this.waiter?.();
    };
    this.closed = new Promise((resolve) => {
      socket.addEventListener("close", (event) => {
        resolve(event);
        this.waiter?.();
      });
    });
  }

  /** Opens a connection and waits until it is open; `headers` go on the upgrade request (Deno only). */
  static async open(
    url: string,
    protocols?: string | string[],
    headers?: Record<string, string>,
  ): Promise<TestClient> {
    const socket = headers
      ? new WebSocket(url, { protocols: [protocols ?? []].flat(), headers } as unknown as string[])
      : new WebSocket(url, protocols);
    const client = new TestClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener("open", () => resolve(), { once: true });
      socket.addEventListener("error", () => reject(new Error(`cannot connect to ${url}`)), { once: true });
    });
    return client;
  }

  /** Sends an object as JSON, or a string as it is. */
  send(frame: unknown): void {
    this.socket.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** The next frame's text. */
  async nextText(timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      if (this.socket.readyState === WebSocket.CLOSED) {
        throw new Error("socket closed while waiting for a frame");
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    return this.queue.shift()!;
  }

  /** The next frame, parsed. */
  async next(timeoutMs = 5000): Promise<Frame> {
    return JSON.parse(await this.nextText(timeoutMs));
  }

  /** Waits for the next frame of a type, failing on any other frame type in between. */
  async expect(type: string, timeoutMs = 5000): Promise<Frame> {
    const frame = await this.next(timeoutMs);
    if (frame.type !== type) {
      throw new Error(`expected a ${type} frame, got ${JSON.stringify(frame).slice(0, 300)}`);
    }
    return frame;
  }

  /** Asserts that no frame arrives within `ms`. */
  async expectNothing(ms: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (this.queue.length > 0) throw new Error(`expected no frame, got ${this.queue[0].slice(0, 300)}`);
  }

  /** Frames received and not yet taken. */
  get pending(): number {
    return this.queue.length;
  }

  /** Closes the socket and waits for the close to complete. */
  async close(): Promise<void> {
    if (this.socket.readyState !== WebSocket.CLOSED) this.socket.close();
    await this.closed;
  }
}
