/**
 * WAMP v2 on `/ws` (`wamp.2.json`, broker role) against a real server over real MariaDB: the npm
 * `autobahn` client (autobahn-js, on Deno's native WebSocket) subscribes and gets the snapshot
 * and an update after a database change, is refused a forbidden topic and a wrong realm; raw
 * WebSocket clients check the exact messages of the handshake and of every error.
 */

import assert from "node:assert/strict";
import autobahn from "autobahn";
import { startTestApp, type TestApp, waitFor } from "../support/app.ts";
import { freePort, type TestDatabase } from "../support/mysql.ts";
import { EXPECTED_12, seedTestDatabase } from "../support/seed_fixture.ts";
import { DEBIAN_PYTHON } from "../support/requirements.ts";
import { signToken, tokenAuth } from "../support/tokens.ts";
import { type Frame, TestClient } from "../support/ws_client.ts";
import { topicOfUri } from "../../lib/net/wamp_session.ts";

const BROKER = { roles: { broker: { features: {} } } };

async function withSeed(
  fn: (app: TestApp, db: TestDatabase) => Promise<void>,
  settings: Record<string, unknown> = {},
): Promise<void> {
  const db = await seedTestDatabase();
  try {
    const app = await startTestApp({ plant1: db.settings }, settings);
    try {
      await fn(app, db);
    } finally {
      await app.stop();
    }
  } finally {
    await db.drop();
  }
}

/** A raw `wamp.2.json` client that has sent HELLO for `realm` (with `details`). */
async function hello(app: TestApp, realm = "gatecast", details: Record<string, unknown> = {}) {
  const client = await TestClient.open(app.wsUrl, "wamp.2.json");
  assert.equal(client.socket.protocol, "wamp.2.json");
  client.send([1, realm, { roles: { subscriber: {} }, ...details }]);
  return client;
}

/** A raw client past WELCOME; returns it and the WELCOME. */
async function session(app: TestApp): Promise<[TestClient, Frame]> {
  const client = await hello(app);
  return [client, await client.next()];
}

/** Opens an autobahn-js session; resolves with it, or rejects with the reason it closed. */
function autobahnSession(app: TestApp, options: Record<string, unknown> = {}) {
  const connection = new autobahn.Connection({
    url: app.wsUrl,
    realm: "gatecast",
    max_retries: 0,
    ...options,
  });
  const opened = new Promise<[autobahn.Session, Frame]>((resolve, reject) => {
    connection.onopen = (session: autobahn.Session, details: Frame) => resolve([session, details]);
    connection.onclose = (reason: string, details: { reason?: string; message?: string }) => {
      reject(new Error(`${reason}: ${details.reason ?? ""} ${details.message ?? ""}`));
      return true; // no reconnect
    };
  });
  connection.open();
  return { connection, opened };
}

function closeAutobahn(connection: autobahn.Connection): Promise<void> {
  return new Promise((resolve) => {
    connection.onclose = () => {
      resolve();
      return true;
    };
    connection.close();
  });
}

Deno.test("topic URIs take dots for slashes; a unit keeps its own dots; an empty component is refused", () => {
  assert.equal(topicOfUri("plant1.real.12"), "plant1/real/12");
  assert.equal(topicOfUri("plant1.alarms"), "plant1/alarms");
  assert.equal(topicOfUri("plant1.tanks.north.a"), "plant1/tanks/north.a");
  for (const bad of ["plant1", "plant1..12", ".plant1.real", "plant1.real.", 12, "plant 1.real"]) {
    assert.throws(() => topicOfUri(bad), /is not a topic URI like plant1\.real\.12/);
  }
});

Deno.test("autobahn-js subscribes to plant1.real.12: the snapshot event, then an update event after a database change", async () => {
  await withSeed(async (app, db) => {
    const { connection, opened } = autobahnSession(app);
    const [session] = await opened;
    const events: Frame[] = [];
    await session.subscribe("plant1.real.12", (args: Frame[]) => events.push(args[0]));
    await waitFor("the snapshot event", () => events.length >= 1);
    assert.equal(events[0].type, "snapshot");
    assert.equal(events[0].topic, "plant1/real/12");
    assert.equal(events[0].seq, 1);
    assert.equal(events[0].points.length, EXPECTED_12.length);
    await db.setData("GW1", { ua: 231.5, ia: 10, ub: 1 });
    await waitFor("the update event", () => events.length >= 2);
    assert.equal(events[1].type, "update");
    assert.equal(events[1].seq, 2);
    assert.deepEqual(events[1].changes, [{ address: "GW1", code: "ua", value: 231.5 }]);
    await closeAutobahn(connection);
  });
});

