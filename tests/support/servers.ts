/**
 * The MariaDB/MySQL server tests use, over real TCP: `MYSQL_URL` when set, else a server on
 * 127.0.0.1:3306 (root, no password), else a throw-away `mariadbd` started in a temporary
 * directory. When none of the three exists, requirements.ts's rule applies: install
 * `mariadb-server` as root with apt-get, else stop with one line naming the three ways.
 * `deno task test` decides once per run (test_task.ts); a test file run alone decides for itself.
 */

import mysql from "mysql2/promise";
import { type Probe, programsOnPath, provide, type Requirement } from "./requirements.ts";

/** Admin connection settings of a reachable server. */
export interface ServerInfo {
  host: string;
  port: number;
  user: string;
  password: string;
}

/** The server looked for on this machine: 127.0.0.1:3306, root without a password. */
export const LOCAL_SERVER: Readonly<ServerInfo> = {
  host: "127.0.0.1",
  port: 3306,
  user: "root",
  password: "",
};

/** Debian's packages of MariaDB, as `.ci/run` installs them. */
const MARIADB_PACKAGES = ["mariadb-server", "mariadb-client"];

/** The programs a throw-away server needs; poller, fuzz and health tests start servers of their own. */
export const MARIADB_PROGRAMS: Requirement<Record<string, string>> = programsOnPath(
  ["mariadbd", "mariadb-install-db"],
  {
    missing: "mariadbd and mariadb-install-db are not on PATH (the poller, fuzz and health tests start " +
      "servers of their own)",
    ways: "install mariadb-server (apt-get install mariadb-server; Debian puts mariadbd in /usr/sbin)",
    packages: MARIADB_PACKAGES,
  },
);

/** Where the tests' server comes from. */
export type ServerSource =
  | { readonly kind: "url"; readonly info: ServerInfo }
  | { readonly kind: "local"; readonly info: ServerInfo }
  | { readonly kind: "throwaway" };

/** What was found on the machine, for {@link locateServer}. */
export interface ServerFacts {
  /** `MYSQL_URL` when set: its settings, or the line saying why they cannot be used. */
  readonly url?: { readonly info: ServerInfo; readonly error?: string } | { readonly line: string };
  /** The local server answers as root without a password. */
  readonly localAnswers: boolean;
  /** mariadbd and mariadb-install-db are on PATH. */
  readonly programs: boolean;
}

/**
 * The order of the three ways: `MYSQL_URL` (which must answer: no silent fallback), the local
 * server, a throw-away server; none of them is a missing requirement.
 */
export function locateServer(facts: ServerFacts, local: ServerInfo = LOCAL_SERVER): Probe<ServerSource> {
  if (facts.url !== undefined) {
    if ("line" in facts.url) return { state: "broken", line: facts.url.line };
    if (facts.url.error === undefined) {
      return { state: "found", value: { kind: "url", info: facts.url.info } };
    }
    return {
      state: "broken",
      line: `MYSQL_URL (${describeServer(facts.url.info)}) does not answer: ${facts.url.error}; ` +
        "fix it or unset it to use the local server",
    };
  }
  if (facts.localAnswers) return { state: "found", value: { kind: "local", info: { ...local } } };
  if (facts.programs) return { state: "found", value: { kind: "throwaway" } };
  return { state: "missing" };
}

/** `mysql://user@host:port`, without the password. */
function describeServer(info: ServerInfo): string {
  return `mysql://${encodeURIComponent(info.user)}@${info.host}:${info.port}`;
}

/** The `mysql://` URL of a server, password included, as `MYSQL_URL` takes it. */
export function mysqlUrl(info: ServerInfo): string {
  const user = encodeURIComponent(info.user);
  return `mysql://${user}:${encodeURIComponent(info.password)}@${info.host}:${info.port}`;
}

/** Reads `MYSQL_URL`; throws a SyntaxError naming what is accepted (never echoing the password). */
export function parseMysqlUrl(text: string): ServerInfo {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new SyntaxError("MYSQL_URL is not a URL: expected mysql://user:password@host:port");
  }
  if (url.protocol !== "mysql:" || url.hostname === "") {
    throw new SyntaxError(`MYSQL_URL: expected mysql://user:password@host:port, got a ${url.protocol} URL`);
  }
  return {
    host: url.hostname,
    port: Number(url.port || 3306),
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
  };
}

/**
 * The tests' server as a requirement: found by {@link locateServer}, provided by installing
 * `mariadb-server` (then started as a throw-away server), else one line naming the three ways.
 *
 * @param local where the local server is looked for (a test points it at a closed port)
 */
export function serverRequirement(local: ServerInfo = LOCAL_SERVER): Requirement<ServerSource> {
  return {
    missing: "no MariaDB or MySQL server for the tests",
    ways: `set MYSQL_URL=mysql://user:password@host:port, run one on ${local.host}:${local.port} ` +
      "(root, no password), or put mariadbd on PATH (apt-get install mariadb-server; Debian puts it in /usr/sbin)",
    packages: MARIADB_PACKAGES,
    async probe() {
      const text = Deno.env.get("MYSQL_URL");
      if (text) {
        try {
          const info = parseMysqlUrl(text);
          return locateServer({
            url: { info, error: await connectError(info) },
            localAnswers: false,
            programs: false,
          });
        } catch (error) {
          if (!(error instanceof SyntaxError)) throw error;
          return locateServer({ url: { line: error.message }, localAnswers: false, programs: false });
        }
      }
      const localAnswers = (await connectError(local)) === undefined;
      const programs = !localAnswers && (await MARIADB_PROGRAMS.probe()).state === "found";
      return locateServer({ localAnswers, programs }, local);
    },
  };
}

let serverPromise: Promise<ServerInfo> | undefined;

