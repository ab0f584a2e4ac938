/**
 * lib/settings.ts declares each top-level setting once: `parseConfig` accepts exactly what a
 * declaration says and fills in its default, README's settings table is the one generated from the
 * table, and every default the documentation states for a setting is the declared one.
 */

import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../../lib/config/config.ts";
import { type ScalarSetting, SETTING_ENTRIES, type SETTINGS } from "../../lib/config/settings.ts";
import { REGENERATE, TABLE_BEGIN, withSettingsTable } from "../../tools/settings_docs.ts";

const ROOT = new URL("../../", import.meta.url);
const BASE = { auth: { mode: "none" }, databases: {} };
const SCALARS = SETTING_ENTRIES.filter((entry): entry is [keyof typeof SETTINGS, ScalarSetting] =>
  entry[1].type !== "section"
);

const DEFAULTS = new Map<string, unknown>(SCALARS.map(([key, setting]) => [key, setting.default]));

function refusal(doc: Record<string, unknown>): string {
  try {
    parseConfig(doc, () => undefined);
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  return "(accepted)";
}

Deno.test("every scalar setting left out takes its declared default", () => {
  const config = parseConfig(BASE, () => undefined) as unknown as Record<string, unknown>;
  for (const [key, setting] of SCALARS) assert.equal(config[key], setting.default, key);
});

Deno.test("every scalar setting takes the edges of its declaration and refuses a value beyond, naming the key and what is accepted", () => {
  // The send buffers must be ordered (hard ≥ soft): hold the other one at its extreme.
  const doc = (key: string, value: unknown) => ({
    ...BASE,
    sendBufferSoftBytes: 1024,
    sendBufferHardBytes: 2 ** 31,
    [key]: value,
  });
  for (const [key, setting] of SCALARS) {
    const bad: unknown[] = [];
    if (setting.type === "integer") {
      for (const edge of [setting.min, setting.max]) {
        assert.equal((parseConfig(doc(key, edge), () => undefined) as never)[key], edge, `${key}=${edge}`);
      }
      bad.push(setting.min - 1, setting.max + 1, setting.min + 0.5, String(setting.min));
    } else if (setting.type === "choice") {
      for (const value of setting.values) {
        assert.equal((parseConfig(doc(key, value), () => undefined) as never)[key], value);
      }
      bad.push("bogus", 1);
    } else if (setting.type === "boolean") {
      for (const value of [true, false]) {
        assert.equal((parseConfig(doc(key, value), () => undefined) as never)[key], value);
      }
      bad.push("yes", "true", 1, null);
    } else {
      bad.push("", 1);
    }
    const accepted = setting.type === "integer"
      ? `an integer ${setting.min}-${setting.max}`
      : setting.type === "choice"
      ? `one of ${setting.values.join(", ")}`
      : setting.type === "boolean"
      ? "true or false"
      : "a non-empty string";
    for (const value of bad) {
      assert.equal(refusal(doc(key, value)), `${key}: expected ${accepted}, got ${JSON.stringify(value)}`);
    }
  }
});

Deno.test("a section's declared default, given explicitly, parses the same as leaving it out", () => {
  const absent = parseConfig(BASE, () => undefined);
  let checked = 0;
  for (const [key, setting] of SETTING_ENTRIES) {
    if (setting.type !== "section" || setting.default === undefined) continue;
    assert.deepEqual(parseConfig({ ...BASE, [key]: setting.default }, () => undefined), absent, key);
    checked++;
  }
  assert.equal(checked, 4); // handles, legacy, allowedOrigins, trustedProxies
});

Deno.test("a required section left out is refused naming it", () => {
  for (const [key, setting] of SETTING_ENTRIES) {
    if (setting.type !== "section" || !setting.required) continue;
    const { [key as "auth"]: _, ...rest } = BASE;
    assert.match(refusal(rest), new RegExp(`^${key}: is required: `));
  }
});

Deno.test("README's settings table is the one generated from lib/settings.ts", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  assert.ok(readme.includes(TABLE_BEGIN), `README.md has lost the line ${TABLE_BEGIN}`);
  assert.ok(
    withSettingsTable(readme) === readme,
    `README.md's settings table differs from lib/settings.ts: run \`${REGENERATE}\``,
  );
});

/** A default as the docs write it (`65,536 bytes`, `10 s`, `1 MiB`, `` `info` ``, `` `false` ``), in the setting's own unit. */
function statedValue(key: string, text: string): unknown {
  const quoted = /^`([^`]*)`/.exec(text);
  if (quoted) return typeof DEFAULTS.get(key) === "string" ? quoted[1] : statedValue(key, quoted[1]);
  const flag = /^(true|false)\b/.exec(text);
  if (flag) return flag[1] === "true";
  const number = /^([0-9][0-9,]*)(?:\s*(ms|s|KiB|MiB|bytes)\b)?/.exec(text);
  if (!number) return undefined;
  const n = Number(number[1].replace(/,+$/, "").replaceAll(",", ""));
  const scale = { ms: 1, bytes: 1, KiB: 1024, MiB: 1 << 20, s: key.endsWith("Ms") ? 1000 : 1 };
  return n * (number[2] ? scale[number[2] as keyof typeof scale] : 1);
}

/** Every `key` … default X the Markdown states: in prose ("`maxConnections` (default 10,000") and in tables. */
function statedDefaults(markdown: string): [string, string][] {
  const stated: [string, string][] = [];
  const keys = SCALARS.map(([key]) => key).join("|");
  const prose = new RegExp(
    `\`(${keys})\`(?:\\s+[a-z]+){0,2}\\s*[,(]\\s*default\\s+(\`[^\`]+\`|[0-9][0-9,]*(?:\\s*(?:ms|s|KiB|MiB|bytes)\\b)?)`,
    "g",
  );
  for (const match of markdown.matchAll(prose)) stated.push([match[1], match[2]]);
  const keyCell = new RegExp(`^\`(${keys})\`(, \`(${keys})\`)*$`);
  for (const line of markdown.split("\n")) {
    if (!line.startsWith("|")) continue;
    const cells = line.split("|").slice(1, -1).map((cell) => cell.trim());
    cells.forEach((cell, i) => {
      if (!keyCell.test(cell) || cells[i + 1] === undefined) return;
      const parts = cells[i + 1].split(/,\s+/);
      cell.split(", ").forEach((key, j) => stated.push([key.slice(1, -1), parts[j] ?? ""]));
    });
  }
  return stated;
}

Deno.test("every default README and docs/ state for a setting is its declared default", async () => {
  const files = ["README.md"];
  for await (const entry of Deno.readDir(new URL("docs/", ROOT))) {
    if (entry.name.endsWith(".md")) files.push(`docs/${entry.name}`);
  }
  const wrong: string[] = [];
  let checked = 0;
  for (const file of files.sort()) {
    const markdown = await Deno.readTextFile(new URL(file, ROOT));
    for (const [key, text] of statedDefaults(markdown)) {
      const declared = DEFAULTS.get(key);
      const value = statedValue(key, text);
      checked++;
      if (value !== declared) wrong.push(`${file}: ${key} default "${text}", declared ${declared}`);
    }
  }
  assert.deepEqual(wrong, []);
  // README's table alone states every scalar default; the docs state more.
  assert.ok(checked > SCALARS.length, `only ${checked} stated defaults found`);
});
