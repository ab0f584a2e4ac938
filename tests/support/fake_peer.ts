/**
 * A fake connection for registry, fan-out and poller tests: the test sets what `admit()`
 * answers, and every sent frame is kept, as text, in order.
 */

import type { Peer, Subscription } from "../../lib/hub/registry.ts";

let nextId = 1;

/** A {@link Peer} that records frames instead of writing to a socket. */
export class FakePeer implements Peer {
  /** A unique id, as a connection has. */
  readonly id = nextId++;
  /** What the next `admit()` calls answer. */
  admits: "send" | "skip" | "dropped" = "send";
  /** Frames sent, in order. */
  readonly sent: string[] = [];

  /** Answers {@link admits}. */
  admit(): "send" | "skip" | "dropped" {
    return this.admits;
  }

  /** Keeps the frame. */
  send(text: string): void {
    this.sent.push(text);
  }

  /** Subscriptions ended by the server, with their messages. */
  readonly revoked: { topic: string; code: string; message: string }[] = [];

  /** Records the ended subscription (a real connection also unsubscribes it). */
  revoke(subscription: Subscription, code: string, message: string): void {
    this.revoked.push({ topic: subscription.topic.name.key, code, message });
  }

  /** The frames sent, parsed. */
  // deno-lint-ignore no-explicit-any
  frames(): any[] {
    return this.sent.map((text) => JSON.parse(text));
  }

  /** Removes and returns the frames sent so far, parsed. */
  // deno-lint-ignore no-explicit-any
  take(): any[] {
    const frames = this.frames();
    this.sent.length = 0;
    return frames;
  }
}
