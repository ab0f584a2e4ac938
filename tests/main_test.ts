/**
 * `main.ts` as operators run it: a real child process. Help and version exit 0; every bad flag
 * or configuration value exits 2 with exactly one line on stderr naming the flag or JSON path;
 * a real start logs "listening", serves `/healthz`, and exits 0 on SIGTERM.
 */

import assert from "node:assert/strict";
import { HELP, VERSION } from "../lib/config/cli.ts";
import { SETTINGS } from "../lib/config/settings.ts";
import { createTestDatabase, type TestDatabase } from "./support/mysql.ts";
import { delay, waitFor } from "./support/app.ts";
import { startGatecastOnConfig, startGatecastProcess } from "./support/process.ts";
import { RawClient } from "./support/raw_ws.ts";
import { TestClient } from "./support/ws_client.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const decoder = new TextDecoder();

function command(args: string[], env: Record<string, string> = {}): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "main.ts", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

async function run(args: string[], env: Record<string, string> = {}) {
  const output = await command(args, env).output();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

async function withConfig(config: unknown, fn: (path: string) => Promise<void>): Promise<void> {
  const path = await Deno.makeTempFile({ prefix: "gatecast-config-", suffix: ".json" });
  try {
    await Deno.writeTextFile(path, typeof config === "string" ? config : JSON.stringify(config));
    await fn(path);
  } finally {
    await Deno.remove(path);
  }
}

/** Asserts exit status 2 and exactly one stderr line, equal to `line` (or matching it). */
function assertRejected(
  result: { code: number; stdout: string; stderr: string },
  line: string | RegExp,
): void {
  assert.equal(result.code, 2, `exit status, stderr: ${result.stderr}`);
  assert.equal(result.stdout, "");
  assert.ok(result.stderr.endsWith("\n"), JSON.stringify(result.stderr));
  const lines = result.stderr.slice(0, -1).split("\n");
  assert.equal(lines.length, 1, `expected one line on stderr, got ${JSON.stringify(result.stderr)}`);
  if (typeof line === "string") assert.equal(lines[0], line);
  else assert.match(lines[0], line);
}

const PLANT1 = { host: "127.0.0.1", port: 3306, user: "gatecast", password: "hunter2", database: "iot" };

Deno.test("--help prints the help text and exits 0", async () => {
  const result = await run(["--help"]);
  assert.equal(result.code, 0);
  assert.equal(result.stdout, HELP + "\n");
  assert.equal(result.stderr, "");
});

Deno.test("--version prints the version and exits 0", async () => {
  const result = await run(["--version"]);
  assert.equal(result.code, 0);
  assert.equal(result.stdout, `gatecast ${VERSION}\n`);
  assert.equal(result.stderr, "");
});

Deno.test("an unknown flag exits 2 with one line naming the flag", async () => {
  assertRejected(await run(["--bogus"]), "gatecast: --bogus: Unknown option '--bogus'; see --help");
});

Deno.test("a bad --port exits 2 with one line naming --port", async () => {
  assertRejected(
    await run(["--config", "gatecast.json", "--port", "abc"]),
    'gatecast: --port: expected an integer 0-65535, got "abc"',
  );
});

Deno.test("no --config exits 2 with one line asking for it", async () => {
  assertRejected(await run([]), "gatecast: --config: is required (or --demo); see --help");
});

Deno.test("an unknown config key exits 2 with one line naming the key", async () => {
  await withConfig({ databases: { plant1: PLANT1 }, pollIntervalMS: 100 }, async (path) => {
    assertRejected(
      await run(["--config", path]),
      `gatecast: pollIntervalMS: unknown key; accepted keys are ${
        ["$schema", ...Object.keys(SETTINGS)].join(", ")
      }`,
    );
  });
});

Deno.test('databases.plant1.port = "abc" exits 2 with the contract\'s line', async () => {
  await withConfig({ databases: { plant1: { ...PLANT1, port: "abc" } } }, async (path) => {
    assertRejected(
      await run(["--config", path]),
      'gatecast: databases.plant1.port: expected an integer 1-65535, got "abc"',
    );
  });
});

Deno.test("a missing config file exits 2 with one line naming --config and the file", async () => {
  const path = `${await Deno.makeTempDir({ prefix: "gatecast-" })}/missing.json`;
  try {
    const result = await run(["--config", path]);
    assertRejected(result, /^gatecast: --config: cannot read \S+missing\.json: /);
    assert.ok(result.stderr.includes(path));
  } finally {
    await Deno.remove(path.replace(/\/missing\.json$/, ""), { recursive: true });
  }
});

Deno.test("a config file that is not JSON exits 2 with one line that does not echo its text", async () => {
  await withConfig('{"databases": {"plant1": {"password": "hunter2"\n x}}}', async (path) => {
    const result = await run(["--config", path]);
    assertRejected(
      result,
      `gatecast: ${path}: is not valid JSON: Expected ',' or '}' after property value in JSON at position 49 (line 2 column 2)`,
    );
    assert.ok(!result.stderr.includes("hunter2"));
  });
  await withConfig("not json\n", async (path) => {
    const result = await run(["--config", path]);
    assertRejected(result, `gatecast: ${path}: is not valid JSON: Unexpected token 'o'`);
    assert.ok(!result.stderr.includes("not json"));
  });
});

Deno.test("a missing passwordEnv variable exits 2 with one line naming passwordEnv and the variable", async () => {
  const name = "GATECAST_TEST_MISSING_PASSWORD";
  await withConfig(
    { databases: { plant1: { ...PLANT1, password: undefined, passwordEnv: name } } },
    async (path) => {
      assertRejected(
        await run(["--config", path]),
        `gatecast: databases.plant1.passwordEnv: environment variable ${name} is not set`,
      );
    },
  );
});

Deno.test("no error line prints a password from the config", async () => {
  await withConfig({ databases: { plant1: { ...PLANT1, port: 0 } } }, async (path) => {
    const result = await run(["--config", path]);
    assertRejected(result, "gatecast: databases.plant1.port: expected an integer 1-65535, got 0");
    assert.ok(!result.stderr.includes("hunter2"));
  });
});

/** Reads stderr lines until one satisfies `found`; returns it and every line read. */
async function readUntil(
  reader: ReadableStreamDefaultReader<string>,
  found: (line: string) => boolean,
  seen: string[],
): Promise<string> {
  let buffered = "";
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const newline = buffered.indexOf("\n");
    if (newline >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      seen.push(line);
      if (found(line)) return line;
      continue;
    }
    const { value, done } = await reader.read();
    if (done) break;
    buffered += value;
  }
  throw new Error(`line not found; got ${JSON.stringify(seen)}`);
}

