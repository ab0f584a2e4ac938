/**
 * `deno run --allow-all --no-lock bench/redis_clients.ts`: the two candidate Redis clients for cluster
 * mode (issue 14), `npm:redis` (node-redis, the one Redis recommends) and `npm:ioredis` (the most used),
 * measured the same way under Deno, each with its defaults:
 *
 *   lease      SET NX PX, GET, INCR (the fencing counter) and an EVAL "renew if still mine", as a lease
 *              would use them: the answers are checked, and the time of one such cycle is measured
 *   latency    2,000 messages of about 1 KiB, one at a time: PUBLISH on one connection until the
 *              SUBSCRIBE connection receives it (p50, p99)
 *   throughput 20,000 messages of about 1 KiB published at once, pipelined as the client does it
 *              (node-redis: every command of one tick in one write; ioredis: one `pipeline()`), until
 *              the subscriber has them all; the Deno process's CPU time (`process.cpuUsage`, user + system) over that
 *              phase, given per 10,000 messages published and received
 *   reconnect  a throw-away `redis-server` on a free port, SIGKILLed while both clients publish every
 *              25 ms and subscribe, then started again on the same port: whether each client reconnects
 *              and subscribes again by itself, the events and errors it emitted, what became of the
 *              publishes made while Redis was down, and how long from the restart to the first message
 *
 * The first three run against the Redis at `--port` (default 6379) on 127.0.0.1, in two rounds of
 * alternating order (node-redis, ioredis; then ioredis, node-redis), so that neither always runs first.
 * Nothing but 127.0.0.1 is contacted. Bounded: the run is given up after {@link DEADLINE_MS}, and the
 * throw-away server is killed on every way out.
 *
 * The clients are imported by `npm:` specifier, not through deno.json, so `--no-lock` keeps deno.lock
 * as it is.
 *
 *   deno run --allow-all --no-lock bench/redis_clients.ts
 *   deno run --allow-all --no-lock bench/redis_clients.ts --port 6390 --json out.json
 */

import { cpuUsage } from "node:process";
import { parseArgs } from "node:util";
import { createClient } from "npm:redis@^6";
import { Redis } from "npm:ioredis@^6";

/** The whole run is given up after this long. */
const DEADLINE_MS = 85_000;
const HOST = "127.0.0.1";
const LATENCY_MESSAGES = 2_000;
const THROUGHPUT_MESSAGES = 20_000;
const LEASE_CYCLES = 500;
const PAYLOAD_BYTES = 1024;
const RECONNECT_PUBLISH_EVERY_MS = 25;
const REDIS_DOWN_MS = 1_500;
const FIRST_MESSAGE_TIMEOUT_MS = 15_000;

/** What a lease needs, and pub/sub, on one publisher and one subscriber connection of one client. */
interface Connections {
  /** SET key value NX PX ms: whether the key was set. */
  setNxPx(key: string, value: string, ms: number): Promise<boolean>;
  get(key: string): Promise<string | null>;
  incr(key: string): Promise<number>;
  /** Runs {@link RENEW_SCRIPT}: 1 when the key still held `token` and its expiry was renewed, else 0. */
  renew(key: string, token: string, ms: number): Promise<number>;
  del(key: string): Promise<void>;
  subscribe(channel: string, onMessage: (message: string) => void): Promise<void>;
  publish(channel: string, message: string): Promise<number>;
  /** Publishes every message at once, pipelined as the client allows. */
  publishAll(channel: string, messages: string[]): Promise<void>;
  close(): Promise<void>;
}

/** One candidate client. */
interface Candidate {
  name: string;
  /** Opens a publisher and a subscriber connection; `onEvent` hears every event either emits. */
  open(port: number, onEvent: (event: string) => void): Promise<Connections>;
}

const RENEW_SCRIPT = `if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0`;

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as Error & { code?: string }).code;
    return `${error.constructor.name}${code ? ` ${code}` : ""}: ${error.message}`;
  }
  return String(error);
}

