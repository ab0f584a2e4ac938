/**
 * What `deno task test` runs: `deno test <its arguments>`, after providing once for the whole run
 * what the suite needs (requirements.ts: use it, install it as root with apt-get, or stop at once
 * with one line), with one server for every test file in `MYSQL_URL`: the one found, or one
 * throw-away `mariadbd` started here and stopped afterwards; and likewise one Redis in `REDIS_URL`
 * (a throw-away `redis-server` when none is found). Deno runs each test file in an isolate
 * of its own, so module state in a test file cannot share a server with the next file; this
 * process around `deno test` can.
 */

import {
  CHROMIUM,
  MissingRequirement,
  OPENSSL,
  provideAll,
  PYTHON_AUTOBAHN,
  type Requirement,
} from "./requirements.ts";
import {
  LOCAL_SERVER,
  MARIADB_PROGRAMS,
  mysqlUrl,
  type ServerInfo,
  serverRequirement,
  type ServerSource,
  startThrowawayMariadb,
  type ThrowawayMariadb,
} from "./servers.ts";
import {
  LOCAL_REDIS,
  redisRequirement,
  type RedisServerInfo,
  type RedisSource,
  startThrowawayRedis,
  type ThrowawayRedis,
} from "./redis.ts";

/** Options of {@link runTestTask}. */
export interface TestTaskOptions {
  /** Where the local server is looked for; {@link LOCAL_SERVER} (127.0.0.1:3306) by default. */
  readonly local?: ServerInfo;
  /** Where the local Redis is looked for; {@link LOCAL_REDIS} (127.0.0.1:6379) by default. */
  readonly localRedis?: RedisServerInfo;
  /** `GATECAST_REQUIRE_BROWSER=1`: Chromium is required; read from the environment by default. */
  readonly requireBrowser?: boolean;
}

/**
 * What the whole suite needs, the MariaDB server and Redis first: mariadbd for the tests that start servers of
 * their own, openssl for the TLS test, Debian's autobahn-python for the WAMP test, and Chromium
 * only when the browser tests are required
 * (without it they are ignored).
 */
export function suiteRequirements(
  requireBrowser: boolean,
  local: ServerInfo = LOCAL_SERVER,
  localRedis: RedisServerInfo = LOCAL_REDIS,
): [Requirement<ServerSource>, Requirement<RedisSource>, ...Requirement<unknown>[]] {
  return [
    serverRequirement(local),
    redisRequirement(localRedis),
    MARIADB_PROGRAMS,
    OPENSSL,
    PYTHON_AUTOBAHN,
    ...(requireBrowser ? [CHROMIUM] : []),
  ];
}

/** One line of this task on stderr. */
function say(line: string): void {
  console.error(`deno task test: ${line}`);
}

/**
 * Provides the suite's requirements, runs `deno test` with `args` and returns its exit code; 1
 * when a requirement cannot be provided (after one line saying which and how to provide it).
 *
 * @example
 * ```ts
 * Deno.exit(await runTestTask(["--allow-all", "tests/"]));
 * ```
 */
export async function runTestTask(args: readonly string[], options: TestTaskOptions = {}): Promise<number> {
  const local = options.local ?? LOCAL_SERVER;
  const requireBrowser = options.requireBrowser ?? Deno.env.get("GATECAST_REQUIRE_BROWSER") === "1";
  const localRedis = options.localRedis ?? LOCAL_REDIS;
  let source: ServerSource;
  let redisSource: RedisSource;
  try {
    [source, redisSource] = await provideAll(suiteRequirements(requireBrowser, local, localRedis));
  } catch (error) {
    if (!(error instanceof MissingRequirement)) throw error;
    say(error.message);
    return 1;
  }
  let throwaway: ThrowawayMariadb | undefined;
  if (source.kind === "throwaway") {
    say(`no MYSQL_URL and no server on ${local.host}:${local.port}: one throw-away mariadbd for this run`);
    try {
      throwaway = await startThrowawayMariadb();
    } catch (error) {
      say((error as Error).message);
      return 1;
    }
  }
  let throwawayRedis: ThrowawayRedis | undefined;
  try {
    if (redisSource.kind === "throwaway") {
      say(
        `no REDIS_URL and no Redis on ${localRedis.host}:${localRedis.port}: one throw-away redis-server for this run`,
      );
      try {
        throwawayRedis = await startThrowawayRedis();
      } catch (error) {
        say((error as Error).message);
        return 1;
      }
    }
    const info = source.kind === "throwaway" ? throwaway!.info : source.info;
    const redisUrl = redisSource.kind === "throwaway" ? throwawayRedis!.url : redisSource.info.url;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["test", ...args],
      env: { MYSQL_URL: mysqlUrl(info), REDIS_URL: redisUrl },
    }).spawn();
    // Ctrl-C reaches `deno test` itself; a signal sent to this process alone is passed on, so
    // that the throw-away server is always stopped below.
    const forwards = (["SIGINT", "SIGTERM"] as const).map((name) => {
      const forward = () => {
        try {
          child.kill(name);
        } catch { /* already exited */ }
      };
      Deno.addSignalListener(name, forward);
      return () => Deno.removeSignalListener(name, forward);
    });
    const status = await child.status;
    for (const remove of forwards) remove();
    return status.code;
  } finally {
    await throwawayRedis?.stop();
    if (throwaway) {
      await throwaway.stop();
      await Deno.remove(throwaway.dir, { recursive: true }).catch(() => {});
    }
  }
}

if (import.meta.main) Deno.exit(await runTestTask(Deno.args));
