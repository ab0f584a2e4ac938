/**
 * The architecture as `ls lib/` shows it: data flows one way, config → sources → handles → hub →
 * wire → net, and a module imports only from its own folder, an earlier one, or ops/ (logs,
 * metrics, health, reload, backoff). ops/ and app.ts may import anything: they watch and wire.
 */

import assert from "node:assert/strict";

/** The folders of lib/ in the order data flows through them. */
const FLOW = ["config", "sources", "handles", "hub", "cluster", "wire", "net"] as const;
/** Folders any module may import, and that may import anything. */
const FREE = ["ops"];

const LIB = new URL("../lib/", import.meta.url);

/** Every .ts file under lib/, as a path relative to lib/. */
function libFiles(dir = LIB, prefix = ""): string[] {
  const files: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    if (entry.isDirectory) files.push(...libFiles(new URL(`${entry.name}/`, dir), `${prefix}${entry.name}/`));
    else if (entry.name.endsWith(".ts")) files.push(prefix + entry.name);
  }
  return files.sort();
}

/** The lib/-relative paths a module imports (relative specifiers only; npm: and node: are not lib). */
function importsOf(file: string): string[] {
  const text = Deno.readTextFileSync(new URL(file, LIB));
  const found: string[] = [];
  for (const match of text.matchAll(/(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g)) {
    const target = new URL(match[1], new URL(file, LIB)).href;
    if (target.startsWith(LIB.href)) found.push(target.slice(LIB.href.length));
  }
  return found;
}

function folderOf(path: string): string {
  return path.includes("/") ? path.split("/")[0] : "";
}

/** Why an import goes against the flow, or `undefined` when it does not. */
function violation(from: string, to: string): string | undefined {
  const source = folderOf(from);
  const target = folderOf(to);
  if (source === "" || FREE.includes(source) || FREE.includes(target) || source === target) return undefined;
  const a = FLOW.indexOf(source as typeof FLOW[number]);
  const b = FLOW.indexOf(target as typeof FLOW[number]);
  if (a < 0) return `lib/${from} is in a folder the flow does not name`;
  if (b < 0) return `lib/${from} imports lib/${to}, outside the flow's folders`;
  return b > a
    ? `lib/${from} (${source}) imports lib/${to} (${target}), which comes later in the flow`
    : undefined;
}

Deno.test("every lib module sits in a folder of the flow, in ops/, or is app.ts", () => {
  const misplaced = libFiles().filter((file) => {
    const folder = folderOf(file);
    return folder === ""
      ? file !== "app.ts"
      : !FLOW.includes(folder as typeof FLOW[number]) && !FREE.includes(folder);
  });
  assert.deepEqual(misplaced, []);
});

Deno.test("no module imports against the one-way flow config → sources → handles → hub → wire → net", () => {
  const problems = libFiles().flatMap((file) =>
    importsOf(file).map((target) => violation(file, target)).filter((problem) => problem !== undefined)
  );
  assert.deepEqual(problems, []);
});

Deno.test("the check itself catches an import against the flow", () => {
  assert.equal(
    violation("hub/fanout.ts", "net/connection.ts"),
    "lib/hub/fanout.ts (hub) imports lib/net/connection.ts (net), which comes later in the flow",
  );
  assert.equal(violation("net/connection.ts", "hub/fanout.ts"), undefined);
  assert.equal(violation("hub/poller.ts", "ops/backoff.ts"), undefined);
  assert.equal(violation("ops/reload.ts", "hub/poller.ts"), undefined);
  assert.equal(violation("config/config.ts", "sources/source.ts")?.includes("later in the flow"), true);
});
