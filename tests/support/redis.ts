/**
 * The Redis server tests use, over real TCP: `REDIS_URL` when set (it must answer: no silent
 * fallback), else a server on 127.0.0.1:6379, else a throw-away `redis-server` started here on a free
 * port. When none of the three exists, requirements.ts's rule applies: install `redis-server` as root
 * with apt-get, else stop with one line naming the three ways. `deno task test` decides once per run
 * (test_task.ts) and hands every test file its server in `REDIS_URL`; a file run alone decides itself.
 */

import { type Probe, programsOnPath, provide, type Requirement } from "./requirements.ts";
import { freePort } from "./servers.ts";

/** How to reach a Redis server. */
export interface RedisServerInfo {
  /** `redis://[user:password@]host:port[/db]`, as node-redis's `createClient({ url })` takes it. */
  url: string;
  /** Its host name or address. */
  host: string;
  /** Its TCP port. */
  port: number;
}

/** The server looked for on this machine: 127.0.0.1:6379, without a password. */
export const LOCAL_REDIS: Readonly<RedisServerInfo> = {
  url: "redis://127.0.0.1:6379",
  host: "127.0.0.1",
  port: 6379,
};

/** Debian's package of Redis, as `.ci/run` installs it. */
const REDIS_PACKAGES = ["redis-server"];

/** The program a throw-away server needs; cluster tests start (and kill) servers of their own. */
export const REDIS_PROGRAMS: Requirement<Record<string, string>> = programsOnPath(["redis-server"], {
  missing: "redis-server is not on PATH (the cluster tests start servers of their own)",
  ways: "install redis-server (apt-get install redis-server)",
  packages: REDIS_PACKAGES,
});

/** Where the tests' Redis comes from. */
export type RedisSource =
  | { readonly kind: "url"; readonly info: RedisServerInfo }
  | { readonly kind: "local"; readonly info: RedisServerInfo }
  | { readonly kind: "throwaway" };

/** What was found on the machine, for {@link locateRedis}. */
export interface RedisFacts {
  /** `REDIS_URL` when set: its server and why it does not answer, or the line saying why it cannot be read. */
  readonly url?: { readonly info: RedisServerInfo; readonly error?: string } | { readonly line: string };
  /** The local server answers PING. */
  readonly localAnswers: boolean;
  /** redis-server is on PATH. */
  readonly programs: boolean;
}

/**
 * The order of the three ways: `REDIS_URL` (which must answer), the local server, a throw-away
 * server; none of them is a missing requirement.
 *
 * @example
 * ```ts
 * locateRedis({ localAnswers: false, programs: true }); // { state: "found", value: { kind: "throwaway" } }
 * ```
 */
export function locateRedis(facts: RedisFacts, local: RedisServerInfo = LOCAL_REDIS): Probe<RedisSource> {
  if (facts.url !== undefined) {
    if ("line" in facts.url) return { state: "broken", line: facts.url.line };
    if (facts.url.error === undefined) {
      return { state: "found", value: { kind: "url", info: facts.url.info } };
    }
    const { host, port } = facts.url.info;
    return {
      state: "broken",
      line: `REDIS_URL (redis://${host}:${port}) does not answer PING: ${facts.url.error}; ` +
        "fix it or unset it to use the local server",
    };
  }
  if (facts.localAnswers) return { state: "found", value: { kind: "local", info: { ...local } } };
  if (facts.programs) return { state: "found", value: { kind: "throwaway" } };
  return { state: "missing" };
}

/** Reads `REDIS_URL`; throws a SyntaxError naming what is accepted (never echoing a password). */
export function parseRedisUrl(text: string): RedisServerInfo {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new SyntaxError("REDIS_URL is not a URL: expected redis://[user:password@]host:port");
  }
  if (url.protocol !== "redis:" || url.hostname === "") {
    throw new SyntaxError(`REDIS_URL: expected redis://[user:password@]host:port, got a ${url.protocol} URL`);
  }
  return { url: text, host: url.hostname, port: Number(url.port || 6379) };
}

/** A probe never waits longer than this for a connection and its `+PONG`. */
const PROBE_MS = 1000;

