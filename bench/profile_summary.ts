/**
 * Summarizes a V8 `.cpuprofile` (from `deno run --cpu-prof`): self time per function, the
 * heaviest first, so that a profile can be read without a browser.
 *
 *   deno run --allow-read bench/profile_summary.ts /tmp/prof/*.cpuprofile [--top 30]
 */

import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: { top: { type: "string", default: "30" } },
  allowPositionals: true,
});
for (const path of positionals) {
  const profile = JSON.parse(await Deno.readTextFile(path)) as {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const frame = byId.get(id)!.callFrame;
    const file = frame.url.slice(frame.url.lastIndexOf("/") + 1);
    const key = `${frame.functionName || "(anonymous)"} ${file}:${frame.lineNumber + 1}`;
    const micros = profile.timeDeltas[i] ?? 0;
    self.set(key, (self.get(key) ?? 0) + micros);
    total += micros;
  });
  console.log(`${path}: ${(total / 1000).toFixed(0)} ms sampled`);
  for (const [key, micros] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) {
    console.log(`${(micros / total * 100).toFixed(1).padStart(5)}%  ${key}`);
  }
}