Deno.test("a real start logs 'listening' with its port, serves /healthz, and exits 0 on SIGTERM", async () => {
  await withConfig(
    { logLevel: "info", auth: { mode: "none" }, databases: { demo: { driver: "sqlite", path: ":memory:" } } },
    async (path) => {
      const child = command(["--config", path, "--port", "0", "--host", "127.0.0.1"]).spawn();
      const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
      const seen: string[] = [];
      try {
        const listening = JSON.parse(
          await readUntil(stderr, (line) => line.includes('"msg":"listening"'), seen),
        );
        assert.equal(listening.level, "info");
        assert.equal(listening.host, "127.0.0.1");
        assert.equal(listening.databases, "demo");
        assert.ok(Number.isInteger(listening.port) && listening.port > 0, String(listening.port));
        const health = await fetch(`http://127.0.0.1:${listening.port}/healthz`);
        assert.equal(health.status, 200);
        assert.equal((await health.json()).status, "ok");
        child.kill("SIGTERM");
        const status = await child.status;
        assert.equal(status.code, 0);
        for (;;) {
          const { value, done } = await stderr.read();
          if (done) break;
          seen.push(...value.split("\n").filter((l) => l.length > 0));
        }
        const messages = seen.map((line) => JSON.parse(line).msg);
        assert.deepEqual(messages.slice(-2), ["shutting down", "stopped"]);
      } finally {
        try {
          child.kill("SIGKILL");
        } catch { /* already exited */ }
        await child.status;
        await child.stdout.cancel().catch(() => {});
        await stderr.cancel().catch(() => {});
      }
    },
  );
});

Deno.test("--demo serves the demo plant: the banner names the URL; demo/real/1, demo/tanks/north and demo/alarms have snapshots", async () => {
  const child = command(["--demo", "--port", "0"]).spawn();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    const banner = await readUntil(stdout, (line) => line.startsWith("gatecast demo running:"), []);
    const url = /\(WebSocket (ws:\/\/127\.0\.0\.1:\d+\/ws)\)$/.exec(banner)?.[1];
    assert.ok(url, banner);
    const client = await TestClient.open(url, "gatecast.v1");
    client.send({ type: "subscribe", id: 1, topic: "demo/real/1" });
    assert.deepEqual(await client.next(), { type: "subscribed", id: 1, topic: "demo/real/1" });
    const snapshot = await client.expect("snapshot");
    assert.equal(snapshot.points.length, 10);
    // The demo's handles from the config: a string unit and a handle without units.
    client.send({ type: "subscribe", id: 2, topics: ["demo/tanks/north", "demo/alarms"] });
    const frames = [];
    while (frames.filter((frame) => frame.type === "snapshot").length < 2) frames.push(await client.next());
    const snapshots = frames.filter((frame) => frame.type === "snapshot");
    const tanks = snapshots.find((frame) => frame.topic === "demo/tanks/north");
    assert.deepEqual(tanks.key, ["tank_id"]);
    assert.equal(tanks.rows.length, 4);
    assert.deepEqual(Object.keys(tanks.rows[0]), ["site", "tank_id", "level_m", "temp_c", "updated_at"]);
    const alarms = snapshots.find((frame) => frame.topic === "demo/alarms");
    assert.deepEqual(alarms.key, ["id"]);
    assert.ok(alarms.rows.length >= 1, JSON.stringify(alarms));
    await client.close();
    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
    await child.status;
    await stdout.cancel().catch(() => {});
    await child.stderr.cancel().catch(() => {});
  }
});

