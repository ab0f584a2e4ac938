/**
 * Protocol v1 frames: parsing client frames into typed values or errors with codes, and the
 * exact text of the small server frames.
 */

import assert from "node:assert/strict";
import { LegacyFrameError } from "../../lib/wire/legacy.ts";
import {
  ackFrame,
  CloseCode,
  ErrorCode,
  errorFrame,
  parseClientFrame,
  pongFrame,
  ProtocolError,
  staleFrame,
  SUBPROTOCOL,
} from "../../lib/wire/protocol.ts";

function protocolError(code: ErrorCode, message: string, id?: number | string) {
  return (error: unknown) => {
    assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
    assert.equal(error.code, code);
    assert.equal(error.message, message);
    assert.equal(error.id, id);
    return true;
  };
}

Deno.test("the subprotocol is gatecast.v1", () => {
  assert.equal(SUBPROTOCOL, "gatecast.v1");
});

Deno.test("error codes are UPPER_SNAKE and include those the contract lists", () => {
  for (const code of ["BAD_JSON", "BAD_FRAME", "UNKNOWN_TYPE", "BAD_TOPIC", "UNKNOWN_DB", "UNKNOWN_HANDLE"]) {
    assert.equal((ErrorCode as Record<string, string>)[code], code);
  }
  for (const [key, value] of Object.entries(ErrorCode)) {
    assert.equal(key, value);
    assert.match(value, /^[A-Z]+(_[A-Z]+)*$/);
  }
});

Deno.test("close codes are 1001 going away, 1008 policy, 1009 too big, 4008 slow consumer, and the security codes", () => {
  assert.deepEqual(CloseCode, {
    GOING_AWAY: 1001,
    POLICY_VIOLATION: 1008,
    MESSAGE_TOO_BIG: 1009,
    SLOW_CONSUMER: 4008,
    FIRST_FRAME_TIMEOUT: 4000,
    AUTH_TIMEOUT: 4001,
    AUTH_FAILED: 4003,
    TOKEN_EXPIRED: 4004,
    RATE_LIMITED: 4029,
  });
});

Deno.test("an auth frame parses with its token; a token that is not a non-empty string is BAD_FRAME", () => {
  assert.deepEqual(parseClientFrame('{"type":"auth","id":5,"token":"abc"}'), {
    type: "auth",
    id: 5,
    token: "abc",
  });
  assert.throws(
    () => parseClientFrame('{"type":"auth","id":6,"token":7}'),
    protocolError("BAD_FRAME", '"token" must be a non-empty string, got 7', 6),
  );
});

Deno.test("subscribe, unsubscribe and ping frames parse with their id and topic", () => {
  assert.deepEqual(parseClientFrame('{"type":"subscribe","id":1,"topic":"plant1/real/12"}'), {
    type: "subscribe",
    id: 1,
    topics: ["plant1/real/12"],
    batch: false,
  });
  assert.deepEqual(parseClientFrame('{"type":"unsubscribe","id":"a","topic":"plant1/real/12"}'), {
    type: "unsubscribe",
    id: "a",
    topics: ["plant1/real/12"],
    batch: false,
  });
  assert.deepEqual(parseClientFrame('{"type":"ping","id":3}'), { type: "ping", id: 3 });
});

Deno.test("the id is optional and unknown extra fields are ignored", () => {
  assert.deepEqual(parseClientFrame('{"type":"ping"}'), { type: "ping", id: undefined });
  assert.deepEqual(parseClientFrame('{"type":"ping","id":3,"extra":true}'), { type: "ping", id: 3 });
});

Deno.test("the topic is passed through unchecked, to be validated against the configuration", () => {
  assert.deepEqual(parseClientFrame('{"type":"subscribe","id":1,"topic":5}'), {
    type: "subscribe",
    id: 1,
    topics: [5],
    batch: false,
  });
  assert.deepEqual(parseClientFrame('{"type":"unsubscribe"}'), {
    type: "unsubscribe",
    id: undefined,
    topics: [undefined],
    batch: false,
  });
});

