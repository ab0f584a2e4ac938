/**
 * gatecast as a real process (`deno run main.ts` or the bundle): started with given flags and
 * permissions, its port read from the "listening" log line, its stderr kept line by line.
 */

/** A running gatecast process. */
export interface GatecastProcess {
  /** Its process id (for /proc/<pid>/status). */
  readonly pid: number;
  /** The port it listens on. */
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly httpUrl: string;
  /** Every stderr line so far. */
  readonly stderr: string[];
  /** Every stdout line so far. */
  readonly stdout: string[];
  /** Sends SIGTERM and waits for the exit code. */
  stop(): Promise<number>;
  /** The child, for other signals. */
  readonly child: Deno.ChildProcess;
  /** The "listening" log line, parsed (`maxConnections`, `openFileLimit`, ...). */
  readonly listening: Record<string, unknown>;
  /** Resolves with the exit code once the process has exited and its output is read. */
  readonly exited: Promise<number>;
  /** The process's resident memory now, in MiB (0 once it has exited). */
  rssMiB(): number;
}

/** Options of {@link startGatecastProcess}. */
export interface ProcessOptions {
  /** Runs it under `ulimit -n <openFiles>` (through bash). */
  readonly openFiles?: number;
}

async function collect(
  stream: ReadableStream<Uint8Array>,
  lines: string[],
  onLine: () => void,
): Promise<void> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    lines.push(...parts);
    onLine();
  }
  if (rest) lines.push(rest);
  onLine();
}

/**
 * Runs `deno run <permissions> <script> <args>` and waits for its "listening" line.
 *
 * @param script `main.ts` or a bundle
 * @param permissions e.g. `["--allow-net", "--allow-read=/etc/gatecast"]`
 * @param args gatecast's flags; use `--port 0`
 * @param env environment variables added to the test's
 * @param openFileLimit when set, the process runs under `ulimit -n` of it and is told the limit
 *   in `GATECAST_OPEN_FILE_LIMIT`, as `deno task start` tells it
 */
export async function startGatecastProcess(
  script: string,
  permissions: string[],
  args: string[],
  env: Record<string, string> = {},
  options: ProcessOptions = {},
): Promise<GatecastProcess> {
  const deno = [Deno.execPath(), "run", "--no-prompt", ...permissions, script, ...args];
  const limited = options.openFiles === undefined ? deno : [
    "sh",
    "-c",
    `ulimit -n ${options.openFiles} && GATECAST_OPEN_FILE_LIMIT=${options.openFiles} exec "$@"`,
    "sh",
    ...deno,
  ];
  const child = new Deno.Command(limited[0], {
    args: limited.slice(1),
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr: string[] = [];
  const stdout: string[] = [];
  const listening = Promise.withResolvers<Record<string, unknown>>();
  const check = () => {
    for (const line of stderr) {
      if (!line.includes('"msg":"listening"')) continue;
      listening.resolve(JSON.parse(line));
    }
  };
  const done = Promise.all([collect(child.stdout, stdout, check), collect(child.stderr, stderr, check)]);
  const exited = child.status.then(async (status) => {
    await done;
    return status.code;
  });
  exited.then(() => listening.reject(new Error(`gatecast exited before listening:\n${stderr.join("\n")}`)));
  const timer = setTimeout(() => listening.reject(new Error("gatecast did not listen within 30 s")), 30_000);
  let listened: Record<string, unknown>;
  try {
    listened = await listening.promise;
  } catch (error) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await exited;
    throw error;
  } finally {
    clearTimeout(timer);
  }
  const port = listened.port as number;
  return {
    pid: child.pid,
    port,
    child,
    listening: listened,
    exited,
    rssMiB() {
      try {
        return Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${child.pid}/status`))![1]) / 1024;
      } catch {
        return 0;
      }
    },
    httpUrl: `http://127.0.0.1:${port}`,
    stderr,
    stdout,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      return await exited;
    },
  };
}

/**
 * Writes `config` (on 127.0.0.1, a free port and auth off unless it says otherwise) to a temporary
 * file and runs main.ts on it with the least privilege of `deno task start`: `--allow-net`,
 * `--allow-read` of that file, `--allow-env=GATECAST_*,REDIS_DEBUG_MAINTENANCE,REDIS_EMIT_DIAGNOSTICS`. `configPath` is that file: rewrite it
 * before a SIGHUP, remove it when done. The config's `logLevel` must be `info` or `debug` (the
 * start waits for the `listening` line).
 */
export async function startGatecastOnConfig(
  config: Record<string, unknown>,
  options: ProcessOptions = {},
): Promise<GatecastProcess & { configPath: string }> {
  const configPath = await Deno.makeTempFile({ prefix: "gatecast-config-", suffix: ".json" });
  await Deno.writeTextFile(
    configPath,
    JSON.stringify({ host: "127.0.0.1", port: 0, auth: { mode: "none" }, ...config }),
  );
  const main = new URL("../../main.ts", import.meta.url).pathname;
  const permissions = [
    "--allow-net",
    `--allow-read=${configPath}`,
    "--allow-env=GATECAST_*,REDIS_DEBUG_MAINTENANCE,REDIS_EMIT_DIAGNOSTICS",
  ];
  const server = await startGatecastProcess(main, permissions, ["--config", configPath], {}, options)
    .catch(async (error) => {
      await Deno.remove(configPath);
      throw error;
    });
  return Object.assign(server, { configPath });
}

/** {@link startGatecastOnConfig}, whose `stop()` also removes the config file. */
export async function startGatecastWithConfig(
  config: Record<string, unknown>,
  openFileLimit?: number,
): Promise<GatecastProcess> {
  const server = await startGatecastOnConfig(config, { openFiles: openFileLimit });
  const stopProcess = server.stop;
  return Object.assign(server, {
    async stop() {
      const code = await stopProcess();
      await Deno.remove(server.configPath);
      return code;
    },
  });
}