// --- signals: graceful shutdown and reload (issue 5) -------------------------------------------------------

async function plant(value: number): Promise<TestDatabase> {
  const db = await createTestDatabase();
  await db.addPoints([{ unit: 1, code: "ua", address: "GW1" }]);
  await db.setData("GW1", { ua: value });
  return db;
}

async function writeConfig(path: string, databases: Record<string, unknown>, extra = {}): Promise<void> {
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      host: "127.0.0.1",
      port: 0,
      pollIntervalMs: 100,
      logLevel: "info",
      auth: { mode: "none" },
      ...extra,
      databases,
    }),
  );
}

Deno.test("SIGTERM closes every client with 1001 and exits 0 within a bounded time", async () => {
  const db = await plant(1);
  const server = await startGatecastOnConfig({ pollIntervalMs: 100, databases: { plant1: db.settings } });
  const config = server.configPath;
  const url = `ws://127.0.0.1:${server.port}/ws`;
  try {
    const v1 = await TestClient.open(url, "gatecast.v1");
    v1.send({ type: "subscribe", id: 1, topic: "plant1/real/1" });
    await v1.expect("subscribed");
    await v1.expect("snapshot");
    const legacy = await TestClient.open(url);
    legacy.send("{'unit_id': 1, 'handle': 'real', 'db_code': 'plant1'}");
    await legacy.next();
    const silent = await RawClient.open(server.port); // never reads
    const sentAt = Date.now();
    server.child.kill("SIGTERM");
    const [v1Close, legacyClose] = await Promise.all([v1.closed, legacy.closed]);
    assert.deepEqual([v1Close.code, v1Close.reason], [1001, "server shutting down"]);
    assert.deepEqual([legacyClose.code, legacyClose.reason], [1001, "server shutting down"]);
    const code = await server.exited;
    const ms = Date.now() - sentAt;
    assert.deepEqual(code, 0);
    assert.ok(ms < 5000, `exited after ${ms} ms`);
    assert.ok(server.stderr.some((line) => line.includes('"msg":"stopped"')));
    silent.destroy();
  } finally {
    try {
      server.child.kill("SIGKILL");
    } catch { /* exited */ }
    await server.exited;
    await db.drop();
    await Deno.remove(config);
  }
});

Deno.test("a second signal during a slow shutdown exits at once", async () => {
  // A "database" that accepts connections and never answers: polls hang until their timeout.
  const blackhole = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of blackhole) held.push(conn);
  })();
  const server = await startGatecastOnConfig({
    queryTimeoutMs: 20_000,
    databases: { hang: { host: "127.0.0.1", port: blackhole.addr.port, user: "u", database: "d" } },
  });
  const config = server.configPath;
  try {
    await waitFor("the probe connecting", () => held.length > 0);
    const sentAt = Date.now();
    server.child.kill("SIGINT");
    await delay(300);
    server.child.kill("SIGTERM");
    const code = await server.exited;
    const ms = Date.now() - sentAt;
    assert.deepEqual(code, 1);
    assert.ok(ms < 2000, `exited after ${ms} ms`);
  } finally {
    try {
      server.child.kill("SIGKILL");
    } catch { /* exited */ }
    await server.exited;
    blackhole.close();
    for (const conn of held) conn.close();
    await accepting.catch(() => {});
    await Deno.remove(config);
  }
});