Deno.test("the batch form lists its topics in order, each passed through unchecked as a string", () => {
  assert.deepEqual(
    parseClientFrame('{"type":"subscribe","id":7,"topics":["plant1/real/2","plant1/real/1","nonsense"]}'),
    { type: "subscribe", id: 7, topics: ["plant1/real/2", "plant1/real/1", "nonsense"], batch: true },
  );
  assert.deepEqual(parseClientFrame('{"type":"unsubscribe","topics":["plant1/real/1"]}'), {
    type: "unsubscribe",
    id: undefined,
    topics: ["plant1/real/1"],
    batch: true,
  });
});

Deno.test("a batch that is not a non-empty list of distinct strings, or comes with a topic, is BAD_FRAME with the frame's id", () => {
  const cases: [string, string][] = [
    [
      '{"type":"subscribe","id":1,"topic":"plant1/real/1","topics":["plant1/real/2"]}',
      'a subscribe frame names one "topic" or a list of "topics", not both',
    ],
    [
      '{"type":"subscribe","id":1,"topics":"plant1/real/1"}',
      '"topics" must be an array of topic strings, got "plant1/real/1"',
    ],
    [
      '{"type":"unsubscribe","id":1,"topics":{"a":1}}',
      '"topics" must be an array of topic strings, got an object',
    ],
    ['{"type":"subscribe","id":1,"topics":null}', '"topics" must be an array of topic strings, got null'],
    ['{"type":"subscribe","id":1,"topics":[]}', '"topics" must name at least one topic'],
    [
      '{"type":"subscribe","id":1,"topics":["plant1/real/1",12]}',
      '"topics[1]" must be a topic string, got 12',
    ],
    [
      '{"type":"subscribe","id":1,"topics":[["plant1/real/1"]]}',
      '"topics[0]" must be a topic string, got an array',
    ],
    [
      '{"type":"subscribe","id":1,"topics":["plant1/real/1","plant1/real/2","plant1/real/1"]}',
      '"topics" names "plant1/real/1" twice (at 2); name each topic once',
    ],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseClientFrame(text), protocolError("BAD_FRAME", message, 1), text);
  }
});

Deno.test("text that is not JSON is BAD_JSON", () => {
  for (const text of ["{not json", "", "{'type': 'ping'}"]) {
    assert.throws(() => parseClientFrame(text), protocolError("BAD_JSON", "frame is not valid JSON"));
  }
});

Deno.test("JSON that is not an object is BAD_FRAME naming what was sent", () => {
  assert.throws(
    () => parseClientFrame("[1,2]"),
    protocolError("BAD_FRAME", "frame must be a JSON object, got an array"),
  );
  assert.throws(
    () => parseClientFrame("null"),
    protocolError("BAD_FRAME", "frame must be a JSON object, got null"),
  );
  assert.throws(
    () => parseClientFrame('"str"'),
    protocolError("BAD_FRAME", 'frame must be a JSON object, got "str"'),
  );
});

Deno.test("a missing or non-string type is BAD_FRAME and keeps the frame's id", () => {
  assert.throws(
    () => parseClientFrame("{}"),
    protocolError("BAD_FRAME", '"type" must be a string, got undefined'),
  );
  assert.throws(
    () => parseClientFrame('{"type":5,"id":2}'),
    protocolError("BAD_FRAME", '"type" must be a string, got 5', 2),
  );
});

Deno.test("an unknown type is UNKNOWN_TYPE listing the accepted types, with the frame's id", () => {
  assert.throws(
    () => parseClientFrame('{"type":"dance","id":4}'),
    protocolError(
      "UNKNOWN_TYPE",
      'unknown type "dance"; expected one of subscribe, unsubscribe, ping, auth',
      4,
    ),
  );
});

