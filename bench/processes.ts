/**
 * The benchmark's child processes: gatecast itself (`main.ts` with a config file), the ceiling
 * server, and load generators. Each runs under `sh -c 'ulimit -n <hard limit>'`, so that
 * thousands of sockets fit in its file-descriptor limit.
 */

import type { LoadCommand } from "./load_client.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** Spawns `deno <args>` with the open-files limit raised to the hard limit. */
function spawnDeno(args: string[], stdin: "piped" | "null", stdout: "piped" | "null"): Deno.ChildProcess {
  return new Deno.Command("sh", {
    args: ["-c", 'ulimit -n "$(ulimit -Hn)" && exec "$0" "$@"', Deno.execPath(), ...args],
    cwd: ROOT,
    stdin,
    stdout,
    stderr: "inherit",
  }).spawn();
}

/** TCP states of `/proc/net/tcp`. */
const LISTEN = "0A";
const ESTABLISHED = "01";

/** Inodes of the sockets on a local TCP port in a state, IPv4 and IPv6 (`/proc/net/tcp`, `/proc/net/tcp6`). */
function socketInodes(port: number, state: string): Set<string> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of Deno.readTextFileSync(table).split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      // local_address, state, inode
      if (fields.length > 9 && fields[1].endsWith(hex) && fields[3] === state) inodes.add(fields[9]);
    }
  }
  return inodes;
}

/** How many of a process's own sockets are on a local port in a state (with `reusePort`, others share the port). */
function socketsOf(pid: number, port: number, state: string): number {
  const inodes = socketInodes(port, state);
  if (inodes.size === 0) return 0;
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(`/proc/${pid}/fd`)];
  } catch {
    return 0; // it exited: the caller sees its status
  }
  let count = 0;
  for (const entry of entries) {
    try {
      const inode = Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`).match(/^socket:\[(\d+)\]$/)?.[1];
      if (inode !== undefined && inodes.has(inode)) count++;
    } catch {
      // closed meanwhile
    }
  }
  return count;
}

/** The connections a server process accepted on its port and holds open (its share under `reusePort`). */
export function acceptedConnections(pid: number, port: number): number {
  return socketsOf(pid, port, ESTABLISHED);
}

/** Resolves once the child itself listens on the port; rejects if it exits first. */
async function waitForPort(child: Deno.ChildProcess, port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited: Deno.CommandStatus | undefined;
  child.status.then((status) => exited = status);
  while (true) {
    if (exited) throw new Error(`the server exited with code ${exited.code} before listening on ${port}`);
    if (socketsOf(child.pid, port, LISTEN) > 0) return;
    if (Date.now() > deadline) throw new Error(`process ${child.pid} does not listen on port ${port}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A server under test, in its own process. */
export interface ServerProcess {
  /** Its process id, for `/proc`. */
  readonly pid: number;
  /** Its port on 127.0.0.1. */
  readonly port: number;
  /** Stops it (SIGTERM, then SIGKILL) and waits for it to exit. */
  stop(): Promise<void>;
}

function serverProcess(child: Deno.ChildProcess, port: number): ServerProcess {
  return {
    pid: child.pid,
    port,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      const killer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      await child.status;
      clearTimeout(killer);
    },
  };
}

/**
 * Extra `deno run` flags for every gatecast the benchmark starts, cluster nodes included
 * (bench/main.ts: `--profile <dir>` adds `--cpu-prof`).
 */
export const gatecastFlags: string[] = [];

/** Starts gatecast as the real program, `main.ts --config <file>`, and waits until it listens. */
export async function startGatecast(configPath: string, port: number) {
  const child = spawnDeno(
    [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-env",
      ...gatecastFlags,
      "main.ts",
      "--config",
      configPath,
    ],
    "null",
    "null",
  );
  await waitForPort(child, port);
  return serverProcess(child, port);
}

/** Starts the ceiling server and waits until it listens. */
export async function startCeiling(port: number, devices: number, intervalMs: number) {
  const child = spawnDeno(
    [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-env",
      "bench/ceiling_server.ts",
      "--port",
      String(port),
      "--devices",
      String(devices),
      "--interval",
      String(intervalMs),
    ],
    "null",
    "null",
  );
  await waitForPort(child, port);
  return serverProcess(child, port);
}

/** A load-generator process, driven one command at a time. */
export class LoadProcess {
  private readonly child: Deno.ChildProcess;
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  private readonly lines: AsyncIterator<string>;

  constructor() {
    this.child = spawnDeno(["run", "--allow-net", "bench/load_client.ts"], "piped", "piped");
    this.writer = this.child.stdin.getWriter();
    this.lines = readLines(this.child.stdout);
  }

  /** Sends one command and returns its reply; a reply later than `timeoutMs` ends the benchmark. */
  async request<T = Record<string, unknown>>(command: LoadCommand, timeoutMs = 120_000): Promise<T> {
    await this.writer.write(new TextEncoder().encode(JSON.stringify(command) + "\n"));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`load generator did not answer '${command.cmd}' within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      const next = await Promise.race([this.lines.next(), late]);
      if (next.done) throw new Error("load generator exited");
      return JSON.parse(next.value);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends the process. */
  async stop(): Promise<void> {
    await this.writer.close().catch(() => {});
    try {
      this.child.kill("SIGKILL");
    } catch { /* gone */ }
    await this.child.status;
  }
}

async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
    }
  }
}

/** Milliseconds from spawning `main.ts` to its "listening" log line, excluding any database. */
export async function timeToListening(configPath: string): Promise<number> {
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-read", "--allow-env", "main.ts", "--config", configPath],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let elapsed = NaN;
  for await (const line of readLines(child.stderr)) {
    if (line.includes('"msg":"listening"')) {
      elapsed = performance.now() - started;
      break;
    }
  }
  child.kill("SIGKILL");
  await child.status;
  await child.stderr.cancel().catch(() => {});
  if (Number.isNaN(elapsed)) throw new Error("gatecast exited without logging 'listening'");
  return elapsed;
}
