/**
 * The artifact: `deno bundle` makes one JS file that runs with `deno run` and the documented
 * least permissions (network, reading the config's directory, GATECAST_* variables), serves
 * the embedded dashboard and SDK, and reads a real MariaDB through the bundled mysql2.
 */

import assert from "node:assert/strict";
import { GatecastClient, type TopicState } from "../client/gatecast_client.js";
import { createTestDatabase } from "./support/mysql.ts";
import { waitFor } from "./support/app.ts";
import { type GatecastProcess, startGatecastProcess } from "./support/process.ts";

const ROOT = new URL("../", import.meta.url);

Deno.test("the bundle runs with the documented permissions: /healthz 200, dashboard served, a snapshot from MariaDB", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gatecast-bundle-" });
  const db = await createTestDatabase();
  const client: { current?: GatecastClient } = {};
  let proc: GatecastProcess | undefined;
  try {
    const bundle = `${dir}/gatecast.js`;
    const built = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--platform", "deno", "--output", bundle, "main.ts"],
      cwd: ROOT.pathname,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(built.success, new TextDecoder().decode(built.stderr));
    const text = await Deno.readTextFile(bundle);
    assert.ok(!/^import .* from "npm:/m.test(text), "npm packages are inside the bundle");

    await db.addPoints([{ unit: 3, code: "ua", address: "P1" }]);
    await db.setData("P1", { ua: 42.5 });
    const { host, port, user, database } = db.settings;
    await Deno.writeTextFile(
      `${dir}/gatecast.json`,
      JSON.stringify({
        $schema: "./config.schema.json",
        host: "127.0.0.1",
        auth: { mode: "none" },
        databases: { plant1: { host, port, user, passwordEnv: "GATECAST_PLANT1_PASSWORD", database } },
      }),
    );
    proc = await startGatecastProcess(
      bundle,
      [
        "--allow-net",
        `--allow-read=${dir}`,
        "--allow-env=GATECAST_*,REDIS_DEBUG_MAINTENANCE,REDIS_EMIT_DIAGNOSTICS",
      ],
      ["--config", `${dir}/gatecast.json`, "--port", "0"],
      { GATECAST_PLANT1_PASSWORD: db.settings.password },
    );
    await waitFor("healthy", async () => (await fetch(`${proc?.httpUrl}/healthz`)).status === 200);
    const page = await fetch(`${proc.httpUrl}/`);
    assert.deepEqual(page.headers.get("content-type"), "text/html; charset=utf-8");
    assert.deepEqual(await page.text(), await Deno.readTextFile(new URL("client/dashboard.html", ROOT)));
    const sdk = await (await fetch(`${proc.httpUrl}/gatecast_client.js`)).text();
    assert.deepEqual(sdk, await Deno.readTextFile(new URL("client/gatecast_client.js", ROOT)));

    const states: TopicState[] = [];
    client.current = new GatecastClient(`ws://127.0.0.1:${proc.port}/ws`, { pingIntervalMs: 0 });
    client.current.subscribe("plant1/real/3", (state) => states.push(state));
    await waitFor("the snapshot", () => states.length > 0);
    assert.deepEqual(states[0].points.map((p) => [p.address, p.code, p.value]), [["P1", "ua", 42.5]]);
  } finally {
    client.current?.close();
    const code = proc ? await proc.stop() : -1;
    await db.drop();
    await Deno.remove(dir, { recursive: true });
    if (proc) assert.deepEqual(code, 0, proc.stderr.join("\n"));
  }
});