Deno.test("SIGHUP reload: an added database serves, a removed one ends its topics with DB_REMOVED, new limits apply, connections stay up", async () => {
  const kept = await plant(1);
  const removed = await plant(2);
  const added = await plant(3);
  const server = await startGatecastOnConfig({
    pollIntervalMs: 100,
    databases: { kept: kept.settings, removed: removed.settings },
  });
  const config = server.configPath;
  const url = `ws://127.0.0.1:${server.port}/ws`;
  try {
    const client = await TestClient.open(url, "gatecast.v1");
    for (const [id, topic] of [[1, "kept/real/1"], [2, "removed/real/1"]] as const) {
      client.send({ type: "subscribe", id, topic });
      await client.expect("subscribed");
      await client.expect("snapshot");
    }
    const legacy = await TestClient.open(url);
    legacy.send("{'unit_id': 1, 'handle': 'real', 'db_code': 'removed'}");
    await legacy.next();

    await writeConfig(config, { kept: kept.settings, added: added.settings }, {
      maxSubscriptionsPerConnection: 2,
    });
    server.child.kill("SIGHUP");
    const ended = await client.expect("error");
    assert.deepEqual(ended, {
      type: "error",
      code: "DB_REMOVED",
      topic: "removed/real/1",
      message:
        "database 'removed' was removed from the configuration; subscription to 'removed/real/1' ended",
    });
    const legacyClose = await legacy.closed;
    assert.deepEqual(legacyClose.code, 1008);

    client.send({ type: "subscribe", id: 3, topic: "added/real/1" });
    assert.deepEqual((await client.expect("subscribed")).topic, "added/real/1");
    assert.deepEqual((await client.expect("snapshot")).points[0].value, 3);
    client.send({ type: "subscribe", id: 4, topic: "removed/real/1" });
    assert.deepEqual((await client.expect("error")).code, "UNKNOWN_DB");

    await kept.query("UPDATE device_data_real SET ua = 11");
    const update = await client.expect("update", 2000);
    assert.deepEqual([update.topic, update.changes[0].value], ["kept/real/1", 11]);

    const other = await TestClient.open(url, "gatecast.v1");
    for (const [id, topic] of [[1, "kept/real/1"], [2, "added/real/1"], [3, "kept/real/2"]] as const) {
      other.send({ type: "subscribe", id, topic });
    }
    const frames = [];
    for (let i = 0; i < 5; i++) frames.push(await other.next());
    assert.deepEqual(frames.find((f) => f.type === "error")?.code, "TOO_MANY_SUBSCRIPTIONS");

    // A broken file is refused and the running configuration kept.
    await Deno.writeTextFile(config, "{ not json");
    server.child.kill("SIGHUP");
    await waitFor(
      "the refusal logged",
      () => server.stderr.some((l) => l.includes("configuration not reloaded; keeping the running one")),
    );
    await kept.query("UPDATE device_data_real SET ua = 12");
    assert.deepEqual((await client.expect("update", 2000)).changes[0].value, 12);
    assert.deepEqual(client.socket.readyState, WebSocket.OPEN);
    await client.close();
    await other.close();
  } finally {
    server.child.kill("SIGTERM");
    await server.exited;
    for (const db of [kept, removed, added]) await db.drop();
    await Deno.remove(config);
  }
});

/** A self-signed certificate for 127.0.0.1 and its key, `cert.pem` and `key.pem` in `dir`. */
async function selfSignedCertificate(dir: string): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-days",
      "2",
      "-subj",
      "/CN=localhost",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
      "-keyout",
      "key.pem",
      "-out",
      "cert.pem",
    ],
    cwd: dir,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`openssl failed: ${decoder.decode(out.stderr)}`);
}

Deno.test("SIGHUP on a server started with --cert/--key applies the flags as at start: no false 'needs a restart' line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gatecast-tls-" });
  const config = `${dir}/gatecast.json`;
  const databases = { demo: { driver: "sqlite", path: ":memory:" } };
  await selfSignedCertificate(dir);
  await writeConfig(config, databases);
  const server = await startGatecastProcess(
    `${ROOT}main.ts`,
    [
      "--allow-net",
      `--allow-read=${dir}`,
      "--allow-env=GATECAST_*,REDIS_DEBUG_MAINTENANCE,REDIS_EMIT_DIAGNOSTICS",
    ],
    ["--config", config, "--cert", `${dir}/cert.pem`, "--key", `${dir}/key.pem`],
  );
  const lines = (msg: string) =>
    server.stderr.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
      .filter((l) => l.msg === msg);
  const restart = "some changed settings need a restart; their old values stay in force";
  try {
    assert.deepEqual(server.listening.tls, true);
    // The same file with a new poll interval: applied, and no setting needs a restart.
    await writeConfig(config, databases, { pollIntervalMs: 200 });
    server.child.kill("SIGHUP");
    await waitFor("the first reload", () => lines("configuration reloaded").length === 1);
    assert.deepEqual(lines(restart), []);
    // A start-only setting changed in the file is still named, and only it.
    await writeConfig(config, databases, { pollIntervalMs: 200, pointsRefreshPolls: 2 });
    server.child.kill("SIGHUP");
    await waitFor("the second reload", () => lines("configuration reloaded").length === 2);
    assert.deepEqual(lines(restart).map((l) => l.settings), ["pointsRefreshPolls"]);
  } finally {
    assert.deepEqual(await server.stop(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});