/** RESP's encoding of one command. */
function command(...words: string[]): string {
  return `*${words.length}\r\n${
    words.map((w) => `$${new TextEncoder().encode(w).length}\r\n${w}\r\n`).join("")
  }`;
}

/**
 * Why the server of `url` does not answer PING with `+PONG` within {@link PROBE_MS}, or undefined
 * when it does. The URL's user and password, if any, are sent with AUTH first.
 */
async function pingError(url: string): Promise<string | undefined> {
  const { hostname, port, username, password } = new URL(url);
  const hello = password === ""
    ? ""
    : command("AUTH", ...(username ? [decodeURIComponent(username)] : []), decodeURIComponent(password));
  const controller = new AbortController();
  let conn: Deno.TcpConn | undefined;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
    conn?.close();
  }, PROBE_MS);
  try {
    conn = await Deno.connect({ hostname, port: Number(port || 6379), signal: controller.signal });
    const bytes = new TextEncoder().encode(`${hello}PING\r\n`);
    for (let sent = 0; sent < bytes.length;) sent += await conn.write(bytes.subarray(sent));
    const buffer = new Uint8Array(512);
    let text = "";
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) return "the connection was closed before +PONG";
      text += new TextDecoder().decode(buffer.subarray(0, n));
      const lines = text.split("\r\n");
      text = lines.pop()!;
      for (const line of lines) {
        if (line === "+PONG") return undefined;
        if (line.startsWith("-")) return line.slice(1); // -NOAUTH, -WRONGPASS, -LOADING...
      }
    }
  } catch (error) {
    return timedOut ? `no +PONG within ${PROBE_MS} ms` : (error as Error).message;
  } finally {
    clearTimeout(timer);
    if (!timedOut) conn?.close();
  }
}

/** The server of `url` answers PING within a second. */
export async function redisAnswers(url: string): Promise<boolean> {
  return (await pingError(url)) === undefined;
}

/**
 * The tests' Redis as a requirement: found by {@link locateRedis}, provided by installing
 * `redis-server` (then started as a throw-away server), else one line naming the three ways.
 *
 * @param local where the local server is looked for (a test points it at a closed port)
 */
export function redisRequirement(local: RedisServerInfo = LOCAL_REDIS): Requirement<RedisSource> {
  return {
    missing: "no Redis server for the tests",
    ways: `set REDIS_URL=redis://host:port, run one on ${local.host}:${local.port} (no password), ` +
      "or put redis-server on PATH (apt-get install redis-server)",
    packages: REDIS_PACKAGES,
    async probe() {
      const text = Deno.env.get("REDIS_URL");
      if (text) {
        let info: RedisServerInfo;
        try {
          info = parseRedisUrl(text);
        } catch (error) {
          if (!(error instanceof SyntaxError)) throw error;
          return locateRedis({ url: { line: error.message }, localAnswers: false, programs: false });
        }
        return locateRedis({
          url: { info, error: await pingError(text) },
          localAnswers: false,
          programs: false,
        });
      }
      const localAnswers = await redisAnswers(local.url);
      const programs = !localAnswers && (await REDIS_PROGRAMS.probe()).state === "found";
      return locateRedis({ localAnswers, programs }, local);
    },
  };
}

let redisPromise: Promise<RedisServerInfo> | undefined;

/**
 * The Redis tests use, found or started once per test file: `REDIS_URL`, else 127.0.0.1:6379, else a
 * throw-away `redis-server` killed when the file's isolate ends. Rejects with one line when none
 * can be had (a `REDIS_URL` that does not answer among them). Isolate keys with {@link uniquePrefix}.
 *
 * @example
 * ```ts
 * const client = createClient({ url: (await testRedis()).url, disableOfflineQueue: true });
 * ```
 */
export function testRedis(): Promise<RedisServerInfo> {
  redisPromise ??= findOrStartRedis();
  return redisPromise;
}

/** The server of {@link redisRequirement}: installed, started or failed with one line. */
async function findOrStartRedis(): Promise<RedisServerInfo> {
  const source = await provide(redisRequirement());
  if (source.kind !== "throwaway") return source.info;
  const { url, port } = await startThrowawayRedis();
  return { url, host: "127.0.0.1", port };
}