const nodeRedis: Candidate = {
  name: "node-redis (npm:redis@^6)",
  async open(port, onEvent) {
    const publisher = createClient({ url: `redis://${HOST}:${port}` });
    const subscriber = publisher.duplicate();
    for (const [role, client] of [["pub", publisher], ["sub", subscriber]] as const) {
      for (const event of ["connect", "ready", "end", "reconnecting"]) {
        client.on(event, () => onEvent(`${role} ${event}`));
      }
      client.on("error", (error: unknown) => onEvent(`${role} error ${describe(error)}`));
    }
    await Promise.all([publisher.connect(), subscriber.connect()]);
    return {
      async setNxPx(key, value, ms) {
        return await publisher.set(key, value, { condition: "NX", expiration: { type: "PX", value: ms } }) ===
          "OK";
      },
      get: async (key) => await publisher.get(key),
      incr: async (key) => await publisher.incr(key),
      async renew(key, token, ms) {
        // Redis's EVAL runs the Lua script on the server; sent as a plain command.
        return Number(await publisher.sendCommand(["EVAL", RENEW_SCRIPT, "1", key, token, String(ms)]));
      },
      async del(key) {
        await publisher.del(key);
      },
      async subscribe(channel, onMessage) {
        await subscriber.subscribe(channel, (message: string) => onMessage(message));
      },
      publish: async (channel, message) => await publisher.publish(channel, message),
      async publishAll(channel, messages) {
        await Promise.all(messages.map((message) => publisher.publish(channel, message)));
      },
      async close() {
        await Promise.allSettled([publisher.close(), subscriber.close()]);
        publisher.destroy();
        subscriber.destroy();
      },
    };
  },
};

const ioredis: Candidate = {
  name: "ioredis (npm:ioredis@^6)",
  async open(port, onEvent) {
    const publisher = new Redis({ host: HOST, port, lazyConnect: true });
    const subscriber = publisher.duplicate();
    for (const [role, client] of [["pub", publisher], ["sub", subscriber]] as const) {
      for (const event of ["connect", "ready", "close", "end", "reconnecting"]) {
        client.on(event, () => onEvent(`${role} ${event}`));
      }
      client.on("error", (error: unknown) => onEvent(`${role} error ${describe(error)}`));
    }
    await Promise.all([publisher.connect(), subscriber.connect()]);
    const listeners = new Map<string, (message: string) => void>();
    subscriber.on("message", (channel: string, message: string) => listeners.get(channel)?.(message));
    return {
      async setNxPx(key, value, ms) {
        return await publisher.set(key, value, "PX", ms, "NX") === "OK";
      },
      get: async (key) => await publisher.get(key),
      incr: async (key) => await publisher.incr(key),
      async renew(key, token, ms) {
        // Redis's EVAL runs the Lua script on the server; sent as a plain command.
        return Number(await publisher.call("EVAL", RENEW_SCRIPT, "1", key, token, String(ms)));
      },
      async del(key) {
        await publisher.del(key);
      },
      async subscribe(channel, onMessage) {
        listeners.set(channel, onMessage);
        await subscriber.subscribe(channel);
      },
      publish: async (channel, message) => await publisher.publish(channel, message),
      async publishAll(channel, messages) {
        const pipeline = publisher.pipeline();
        for (const message of messages) pipeline.publish(channel, message);
        const results = await pipeline.exec();
        const failed = results?.find(([error]: [Error | null, unknown]) => error);
        if (failed) throw failed[0];
      },
      async close() {
        await Promise.allSettled([publisher.quit(), subscriber.quit()]);
        publisher.disconnect();
        subscriber.disconnect();
      },
    };
  },
};

/** `${index}:${sentAt}:` padded with "x" to {@link PAYLOAD_BYTES}. */
function payload(index: number, sentAt: number): string {
  const head = `${index}:${sentAt.toFixed(3)}:`;
  return head + "x".repeat(Math.max(0, PAYLOAD_BYTES - head.length));
}

