/**
 * gatecast as a real child process (`main.ts`), for signals and process limits: starts it,
 * waits for its `listening` log line, and keeps its log lines for assertions.
 */

/** A running gatecast process. */
export interface ServerProcess {
  /** The child. */
  readonly child: Deno.ChildProcess;
  /** The parsed `listening` log line (`port`, `maxConnections`, `openFileLimit`, ...). */
  readonly listening: Record<string, unknown> & { port: number };
  /** Every log line so far, parsed. */
  readonly logs: Record<string, unknown>[];
  /** Waits for the exit; resolves with the code and how long it took from `since`. */
  exited(since: number): Promise<{ code: number; ms: number }>;
  /** The process's resident memory now, in MiB (0 once it has exited). */
  rssMiB(): number;
}

/**
 * Starts `main.ts --config <path>`, optionally under `ulimit -n <openFiles>` (through bash).
 */
export async function startServerProcess(configPath: string, openFiles?: number): Promise<ServerProcess> {
  const deno = [
    Deno.execPath(),
    "run",
    "--allow-net",
    "--allow-read",
    "--allow-env",
    "--allow-run=sh",
    "main.ts",
    "--config",
    configPath,
  ];
  const command = openFiles === undefined
    ? new Deno.Command(deno[0], { args: deno.slice(1), cwd: root(), stdout: "null", stderr: "piped" })
    : new Deno.Command("bash", {
      args: ["-c", `ulimit -n ${openFiles}; exec ${deno.map((a) => `'${a}'`).join(" ")}`],
      cwd: root(),
      stdout: "null",
      stderr: "piped",
    });
  const child = command.spawn();
  const logs: Record<string, unknown>[] = [];
  const listening = Promise.withResolvers<Record<string, unknown> & { port: number }>();
  (async () => {
    let rest = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const lines = rest.split("\n");
      rest = lines.pop()!;
      for (const line of lines) {
        try {
          const entry = JSON.parse(line);
          logs.push(entry);
          if (entry.msg === "listening") listening.resolve(entry);
        } catch {
          logs.push({ text: line });
        }
      }
    }
    listening.reject(new Error(`server exited before listening: ${JSON.stringify(logs)}`));
  })();
  return {
    child,
    listening: await listening.promise,
    logs,
    async exited(since) {
      const status = await child.status;
      return { code: status.code, ms: Date.now() - since };
    },
    rssMiB() {
      try {
        return Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${child.pid}/status`))![1]) / 1024;
      } catch {
        return 0;
      }
    },
  };
}

function root(): string {
  return new URL("../..", import.meta.url).pathname;
}
