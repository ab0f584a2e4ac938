/**
 * The README's commands as a newcomer types them: `deno task demo` runs through deno.json's own
 * task line, so what the task provides (permissions, the open-file limit) is what is tested.
 */

import assert from "node:assert/strict";

/** Runs `deno task <name> <args>` until its "listening" log line, then stops it; returns its stderr lines. */
async function runTaskUntilListening(name: string, args: string[]): Promise<string[]> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", name, ...args],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  let rest = "";
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  try {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      lines.push(...parts);
      if (parts.some((line) => line.includes('"msg":"listening"'))) break;
    }
  } finally {
    clearTimeout(timer);
    child.kill("SIGTERM");
    await child.status;
  }
  return lines;
}

Deno.test("deno task demo starts without a warning: the task provides the open-file limit as start does", async () => {
  const lines = await runTaskUntilListening("demo", ["--port", "0"]);
  const listening = lines.find((line) => line.includes('"msg":"listening"'));
  assert.ok(listening, `the demo did not listen:\n${lines.join("\n")}`);
  assert.match(JSON.parse(listening).openFileLimit.toString(), /^\d+$/);
  assert.deepEqual(lines.filter((line) => line.includes('"level":"warn"')), []);
});