function parsePayload(message: string): { index: number; sentAt: number } {
  const [index, sentAt] = message.split(":", 2);
  return { index: Number(index), sentAt: Number(sentAt) };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function cpuMs(): number {
  const { user, system } = cpuUsage();
  return (user + system) / 1000;
}

interface RoundResult {
  client: string;
  connectMs: number;
  leaseChecks: string;
  leaseCycleMs: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  publishPerSecond: number;
  deliveredPerSecond: number;
  cpuMsPer10k: number;
}

async function measureRound(candidate: Candidate, port: number, round: number): Promise<RoundResult> {
  const events: string[] = [];
  const connectStart = performance.now();
  const connections = await candidate.open(port, (event) => events.push(event));
  await connections.get("gatecast:bench:none");
  const connectMs = performance.now() - connectStart;
  const prefix = `gatecast:bench:${crypto.randomUUID()}`;

  // Lease: the answers first, then the time of a whole cycle.
  const leaseKey = `${prefix}:lease`, fenceKey = `${prefix}:fence`;
  const checks = [
    await connections.setNxPx(leaseKey, "node-a", 5_000) === true,
    await connections.setNxPx(leaseKey, "node-b", 5_000) === false,
    await connections.get(leaseKey) === "node-a",
    await connections.incr(fenceKey) === 1,
    await connections.renew(leaseKey, "node-a", 5_000) === 1,
    await connections.renew(leaseKey, "node-b", 5_000) === 0,
  ];
  const leaseChecks = checks.every(Boolean) ? "all 6 right" : `wrong: ${checks.map(String).join(",")}`;
  const leaseStart = performance.now();
  for (let i = 0; i < LEASE_CYCLES; i++) {
    await connections.del(leaseKey);
    await connections.setNxPx(leaseKey, "node-a", 5_000);
    await connections.get(leaseKey);
    await connections.incr(fenceKey);
    await connections.renew(leaseKey, "node-a", 5_000);
  }
  const leaseCycleMs = (performance.now() - leaseStart) / LEASE_CYCLES;
  await connections.del(leaseKey);
  await connections.del(fenceKey);

  // Latency: one message at a time.
  const channel = `${prefix}:channel`;
  let expected = -1;
  let arrived: (() => void) | undefined;
  let received = 0;
  const everything = Promise.withResolvers<void>();
  await connections.subscribe(channel, (message) => {
    received++;
    if (parsePayload(message).index === expected) arrived?.();
    if (received === THROUGHPUT_MESSAGES) everything.resolve();
  });
  const latencies: number[] = [];
  for (let i = 0; i < LATENCY_MESSAGES; i++) {
    const { promise, resolve } = Promise.withResolvers<void>();
    expected = i;
    arrived = resolve;
    const sentAt = performance.now();
    await connections.publish(channel, payload(i, sentAt));
    await promise;
    latencies.push(performance.now() - sentAt);
  }
  latencies.sort((a, b) => a - b);

  // Throughput and CPU: everything at once.
  received = 0;
  expected = -1;
  const messages = Array.from({ length: THROUGHPUT_MESSAGES }, (_, i) => payload(i, 0));
  const cpuStart = cpuMs();
  const start = performance.now();
  await connections.publishAll(channel, messages);
  const published = performance.now();
  await everything.promise;
  const delivered = performance.now();
  const cpuUsed = cpuMs() - cpuStart;
  await connections.close();
  const errors = events.filter((event) => event.includes("error"));
  if (errors.length > 0) console.error(`${candidate.name} round ${round}: ${errors.join("; ")}`);
  return {
    client: candidate.name,
    connectMs,
    leaseChecks,
    leaseCycleMs,
    latencyP50Ms: percentile(latencies, 50),
    latencyP99Ms: percentile(latencies, 99),
    publishPerSecond: THROUGHPUT_MESSAGES / ((published - start) / 1000),
    deliveredPerSecond: THROUGHPUT_MESSAGES / ((delivered - start) / 1000),
    cpuMsPer10k: cpuUsed / (THROUGHPUT_MESSAGES / 10_000),
  };
}

// ---- reconnect -------------------------------------------------------------------------------------

let throwaway: Deno.ChildProcess | undefined;

function freePort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function startRedis(port: number): Promise<Deno.ChildProcess> {
  const child = new Deno.Command("redis-server", {
    args: ["--port", String(port), "--bind", HOST, "--save", "", "--appendonly", "no"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  throwaway = child;
  const until = performance.now() + 5_000;
  while (performance.now() < until) {
    try {
      (await Deno.connect({ hostname: HOST, port })).close();
      return child;
    } catch {
      await new Promise((done) => setTimeout(done, 10));
    }
  }
  throw new Error(`redis-server on port ${port} did not accept connections within 5 s`);
}

async function stopRedis(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGKILL");
  } catch { /* already gone */ }
  await child.status;
  if (throwaway === child) throwaway = undefined;
}

interface ReconnectWatch {
  client: string;
  events: Map<string, number>;
  eventOrder: string[];
  publishes: { ok: number; failed: Map<string, number>; pending: number };
  beforeKill: boolean;
  firstAfterRestart?: { afterRestartMs: number; afterAcceptMs: number; sentWhileDown: boolean };
  receivedWhileDownSent: number;
  stop(): Promise<void>;
}

async function watchReconnect(candidate: Candidate, port: number, clock: () => number) {
  const events = new Map<string, number>();
  const eventOrder: string[] = [];
  const onEvent = (event: string) => {
    const key = event.replace(/\d+\.\d+\.\d+\.\d+:\d+/g, "HOST:PORT");
    if (!events.has(key)) eventOrder.push(`${clock().toFixed(0)} ms ${key}`);
    events.set(key, (events.get(key) ?? 0) + 1);
  };
  const connections = await candidate.open(port, onEvent);
  const channel = `gatecast:bench:reconnect:${crypto.randomUUID()}`;
  const watch: ReconnectWatch = {
    client: candidate.name,
    events,
    eventOrder,
    publishes: { ok: 0, failed: new Map(), pending: 0 },
    beforeKill: false,
    receivedWhileDownSent: 0,
    stop: async () => {},
  };
  let down: { from: number; to: number } | undefined;
  let restartedAt = 0, acceptedAt = 0;
  const first = Promise.withResolvers<void>();
  await connections.subscribe(channel, (message) => {
    const { sentAt } = parsePayload(message);
    if (!down) {
      watch.beforeKill = true;
      return;
    }
    const sentWhileDown = sentAt >= down.from && sentAt < down.to;
    if (sentWhileDown) watch.receivedWhileDownSent++;
    if (restartedAt > 0 && !watch.firstAfterRestart) {
      const now = clock();
      watch.firstAfterRestart = {
        afterRestartMs: now - restartedAt,
        afterAcceptMs: now - acceptedAt,
        sentWhileDown,
      };
      first.resolve();
    }
  });
  let index = 0;
  const timer = setInterval(() => {
    watch.publishes.pending++;
    connections.publish(channel, payload(index++, clock())).then(
      () => watch.publishes.ok++,
      (error) => {
        const key = describe(error).replace(/\d+\.\d+\.\d+\.\d+:\d+/g, "HOST:PORT");
        watch.publishes.failed.set(key, (watch.publishes.failed.get(key) ?? 0) + 1);
      },
    ).finally(() => watch.publishes.pending--);
  }, RECONNECT_PUBLISH_EVERY_MS);
  return {
    watch,
    killed(at: number) {
      down = { from: at, to: Infinity };
    },
    restarted(at: number, accepted: number) {
      down!.to = at;
      restartedAt = at;
      acceptedAt = accepted;
    },
    first: first.promise,
    async stop() {
      clearInterval(timer);
      await connections.close();
    },
  };
}

async function measureReconnect() {
  const port = freePort();
  const t0 = performance.now();
  const clock = () => performance.now() - t0;
  let child = await startRedis(port);
  const watches = [
    await watchReconnect(nodeRedis, port, clock),
    await watchReconnect(ioredis, port, clock),
  ];
  await new Promise((done) => setTimeout(done, 300));
  const killedAt = clock();
  for (const w of watches) w.killed(killedAt);
  await stopRedis(child);
  await new Promise((done) => setTimeout(done, REDIS_DOWN_MS));
  const restartedAt = clock();
  child = await startRedis(port);
  const acceptedAt = clock();
  for (const w of watches) w.restarted(restartedAt, acceptedAt);
  await Promise.race([
    Promise.all(watches.map((w) => w.first)),
    new Promise((done) => setTimeout(done, FIRST_MESSAGE_TIMEOUT_MS)),
  ]);
  await new Promise((done) => setTimeout(done, 300));
  for (const w of watches) await w.stop();
  await stopRedis(child);
  return {
    port,
    killedAtMs: killedAt,
    restartedAtMs: restartedAt,
    acceptingAfterMs: acceptedAt - restartedAt,
    clients: watches.map(({ watch }) => ({
      client: watch.client,
      receivedBeforeKill: watch.beforeKill,
      firstMessageAfterRestart: watch.firstAfterRestart ?? "none within 15 s",
      receivedOfThoseSentWhileDown: watch.receivedWhileDownSent,
      publishes: {
        ok: watch.publishes.ok,
        pending: watch.publishes.pending,
        failed: Object.fromEntries(watch.publishes.failed),
      },
      firstSeenEvents: watch.eventOrder,
      eventCounts: Object.fromEntries(watch.events),
    })),
  };
}

// ---- main ------------------------------------------------------------------------------------------

function fixed(value: number, digits: number): string {
  return value.toFixed(digits);
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { port: { type: "string", default: "6379" }, json: { type: "string" } },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`--port must be a TCP port (1-65535), got "${values.port}"`);
  }
  const deadline = setTimeout(() => {
    console.error(`redis_clients: gave up after ${DEADLINE_MS / 1000} s`);
    try {
      throwaway?.kill("SIGKILL");
    } catch { /* already gone */ }
    Deno.exit(2);
  }, DEADLINE_MS);
  try {
    const rounds: RoundResult[] = [];
    for (const [round, order] of [[1, [nodeRedis, ioredis]], [2, [ioredis, nodeRedis]]] as const) {
      for (const candidate of order) rounds.push(await measureRound(candidate, port, round));
    }
    console.log(
      "| client | connect ms | lease checks | lease cycle ms | pub/sub p50 ms | p99 ms | publish msg/s | delivered msg/s | CPU ms / 10k |",
    );
    console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (const candidate of [nodeRedis, ioredis]) {
      const mine = rounds.filter((r) => r.client === candidate.name);
      const both = (pick: (r: RoundResult) => number, digits: number) =>
        mine.map((r) => fixed(pick(r), digits)).join("; ");
      console.log(
        `| ${candidate.name} | ${both((r) => r.connectMs, 1)} | ${mine[0].leaseChecks} | ${
          both((r) => r.leaseCycleMs, 3)
        } | ${both((r) => r.latencyP50Ms, 3)} | ${both((r) => r.latencyP99Ms, 3)} | ${
          both((r) => r.publishPerSecond, 0)
        } | ${both((r) => r.deliveredPerSecond, 0)} | ${both((r) => r.cpuMsPer10k, 0)} |`,
      );
    }
    const reconnect = await measureReconnect();
    console.log(JSON.stringify(reconnect, null, 2));
    if (values.json) {
      await Deno.writeTextFile(values.json, JSON.stringify({ rounds, reconnect }, null, 2));
    }
  } finally {
    clearTimeout(deadline);
    if (throwaway) await stopRedis(throwaway);
  }
}