/** A key prefix of one test, `gatecast-test-<random>:`, so that tests sharing a server never meet. */
export function uniquePrefix(): string {
  return `gatecast-test-${crypto.randomUUID().slice(0, 13)}:`;
}

/** A `redis-server` of our own on 127.0.0.1, without persistence, in a temporary directory. */
export interface ThrowawayRedis {
  /** `redis://127.0.0.1:<port>`. */
  url: string;
  /** Its port, the same after every restart. */
  port: number;
  /** The running process (a new one after each restart). */
  readonly child: Deno.ChildProcess;
  /** Stops the server (SIGTERM, then SIGKILL after 10 s), waits for it to exit and removes its directory. */
  stop(): Promise<void>;
  /** Sends `signal` to the process (SIGKILL: a crashed Redis); a process already gone is ignored. */
  kill(signal: Deno.Signal): void;
  /**
   * Starts it again on the same port (stopping it first if it still runs, and after {@link stop}
   * too) and waits until it answers; the data is gone, as nothing is persisted.
   */
  restart(): Promise<void>;
}

/** How long a throw-away server may take to answer PING after it was started. */
const START_MS = 10_000;

/** The last lines of a log file, indented, for an error message. */
async function logTail(path: string, lines = 8): Promise<string> {
  const text = await Deno.readTextFile(path).catch(() => "");
  const tail = text.trimEnd().split("\n").filter((l) => l !== "").slice(-lines);
  return tail.length === 0 ? "  (empty)" : tail.map((l) => `  ${l}`).join("\n");
}

/**
 * Starts a throw-away `redis-server` (`--save "" --appendonly no`) and waits until it answers PING.
 * A server that exits during start-up (a port taken) is reported at once with the end of its log.
 * It is killed when the isolate ends, if {@link ThrowawayRedis.stop} was not called before.
 *
 * @param port the port to listen on, a free one by default
 * @example
 * ```ts
 * const redis = await startThrowawayRedis();
 * redis.kill("SIGKILL");
 * await redis.restart(); // the same port, answering again
 * await redis.stop();
 * ```
 */
export async function startThrowawayRedis(port: number = freePort()): Promise<ThrowawayRedis> {
  const programs = await provide(REDIS_PROGRAMS);
  const dir = await Deno.makeTempDir({ prefix: "gatecast-redis-" });
  const log = `${dir}/redis.log`;
  const url = `redis://127.0.0.1:${port}`;
  let child: Deno.ChildProcess | undefined;
  let exited: Promise<unknown> = Promise.resolve();
  let running = false;
  const kill = (signal: Deno.Signal) => {
    try {
      if (running) child?.kill(signal);
    } catch { /* already gone */ }
  };
  const onUnload = () => {
    kill("SIGKILL");
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* already removed */ }
  };
  const halt = async () => {
    kill("SIGTERM");
    const force = setTimeout(() => kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(force);
  };
  const start = async () => {
    await halt();
    await Deno.mkdir(dir, { recursive: true });
    globalThis.addEventListener("unload", onUnload);
    child = new Deno.Command(programs["redis-server"], {
      args: [
        ...["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--logfile", log],
        ...["--save", "", "--appendonly", "no", "--daemonize", "no"],
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    // Neither the process nor its status keeps the isolate alive or trips a test's sanitizers.
    child.unref();
    running = true;
    exited = child.status.then(() => running = false);
    const deadline = Date.now() + START_MS;
    while (!(await redisAnswers(url))) {
      if (!running) {
        throw new Error(
          `redis-server on port ${port} exited during start-up; the end of its log:\n${await logTail(log)}`,
        );
      }
      if (Date.now() > deadline) {
        kill("SIGKILL");
        throw new Error(
          `redis-server on port ${port} did not answer within ${START_MS / 1000} s; ` +
            `the end of its log:\n${await logTail(log)}`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  try {
    await start();
  } catch (error) {
    globalThis.removeEventListener("unload", onUnload);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
  return {
    url,
    port,
    get child() {
      return child!;
    },
    async stop() {
      globalThis.removeEventListener("unload", onUnload);
      await halt();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
    kill,
    restart: start,
  };
}
