/**
 * The rule for what the tests need from the machine (tests/support/requirements.ts): use it when
 * found, install it as root with apt-get, else one line naming the ways; every combination.
 */

import assert from "node:assert/strict";
import {
  CHROMIUM,
  decide,
  findOnPath,
  type Machine,
  OPENSSL,
  type Probe,
  programsOnPath,
} from "./support/requirements.ts";

const MACHINES: readonly Machine[] = [
  { root: true, aptGet: true },
  { root: true, aptGet: false },
  { root: false, aptGet: true },
  { root: false, aptGet: false },
];

Deno.test("a found requirement is used on any machine, before or after an install", () => {
  for (const machine of MACHINES) {
    for (const afterInstall of [false, true]) {
      assert.deepEqual(
        decide(OPENSSL, { state: "found", value: "/usr/bin/openssl" }, machine, afterInstall),
        { action: "use", value: "/usr/bin/openssl" },
      );
    }
  }
});

Deno.test("a missing requirement is installed only as root with apt-get, and only once", () => {
  for (const machine of MACHINES) {
    for (const afterInstall of [false, true]) {
      const decision = decide(OPENSSL, { state: "missing" }, machine, afterInstall);
      if (machine.root && machine.aptGet && !afterInstall) {
        assert.deepEqual(decision, { action: "install", packages: ["openssl"] });
        continue;
      }
      const why = afterInstall
        ? "still missing after apt-get install openssl"
        : !machine.root
        ? "not installed: not running as root"
        : "not installed: apt-get is not on PATH";
      assert.deepEqual(decision, {
        action: "fail",
        line: "openssl is not on PATH (tests/tls_test.ts makes its certificates with it): " +
          `install openssl (apt-get install openssl); ${why}`,
      }, JSON.stringify({ machine, afterInstall }));
    }
  }
});

Deno.test("a broken requirement fails with its own line and is never installed, even as root", () => {
  const broken: Probe<string> = { state: "broken", line: "MYSQL_URL (mysql://root@db:3306) does not answer" };
  for (const machine of MACHINES) {
    for (const afterInstall of [false, true]) {
      assert.deepEqual(decide(OPENSSL, broken, machine, afterInstall), {
        action: "fail",
        line: "MYSQL_URL (mysql://root@db:3306) does not answer",
      });
    }
  }
});

Deno.test("Chromium's failure line names its package and how to skip the browser tests", () => {
  const decision = decide(CHROMIUM, { state: "missing" }, { root: false, aptGet: true }, false);
  assert.deepEqual(decision, {
    action: "fail",
    line: "/usr/bin/chromium is missing and GATECAST_REQUIRE_BROWSER=1 requires the browser tests: " +
      "install chromium (apt-get install chromium), or unset GATECAST_REQUIRE_BROWSER to skip them; " +
      "not installed: not running as root",
  });
});

Deno.test("findOnPath finds executables only, in PATH order, and skips empty entries", async () => {
  const first = await Deno.makeTempDir({ prefix: "gatecast-path-" });
  const second = await Deno.makeTempDir({ prefix: "gatecast-path-" });
  try {
    await Deno.writeTextFile(`${first}/tool`, "#!/bin/sh\n", { mode: 0o644 }); // not executable
    await Deno.writeTextFile(`${second}/tool`, "#!/bin/sh\n", { mode: 0o755 });
    await Deno.mkdir(`${first}/dir-tool`);
    assert.equal(findOnPath("tool", `::${first}:${second}`), `${second}/tool`);
    assert.equal(findOnPath("dir-tool", first), undefined);
    assert.equal(findOnPath("tool", ""), undefined);

    const both = programsOnPath(["tool", "other"], { missing: "m", ways: "w", packages: ["p"] });
    const saved = Deno.env.get("PATH");
    try {
      Deno.env.set("PATH", `${first}:${second}`);
      assert.deepEqual(await both.probe(), { state: "missing" });
      await Deno.writeTextFile(`${first}/other`, "#!/bin/sh\n", { mode: 0o755 });
      assert.deepEqual(await both.probe(), {
        state: "found",
        value: { tool: `${second}/tool`, other: `${first}/other` },
      });
    } finally {
      if (saved === undefined) Deno.env.delete("PATH");
      else Deno.env.set("PATH", saved);
    }
  } finally {
    await Deno.remove(first, { recursive: true });
    await Deno.remove(second, { recursive: true });
  }
});
