/**
 * gatecast as a real process (`deno run main.ts` or the bundle): started with given flags and
 * permissions, its port read from the "listening" log line, its stderr kept line by line.
 */

/** A running gatecast process. */
export interface GatecastProcess {
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
 */
export async function startGatecastProcess(
  script: string,
  permissions: string[],
  args: string[],
  env: Record<string, string> = {},
): Promise<GatecastProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...permissions, script, ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr: string[] = [];
  const stdout: string[] = [];
  const listening = Promise.withResolvers<number>();
  const check = () => {
    for (const line of stderr) {
      if (!line.includes('"msg":"listening"')) continue;
      listening.resolve(JSON.parse(line).port);
    }
  };
  const done = Promise.all([collect(child.stdout, stdout, check), collect(child.stderr, stderr, check)]);
  const exited = child.status.then(async (status) => {
    await done;
    return status.code;
  });
  exited.then(() => listening.reject(new Error(`gatecast exited before listening:\n${stderr.join("\n")}`)));
  const timer = setTimeout(() => listening.reject(new Error("gatecast did not listen within 30 s")), 30_000);
  let port: number;
  try {
    port = await listening.promise;
  } catch (error) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await exited;
    throw error;
  } finally {
    clearTimeout(timer);
  }
  return {
    port,
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
