/**
 * gatecast as a separate process, started the way `deno task start` starts it (least
 * privilege), for tests that need a real process: its own open-file limit, its own memory.
 */

/** A running gatecast process. */
export interface ServerProcess {
  /** The port it listens on. */
  readonly port: number;
  /** Its process id. */
  readonly pid: number;
  /** The `listening` log line, parsed. */
  readonly listening: Record<string, unknown>;
  /** Log lines so far (stderr, drained continuously so the server never blocks on it). */
  readonly logs: string[];
  /** Resident memory in bytes, from /proc/<pid>/status. */
  rssBytes(): number;
  /** Whether it has exited. */
  exited(): boolean;
  /** Stops it (SIGTERM) and removes its config directory. */
  stop(): Promise<void>;
}

/**
 * Writes `config` to a temporary file and starts `main.ts` on it; `ulimitNofile` lowers the
 * open-file limit first. Resolves once the server logged `listening` (so `logLevel` must be
 * `info` or `debug`).
 */
export async function startServerProcess(
  config: Record<string, unknown>,
  ulimitNofile?: number,
): Promise<ServerProcess> {
  const dir = await Deno.makeTempDir({ prefix: "gatecast-proc-" });
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  const root = new URL("../..", import.meta.url).pathname;
  const limit = ulimitNofile === undefined ? "" : `ulimit -n ${ulimitNofile} && `;
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      `${limit}GATECAST_OPEN_FILE_LIMIT=$(ulimit -Hn) exec "${Deno.execPath()}" run --allow-net --allow-read=${dir} --allow-env=GATECAST_* main.ts --config ${dir}/config.json`,
    ],
    cwd: root,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const logs: string[] = [];
  const listening = Promise.withResolvers<Record<string, unknown>>();
  (async () => {
    let rest = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop()!;
      for (const line of lines) {
        logs.push(line);
        if (line.includes('"msg":"listening"')) listening.resolve(JSON.parse(line));
      }
    }
    listening.reject(new Error(`gatecast exited before listening: ${logs.join("\n")}`));
  })();
  const line = await listening.promise;
  return {
    port: line.port as number,
    pid: child.pid,
    listening: line,
    logs,
    rssBytes() {
      const text = Deno.readTextFileSync(`/proc/${child.pid}/status`);
      return Number(/^VmRSS:\s+(\d+) kB/m.exec(text)![1]) * 1024;
    },
    exited: () => exited,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already exited */ }
      await status;
      await Deno.remove(dir, { recursive: true });
    },
  };
}
