/**
 * WAMP v2 EVENT frames (`wamp.2.json`, broker role): `[36, subscription, publication, {}, [frame]]`
 * whose one argument is the v1 frame a `/ws` client gets. Every WAMP subscriber of a topic shares
 * the topic's subscription id, so one EVENT text serves them all, encoded once per topic and tick
 * like the v1 frame it wraps. Pure, no I/O.
 */

import type { Encoder, Frame, Stale } from "../hub/fanout.ts";
import type { Topic } from "../hub/registry.ts";
import { pointsV1 } from "./points_v1.ts";
import { rowsV1 } from "./rows_v1.ts";

/** The WAMP message codes gatecast reads or writes (WAMP v2 Basic Profile). */
export const WampCode = {
  HELLO: 1,
  WELCOME: 2,
  ABORT: 3,
  CHALLENGE: 4,
  AUTHENTICATE: 5,
  GOODBYE: 6,
  ERROR: 8,
  PUBLISH: 16,
  SUBSCRIBE: 32,
  SUBSCRIBED: 33,
  UNSUBSCRIBE: 34,
  UNSUBSCRIBED: 35,
  EVENT: 36,
  CALL: 48,
  REGISTER: 64,
  UNREGISTER: 66,
  YIELD: 70,
} as const;

/** The subprotocol of WAMP v2 over JSON. */
export const WAMP_SUBPROTOCOL = "wamp.2.json";

// WAMP ids are integers from 1 to 2^53; counters stay far below that in a process's life.
let lastSubscriptionId = 0;
let lastPublicationId = 0;
const subscriptionIds = new WeakMap<Topic, number>();

/**
 * The subscription id of a topic, the same for every WAMP subscriber while the topic has
 * subscribers (a topic forgotten and subscribed again gets a new one).
 *
 * @example
 * ```ts
 * subscriptionIdOf(topic) === subscriptionIdOf(topic); // true
 * ```
 */
export function subscriptionIdOf(topic: Topic): number {
  let id = subscriptionIds.get(topic);
  if (id === undefined) subscriptionIds.set(topic, id = ++lastSubscriptionId);
  return id;
}

/** A v1 frame wrapped in an EVENT with a publication id of its own: the v1 frame's length plus the ASCII envelope. */
function eventFrame(subscription: number, inner: Frame): Frame {
  const text = eventText(subscription, inner.text);
  return { text, bytes: text.length - inner.text.length + inner.bytes };
}

function eventText(subscription: number, frame: string): string {
  return `[${WampCode.EVENT},${subscription},${++lastPublicationId},{},[${frame}]]`;
}

const staleEvents = new WeakMap<Topic, { stale: Stale; text: string }>();

/**
 * The WAMP encoder over a v1 encoder: the same frames, snapshot first, then updates and `stale`,
 * each as the one argument of an EVENT.
 *
 * @example
 * ```ts
 * const encoder = wampEncoder(pointsV1);
 * encoder.snapshot(topic).text; // '[36,1,1,{},[{"type":"snapshot","topic":"plant1/real/12","seq":1,"epoch":…}]]'
 * ```
 */
export function wampEncoder(v1: Encoder): Encoder {
  return {
    incremental: true,
    snapshot(topic) {
      return eventFrame(subscriptionIdOf(topic), v1.snapshot(topic));
    },
    update(topic, previous, delta) {
      const frame = v1.update(topic, previous, delta);
      return frame && eventFrame(subscriptionIdOf(topic), frame);
    },
    stale(topic) {
      // One text per outage for every subscriber of the topic, as for the other frames.
      const stale = topic.feed.stale!;
      const cached = staleEvents.get(topic);
      if (cached?.stale === stale) return cached.text;
      const inner = v1.stale(topic);
      if (inner === undefined) return undefined;
      const text = eventText(subscriptionIdOf(topic), inner);
      staleEvents.set(topic, { stale, text });
      return text;
    },
  };
}

/** WAMP EVENTs of the `real` handle's points. */
export const wampPoints: Encoder = wampEncoder(pointsV1);

/** WAMP EVENTs of the configured handles' rows. */
export const wampRows: Encoder = wampEncoder(rowsV1);