Deno.test("Debian's autobahn-python subscribes to plant1.real.12: the snapshot event, then an update event", async () => {
  await withSeed(async (app, db) => {
    const script = new URL("../support/wamp_python_client.py", import.meta.url).pathname;
    const child = new Deno.Command(DEBIAN_PYTHON, {
      args: [script, app.wsUrl, "gatecast", "plant1.real.12", "2"],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const lines: Frame[] = [];
    const reading = (async () => {
      let rest = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        // autobahn-python logs its own lines too; the client's output is one JSON object a line.
        lines.push(...parts.filter((line) => line.startsWith("{")).map((line) => JSON.parse(line)));
      }
    })();
    const errors = new Response(child.stderr).text();
    try {
      // The snapshot EVENT may come before the SUBSCRIBED answer reaches the client's code.
      const events = () => lines.filter((line) => line.type !== undefined);
      await waitFor("the Python client's snapshot event", () => events().length >= 1, 20_000);
      const snapshot = events()[0];
      assert.equal(snapshot.type, "snapshot");
      assert.equal(snapshot.topic, "plant1/real/12");
      // The topic's first state: seq 1 of the topic's epoch, a non-empty string.
      assert.equal(snapshot.seq, 1);
      assert.ok(
        typeof snapshot.epoch === "string" && snapshot.epoch !== "",
        `epoch of ${JSON.stringify(snapshot)}`,
      );
      assert.equal(snapshot.points.length, EXPECTED_12.length);
      await waitFor("the Python client's subscription", () => lines.some((line) => line.subscribed), 20_000);
      await db.setData("GW1", { ua: 232.5, ia: 10, ub: 1 });
      await waitFor("the Python client's update event", () => events().length >= 2, 20_000);
      const update = events()[1];
      assert.equal(update.type, "update");
      assert.equal(update.topic, "plant1/real/12");
      assert.equal(update.seq, snapshot.seq + 1);
      assert.equal(update.epoch, snapshot.epoch);
      assert.deepEqual(update.changes, [{ address: "GW1", code: "ua", value: 232.5 }]);
      const status = await child.status;
      assert.equal(status.code, 0, await errors);
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      await reading;
      await errors;
    }
  });
});

Deno.test("autobahn-js with another realm is refused: ABORT wamp.error.no_such_realm", async () => {
  await withSeed(async (app) => {
    const { opened } = autobahnSession(app, { realm: "other" });
    await assert.rejects(opened, /wamp\.error\.no_such_realm/);
  });
});

Deno.test("autobahn-js with a WAMP-Ticket JWT reads its topics and gets wamp.error.not_authorized for another", async () => {
  await withSeed(async (app) => {
    const ticket = await signToken({ sub: "ops", topics: ["plant1/real/12"] });
    const { connection, opened } = autobahnSession(app, {
      authmethods: ["ticket"],
      onchallenge: (_session: unknown, method: string) => {
        assert.equal(method, "ticket");
        return ticket;
      },
    });
    const [session, welcome] = await opened;
    assert.equal(welcome.authid, "ops");
    assert.equal(welcome.authmethod, "ticket");
    const events: Frame[] = [];
    await session.subscribe("plant1.real.12", (args: Frame[]) => events.push(args[0]));
    await waitFor("the snapshot event", () => events.length >= 1);
    await assert.rejects(
      session.subscribe("plant1.real.13", () => {}),
      (error: { error: string; args: string[] }) => {
        assert.equal(error.error, "wamp.error.not_authorized");
        assert.deepEqual(error.args, ["your token does not grant 'plant1/real/13'"]);
        return true;
      },
    );
    await closeAutobahn(connection);
  }, { auth: tokenAuth() });
});

Deno.test("the raw handshake: HELLO → WELCOME with the broker role, SUBSCRIBE → SUBSCRIBED, the snapshot EVENT, UNSUBSCRIBE → UNSUBSCRIBED, GOODBYE → GOODBYE and close", async () => {
  await withSeed(async (app) => {
    const [client, welcome] = await session(app);
    assert.equal(welcome.length, 3);
    assert.equal(welcome[0], 2);
    assert.ok(Number.isInteger(welcome[1]) && welcome[1] >= 1 && welcome[1] <= 2 ** 53);
    assert.deepEqual(welcome[2], BROKER);
    client.send([32, 7, {}, "plant1.real.12"]);
    const subscribed = await client.next();
    assert.deepEqual(subscribed.slice(0, 2), [33, 7]);
    const subscription = subscribed[2];
    const event = await client.next();
    assert.equal(event[0], 36);
    assert.equal(event[1], subscription);
    assert.ok(Number.isInteger(event[2]));
    assert.deepEqual(event[3], {});
    assert.equal(event[4].length, 1);
    assert.equal(event[4][0].type, "snapshot");
    assert.equal(event[4][0].topic, "plant1/real/12");
    client.send([34, 8, subscription]);
    assert.deepEqual(await client.next(), [35, 8]);
    client.send([34, 9, subscription]);
    assert.deepEqual(await client.next(), [
      8,
      34,
      9,
      {},
      "wamp.error.no_such_subscription",
      [`no subscription ${subscription} on this session`],
    ]);
    client.send([6, {}, "wamp.close.close_realm"]);
    assert.deepEqual(await client.next(), [6, {}, "wamp.close.goodbye_and_out"]);
    assert.equal((await client.closed).code, 1000);
  });
});

Deno.test("two WAMP subscribers of a topic share its subscription id and get the same EVENT text", async () => {
  await withSeed(async (app, db) => {
    const [a] = await session(app);
    const [b] = await session(app);
    a.send([32, 1, {}, "plant1.real.12"]);
    const [, , idA] = await a.next();
    await a.next(); // snapshot
    b.send([32, 1, {}, "plant1.real.12"]);
    const [, , idB] = await b.next();
    assert.equal(idB, idA);
    await b.next(); // snapshot
    // Both at seq 1: the update is one text for both (the same publication id too).
    await db.setData("GW1", { ua: 240, ia: 10, ub: 1 });
    const [textA, textB] = await Promise.all([a.nextText(), b.nextText()]);
    assert.equal(textA, textB);
    assert.equal(JSON.parse(textA)[4][0].type, "update");
    a.socket.close();
    b.socket.close();
    await Promise.all([a.closed, b.closed]);
  });
});

Deno.test("a SUBSCRIBE the broker cannot serve gets ERROR with the URI of its reason", async () => {
  await withSeed(async (app) => {
    const [client] = await session(app);
    const cases: [unknown, string, string][] = [
      [
        "plant1",
        "wamp.error.invalid_uri",
        'topic "plant1" is not a topic URI like plant1.real.12 or plant1.alarms',
      ],
      ["plant1.real.0", "wamp.error.invalid_uri", ""],
      ["plant9.real.12", "gatecast.error.unknown_db", "no database 'plant9' is configured"],
      ["plant1.nope.12", "gatecast.error.unknown_handle", ""],
    ];
    let request = 100;
    for (const [uri, error, message] of cases) {
      client.send([32, ++request, {}, uri]);
      const answer = await client.next();
      assert.deepEqual(answer.slice(0, 5), [8, 32, request, {}, error], `${uri}`);
      if (message) assert.deepEqual(answer[5], [message]);
      else assert.equal(typeof answer[5][0], "string");
    }
    client.send([32, 200, { match: "prefix" }, "plant1.real"]);
    assert.deepEqual(await client.next(), [
      8,
      32,
      200,
      {},
      "wamp.error.invalid_argument",
      ['match "prefix" is not supported; topics match exactly'],
    ]);
    client.socket.close();
    await client.closed;
  });
});

Deno.test("a SUBSCRIBE past maxSubscriptionsPerConnection gets gatecast.error.too_many_subscriptions", async () => {
  await withSeed(async (app) => {
    const [client] = await session(app);
    client.send([32, 1, {}, "plant1.real.12"]);
    assert.equal((await client.next())[0], 33);
    await client.next(); // snapshot
    client.send([32, 2, {}, "plant1.real.13"]);
    assert.deepEqual(await client.next(), [
      8,
      32,
      2,
      {},
      "gatecast.error.too_many_subscriptions",
      ["a connection may hold at most 1 subscriptions"],
    ]);
    client.socket.close();
    await client.closed;
  }, { maxSubscriptionsPerConnection: 1 });
});

Deno.test("PUBLISH, CALL and REGISTER are answered with ERROR, never dropped", async () => {
  await withSeed(async (app) => {
    const [client] = await session(app);
    client.send([16, 1, { acknowledge: true }, "plant1.real.12", [1]]);
    assert.deepEqual(await client.next(), [
      8,
      16,
      1,
      {},
      "wamp.error.not_authorized",
      ["gatecast publishes its topics itself; clients only subscribe"],
    ]);
    client.send([48, 2, {}, "com.example.add"]);
    assert.deepEqual(await client.next(), [
      8,
      48,
      2,
      {},
      "wamp.error.no_such_procedure",
      ["gatecast is a broker only: it has no procedures to call"],
    ]);
    client.send([64, 3, {}, "com.example.add"]);
    assert.deepEqual(await client.next(), [
      8,
      64,
      3,
      {},
      "wamp.error.not_authorized",
      ["gatecast is a broker only: procedures cannot be registered"],
    ]);
    client.socket.close();
    await client.closed;
  });
});

Deno.test("a raw HELLO for another realm gets ABORT wamp.error.no_such_realm and the close", async () => {
  await withSeed(async (app) => {
    const client = await hello(app, "factory");
    assert.deepEqual(await client.next(), [
      3,
      { message: "no realm 'factory'; this router serves 'gatecast'" },
      "wamp.error.no_such_realm",
    ]);
    assert.equal((await client.closed).code, 1000);
  });
});

Deno.test("wampRealm names the realm served", async () => {
  await withSeed(async (app) => {
    const client = await hello(app, "plant.floor");
    const welcome = await client.next();
    assert.equal(welcome[0], 2);
    client.socket.close();
    await client.closed;
  }, { wampRealm: "plant.floor" });
});

Deno.test("a message before HELLO, or that is not a WAMP array, aborts with wamp.error.protocol_violation", async () => {
  await withSeed(async (app) => {
    const early = await TestClient.open(app.wsUrl, "wamp.2.json");
    early.send([32, 1, {}, "plant1.real.12"]);
    assert.deepEqual(await early.next(), [
      3,
      { message: "expected HELLO (1), got message 32" },
      "wamp.error.protocol_violation",
    ]);
    await early.closed;
    const [client] = await session(app);
    client.send('{"type":"subscribe"}');
    assert.deepEqual(await client.next(), [
      3,
      { message: "a message must be a JSON array starting with its message code" },
      "wamp.error.protocol_violation",
    ]);
    await client.closed;
  });
});

Deno.test("with tokens on: HELLO offering ticket gets CHALLENGE, AUTHENTICATE with an API key or JWT gets WELCOME; a bad ticket ABORT; no ticket ABORT", async () => {
  await withSeed(async (app) => {
    const token = await signToken({ sub: "ops", topics: ["plant1/real/*"] });
    const client = await hello(app, "gatecast", { authmethods: ["ticket"], authid: "ops" });
    assert.deepEqual(await client.next(), [4, "ticket", {}]);
    client.send([5, token, {}]);
    const welcome = await client.next();
    assert.equal(welcome[0], 2);
    assert.deepEqual(welcome[2], { ...BROKER, authid: "ops", authrole: "user", authmethod: "ticket" });
    client.send([32, 1, {}, "plant1.real.13"]);
    assert.equal((await client.next())[0], 33);
    client.socket.close();
    await client.closed;

    const bad = await hello(app, "gatecast", { authmethods: ["ticket"] });
    assert.deepEqual(await bad.next(), [4, "ticket", {}]);
    bad.send([5, "not-a-key", {}]);
    assert.deepEqual(await bad.next(), [
      3,
      { message: "authentication failed: unknown API key or malformed token" },
      "wamp.error.authentication_failed",
    ]);
    await bad.closed;

    const none = await hello(app);
    const abort = await none.next();
    assert.deepEqual(abort.slice(0, 1).concat(abort.slice(2)), [3, "wamp.error.no_auth_method"]);
    await none.closed;
  }, { auth: tokenAuth() });
});

Deno.test("a WAMP session over the frame rate gets ERROR gatecast.error.rate_limited for its requests", async () => {
  await withSeed(async (app) => {
    const [client] = await session(app);
    for (let request = 1; request <= 3; request++) client.send([48, request, {}, "x"]);
    const answers = [await client.next(), await client.next(), await client.next()];
    assert.deepEqual(answers.map((a) => a[4]), [
      "wamp.error.no_such_procedure",
      "gatecast.error.rate_limited",
      "gatecast.error.rate_limited",
    ]);
    client.socket.close();
    await client.closed;
  }, { maxFramesPerSecond: 2 });
});

Deno.test("a WAMP frame over maxFrameBytes closes the session with 1009", async () => {
  await withSeed(async (app) => {
    const [client] = await session(app);
    client.send([32, 1, {}, "x".repeat(600)]);
    assert.equal((await client.closed).code, 1009);
  }, { maxFrameBytes: 512 });
});

Deno.test("a topic whose database is down reaches a WAMP subscriber as an EVENT carrying the stale frame", async () => {
  const app = await startTestApp({
    plant1: { host: "127.0.0.1", port: await freePort(), user: "nobody", database: "none" },
  });
  try {
    const [client] = await session(app);
    client.send([32, 1, {}, "plant1.real.12"]);
    const [, , subscription] = await client.next();
    const event = await client.next();
    assert.deepEqual(event.slice(0, 2), [36, subscription]);
    assert.equal(event[4][0].type, "stale");
    assert.equal(event[4][0].topic, "plant1/real/12");
    assert.equal(event[4][0].code, "SOURCE_UNAVAILABLE");
    client.socket.close();
    await client.closed;
  } finally {
    await app.stop();
  }
});