/**
 * The server tests use, found or started once per test file (Deno runs each test file in an
 * isolate of its own; `deno task test` hands every file one server in `MYSQL_URL`).
 */
export function testServer(): Promise<ServerInfo> {
  serverPromise ??= findOrStartServer();
  return serverPromise;
}

/** The server of {@link serverRequirement}: installed, started or failed with one line. */
async function findOrStartServer(): Promise<ServerInfo> {
  const source = await provide(serverRequirement());
  if (source.kind === "throwaway") return (await startThrowawayMariadb()).info;
  return source.info;
}

/** Why a connection as `info` fails, or undefined when the server answers. */
async function connectError(info: ServerInfo): Promise<string | undefined> {
  try {
    const conn = await mysql.createConnection({ ...info, connectTimeout: 2000 });
    await conn.end();
    return undefined;
  } catch (error) {
    return error instanceof Error
      ? error.message || String((error as { code?: string }).code)
      : String(error);
  }
}

/** The server answers a connection as `info`. */
export async function canConnect(info: ServerInfo): Promise<boolean> {
  return (await connectError(info)) === undefined;
}

/** A `mariadbd` of our own, in a temporary directory. */
export interface ThrowawayMariadb {
  info: ServerInfo;
  /** Its data directory, socket, pid file and `mariadbd.log`; the caller removes it when done. */
  dir: string;
  /** Stops the server (SIGTERM, then SIGKILL) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data directory. */
  restart(): Promise<void>;
  /** Freezes (SIGSTOP) or thaws (SIGCONT) the process: a stalled database. */
  pause(paused: boolean): void;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** The last lines of a log file, indented, for an error message. */
async function logTail(path: string, lines = 8): Promise<string> {
  const text = await Deno.readTextFile(path).catch(() => "");
  const tail = text.trimEnd().split("\n").filter((l) => l !== "").slice(-lines);
  return tail.length === 0 ? "  (empty)" : tail.map((l) => `  ${l}`).join("\n");
}

/**
 * Starts a throw-away MariaDB server (root, no password) and waits until it answers. A server
 * that exits during start-up (a port taken, a broken install) is reported at once with the end
 * of its log. Tests keep its InnoDB buffer pool at 32 MiB, a quarter of MariaDB's default, to
 * stay small; the benchmark passes MariaDB's default, 128 MiB, so that its tables are read from
 * memory as on a real server.
 *
 * @param bufferPoolMiB `innodb_buffer_pool_size` in MiB
 * @param port the port to listen on, a free one by default
 * @param extraArgs more `mariadbd` options, after the defaults (`--log-bin` overrides `--skip-log-bin`)
 */
export async function startThrowawayMariadb(
  bufferPoolMiB = 32,
  port = freePort(),
  extraArgs: readonly string[] = [],
): Promise<ThrowawayMariadb> {
  const programs = await provide(MARIADB_PROGRAMS);
  const dir = await Deno.makeTempDir({ prefix: "gatecast-mariadb-" });
  const install = await new Deno.Command(programs["mariadb-install-db"], {
    args: [
      "--no-defaults",
      `--datadir=${dir}/data`,
      "--auth-root-authentication-method=normal",
      "--skip-test-db",
      "--user=root",
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!install.success) {
    throw new Error(`mariadb-install-db failed: ${new TextDecoder().decode(install.stderr)}`);
  }
  const info = { host: "127.0.0.1", port, user: "root", password: "" };
  const log = `${dir}/mariadbd.log`;
  // Started through bash in the background, so that no child handle stays open in the test
  // (Deno's resource sanitizer) and the server outlives the test that happened to start it.
  let pid = 0;
  const alive = () => {
    try {
      return pid > 0 && !Deno.readTextFileSync(`/proc/${pid}/stat`).split(" ")[2].startsWith("Z");
    } catch {
      return false;
    }
  };
  const signal = (name: Deno.Signal) => {
    try {
      if (pid > 0) Deno.kill(pid, name);
    } catch { /* already gone */ }
  };
  const start = async () => {
    const args = [
      "--no-defaults",
      `--datadir=${dir}/data`,
      `--socket=${dir}/mysqld.sock`,
      `--pid-file=${dir}/mysqld.pid`,
      `--port=${port}`,
      "--bind-address=127.0.0.1",
      "--user=root",
      "--skip-log-bin",
      `--innodb-buffer-pool-size=${bufferPoolMiB}M`,
      ...extraArgs,
    ];
    const out = await new Deno.Command("bash", {
      args: ["-c", 'log=$1; shift; "$@" >>"$log" 2>&1 & echo $!', "bash", log, programs.mariadbd, ...args],
      stdout: "piped",
    }).output();
    pid = Number(new TextDecoder().decode(out.stdout).trim());
    const deadline = Date.now() + 30_000;
    while (!(await canConnect(info))) {
      if (!alive()) {
        throw new Error(
          `mariadbd on port ${port} exited during start-up; the end of ${log}:\n${await logTail(log)}`,
        );
      }
      if (Date.now() > deadline) {
        signal("SIGKILL");
        throw new Error(
          `mariadbd on port ${port} did not answer within 30 s; the end of ${log}:\n${await logTail(log)}`,
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const stop = async () => {
    signal("SIGCONT");
    signal("SIGTERM");
    const deadline = Date.now() + 15_000;
    while (alive()) {
      if (Date.now() > deadline) signal("SIGKILL");
      await new Promise((r) => setTimeout(r, 100));
    }
    pid = 0;
  };
  await start();
  globalThis.addEventListener("unload", () => signal("SIGKILL"));
  return {
    info,
    dir,
    stop,
    restart: start,
    pause: (paused) => signal(paused ? "SIGSTOP" : "SIGCONT"),
  };
}
