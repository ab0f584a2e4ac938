/**
 * One Server-Sent Events response stream as a {@link Peer}: it holds the topics its request
 * named, from the start to the end of the stream, and guards its buffer as a WebSocket
 * connection guards its send buffer. The stream's queue counts bytes; over the soft limit frames
 * are held back (a fresh snapshot follows once drained), over the hard limit (or soft for longer
 * than `slowClientGraceMs`) the stream is ended and counted as a dropped slow client.
 *
 * A comment line every half `keepAliveSeconds` keeps proxies from closing an idle stream and
 * lets a stalled client be noticed when nothing is published.
 */

import type { Config } from "../config/config.ts";
import { welcome } from "../hub/fanout.ts";
import type { Peer, Registry, Subscription } from "../hub/registry.ts";
import type { TopicName } from "../hub/topic.ts";
import type { Handle } from "../handles/handle.ts";
import type { Logger } from "../ops/log.ts";
import type { Counter, Metrics } from "../ops/metrics.ts";
import { encoderFor } from "../wire/encoders.ts";
import { type ErrorCode, errorFrame } from "../wire/protocol.ts";
import { SSE_HEARTBEAT, sseEvent } from "../wire/sse.ts";
import { utf8Length } from "../wire/utf8.ts";
import { SlowClientJudge } from "./send_buffer.ts";

/** What a stream needs from the rest of the server. */
export interface SseContext {
  /** Limits and settings, read when used (a reload reaches open streams). */
  readonly config: Config;
  /** Topics and subscribers. */
  readonly registry: Registry;
  /** Counters. */
  readonly metrics: Metrics;
  /** Logs. */
  readonly logger: Logger;
}

/** How long a disconnected `EventSource` waits before it reconnects (the stream's `retry:`). */
export const SSE_RETRY_MS = 2000;

let nextId = 1;

// The fan-out sends one event text to every stream at that `seq` in turn: encode it once.
const encoder = new TextEncoder();
let lastText = "";
let lastBytes = new Uint8Array();

function encoded(text: string): Uint8Array {
  if (text !== lastText) {
    lastText = text;
    lastBytes = encoder.encode(text);
  }
  return lastBytes;
}

/**
 * An SSE client: {@link SsePeer.body} is the response body, {@link SsePeer.subscribe} takes the
 * topics the request named (already resolved and allowed).
 *
 * @example
 * ```ts
 * const peer = new SsePeer(context, remote);
 * peer.subscribe([[name, handle]]);
 * return new Response(peer.body, { headers: { "content-type": "text/event-stream" } });
 * ```
 */
export class SsePeer implements Peer {
  /** Process-unique id, for logs. */
  readonly id = nextId++;
  /** The response body: the stream's events as UTF-8. */
  readonly body: ReadableStream<Uint8Array>;
  /** Called once, after the stream ended and its subscriptions were released. */
  onGone: (() => void) | undefined;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly heartbeat: ReturnType<typeof setInterval>;
  private readonly sent: { frames: Counter; bytes: Counter };
  private readonly judge = new SlowClientJudge();
  private closed = false;

  /**
   * @param context the server's shared parts
   * @param remote the client's address, for logs
   */
  constructor(private readonly context: SseContext, private readonly remote: string) {
    this.body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.controller = controller;
      },
      // Deno cancels a response body whose client went away (`request.signal` is not read: in
      // Deno 2.9 reading it warns, and it aborts only once the response has ended).
      cancel: () => this.release("client gone"),
    }, { highWaterMark: 0, size: (chunk) => chunk.byteLength });
    this.sent = {
      frames: context.metrics.counter("gatecast_frames_sent_total"),
      bytes: context.metrics.counter("gatecast_sent_bytes_total"),
    };
    this.write(`retry: ${SSE_RETRY_MS}\n\n`);
    this.heartbeat = setInterval(() => {
      if (this.admit() === "send") this.write(SSE_HEARTBEAT);
    }, context.config.keepAliveSeconds * 500);
  }

  /** Number of topics held. */
  get subscriptionCount(): number {
    return this.subscriptions.size;
  }

  /** Subscribes to each topic (the caller resolved and allowed them) and welcomes each subscription. */
  subscribe(topics: Iterable<readonly [TopicName, Handle]>): void {
    for (const [name, handle] of topics) {
      if (this.closed || this.subscriptions.has(name.key)) continue;
      const subscription = this.context.registry.subscribe(name, this, encoderFor("sse", handle.frames));
      this.subscriptions.set(name.key, subscription);
      welcome(subscription);
    }
  }

  /** Implements {@link Peer.admit}: checks the stream's queued bytes before a frame. */
  admit(): "send" | "skip" | "dropped" {
    if (this.closed) return "dropped";
    // desiredSize is the high-water mark (0) less the bytes queued.
    const pressure = this.judge.judge(-(this.controller.desiredSize ?? 0), this.context.config);
    if (pressure === "under_soft") return "send";
    if (pressure === "over_soft") {
      this.context.metrics.inc("gatecast_frames_held_back_total");
      return "skip";
    }
    this.dropSlow(pressure.slow, pressure.buffered);
    return "dropped";
  }

  /** Implements {@link Peer.send}. */
  send(text: string, bytes?: number): void {
    if (this.closed) return;
    this.write(text);
    this.sent.frames.add();
    this.sent.bytes.add(bytes ?? utf8Length(text));
  }

  /**
   * Implements {@link Peer.revoke}: ends one subscription the server can no longer serve with a
   * `revoked` event (its data the v1 `error` frame naming the topic); the stream ends with its
   * last subscription.
   */
  revoke(subscription: Subscription, code: ErrorCode, message: string): void {
    const key = subscription.topic.name.key;
    if (this.subscriptions.get(key) !== subscription) return;
    this.subscriptions.delete(key);
    this.context.registry.unsubscribe(subscription);
    this.write(sseEvent("revoked", errorFrame(code, message, undefined, key)));
    if (this.subscriptions.size === 0) this.end(message);
  }

  /**
   * Ends the stream after what is queued (shutdown, last subscription revoked) and releases every
   * subscription. SSE has no close code: `code` is ignored, `reason` goes to the log.
   */
  close(_code: number, reason: string): void {
    this.end(reason);
  }

  /** Ends the stream after what is queued. */
  private end(reason: string): void {
    if (this.closed) return;
    this.release(reason);
    try {
      this.controller.close();
    } catch {
      // already closed or cancelled
    }
  }

  private write(text: string): void {
    try {
      this.controller.enqueue(encoded(text));
    } catch {
      this.release("client gone"); // the stream was cancelled under us
    }
  }

  /** Ends a stream whose client is not reading: its queue is thrown away (the client reconnects). */
  private dropSlow(why: string, buffered: number): void {
    this.context.metrics.inc("gatecast_clients_dropped_total", { reason: why });
    this.context.logger.warn("dropping client", { sse: this.id, remote: this.remote, reason: why, buffered });
    this.release(why);
    this.controller.error(new Error("client is not reading its events"));
  }

  /** Releases every subscription once. */
  private release(why: string): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    for (const subscription of this.subscriptions.values()) this.context.registry.unsubscribe(subscription);
    this.subscriptions.clear();
    this.context.logger.debug("event stream closed", { sse: this.id, remote: this.remote, why });
    this.onGone?.();
  }
}