Deno.test("an id that is a fraction, null, an object, an unsafe integer or a long string is BAD_FRAME", () => {
  const message = (got: string) => `"id" must be an integer or a string of at most 64 characters, got ${got}`;
  assert.throws(
    () => parseClientFrame('{"type":"ping","id":1.5}'),
    protocolError("BAD_FRAME", message("1.5")),
  );
  assert.throws(
    () => parseClientFrame('{"type":"ping","id":null}'),
    protocolError("BAD_FRAME", message("null")),
  );
  assert.throws(
    () => parseClientFrame('{"type":"ping","id":{"x":1}}'),
    protocolError("BAD_FRAME", message("an object")),
  );
  assert.throws(
    () => parseClientFrame('{"type":"ping","id":90071992547409911}'),
    protocolError("BAD_FRAME", message("90071992547409900")),
  );
  assert.throws(
    () => parseClientFrame(JSON.stringify({ type: "ping", id: "x".repeat(65) })),
    protocolError("BAD_FRAME", message(`"${"x".repeat(32)}…"`)),
  );
  assert.deepEqual(parseClientFrame(JSON.stringify({ type: "ping", id: "x".repeat(64) })), {
    type: "ping",
    id: "x".repeat(64),
  });
});

Deno.test("the seed's subscription, as JSON or a Python dict, parses as a legacy frame", () => {
  const expected = {
    type: "legacy",
    subscription: { db: "plant1", handle: "real", unit: 3, sentConfig: true },
  };
  assert.deepEqual(
    parseClientFrame('{"db_code":"plant1","unit_id":3,"handle":"real","config":"x"}'),
    expected,
  );
  assert.deepEqual(
    parseClientFrame("{'db_code': 'plant1', 'unit_id': 3, 'handle': 'real', 'config': 'x'}"),
    expected,
  );
});

Deno.test("an object with a type is a v1 frame even when it also has db_code", () => {
  assert.deepEqual(parseClientFrame('{"type":"ping","db_code":"plant1"}'), { type: "ping", id: undefined });
});

Deno.test("a legacy frame that cannot be served throws LegacyFrameError naming the field", () => {
  assert.throws(
    () => parseClientFrame('{"db_code":9}'),
    (error: unknown) =>
      error instanceof LegacyFrameError && error.message === "db_code must match [A-Za-z0-9_-]{1,64}, got 9",
  );
});

Deno.test("errorFrame, ackFrame, pongFrame and staleFrame produce the exact v1 text", () => {
  assert.equal(
    errorFrame("UNKNOWN_DB", "no database 'plant9' is configured", 1),
    `{"type":"error","id":1,"code":"UNKNOWN_DB","message":"no database 'plant9' is configured"}`,
  );
  assert.equal(
    errorFrame("BAD_JSON", "frame is not valid JSON"),
    `{"type":"error","code":"BAD_JSON","message":"frame is not valid JSON"}`,
  );
  assert.equal(
    ackFrame("subscribed", "plant1/real/12", 1),
    `{"type":"subscribed","id":1,"topic":"plant1/real/12"}`,
  );
  assert.equal(
    ackFrame("unsubscribed", "plant1/real/12", "x"),
    `{"type":"unsubscribed","id":"x","topic":"plant1/real/12"}`,
  );
  assert.equal(ackFrame("subscribed", "plant1/real/12"), `{"type":"subscribed","topic":"plant1/real/12"}`);
  assert.equal(
    errorFrame("UNKNOWN_DB", "no database 'plant9' is configured", 2, "plant9/real/1"),
    `{"type":"error","id":2,"code":"UNKNOWN_DB","message":"no database 'plant9' is configured","topic":"plant9/real/1"}`,
  );
  assert.equal(pongFrame(3), `{"type":"pong","id":3}`);
  assert.equal(pongFrame(), `{"type":"pong"}`);
  assert.equal(
    staleFrame("plant1/real/12", "e1", {
      code: "SOURCE_UNAVAILABLE",
      message: "database 'plant1' is unavailable",
    }),
    `{"type":"stale","topic":"plant1/real/12","epoch":"e1","code":"SOURCE_UNAVAILABLE","message":"database 'plant1' is unavailable"}`,
  );
});
