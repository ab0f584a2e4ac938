/**
 * `deno task test` (tests/support/test_task.ts) as a real process: on a machine where no server
 * can be found and nothing can be installed it stops at once with one line; without a given
 * server it starts one throw-away mariadbd that every test file of the run shares.
 */

import assert from "node:assert/strict";
import { freePort } from "./support/servers.ts";

const PROJECT = new URL("..", import.meta.url).pathname;

/** Runs `runTestTask(args, options)` in a `deno eval` child with exactly `env`. */
async function runTask(
  args: string[],
  options: { localPort: number },
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const code = `
    import { runTestTask } from "./tests/support/test_task.ts";
    const local = { host: "127.0.0.1", port: ${options.localPort}, user: "root", password: "" };
    Deno.exit(await runTestTask(${JSON.stringify(args)}, { local, requireBrowser: false }));
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    cwd: PROJECT,
    clearEnv: true,
    env: { HOME: Deno.env.get("HOME") ?? "/root", NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

/** DENO_DIR when set, so that the child uses the same module cache. */
function denoEnv(): Record<string, string> {
  const dir = Deno.env.get("DENO_DIR");
  return dir === undefined ? {} : { DENO_DIR: dir };
}

Deno.test("with no MYSQL_URL, no local server, no mariadbd and no apt-get the task stops with one line naming the three ways", async () => {
  const emptyBin = await Deno.makeTempDir({ prefix: "gatecast-bin-" });
  try {
    const closed = freePort();
    const result = await runTask(["tests/topic_test.ts"], { localPort: closed }, {
      ...denoEnv(),
      PATH: emptyBin,
    });
    const why = Deno.uid() === 0 ? "apt-get is not on PATH" : "not running as root";
    assert.deepEqual(result, {
      code: 1,
      stdout: "",
      stderr: "deno task test: no MariaDB or MySQL server for the tests: " +
        `set MYSQL_URL=mysql://user:password@host:port, run one on 127.0.0.1:${closed} (root, no password), ` +
        "or put mariadbd on PATH (apt-get install mariadb-server; Debian puts it in /usr/sbin); " +
        `not installed: ${why}\n`,
    });
  } finally {
    await Deno.remove(emptyBin, { recursive: true });
  }
});

Deno.test("a MYSQL_URL that does not answer stops the task with one line, even where it could install", async () => {
  const closed = freePort();
  const result = await runTask(["tests/topic_test.ts"], { localPort: freePort() }, {
    ...denoEnv(),
    PATH: Deno.env.get("PATH") ?? "",
    MYSQL_URL: `mysql://root:hunter2@127.0.0.1:${closed}`,
  });
  assert.deepEqual(result, {
    code: 1,
    stdout: "",
    stderr: `deno task test: MYSQL_URL (mysql://root@127.0.0.1:${closed}) does not answer: ` +
      `connect ECONNREFUSED 127.0.0.1:${closed}; fix it or unset it to use the local server\n`,
  });
});

/** A test file that prints the port of MYSQL_URL and whether a MariaDB greets there. */
const GREETING_TEST = `
Deno.test("the run's server greets", async () => {
  const url = new URL(Deno.env.get("MYSQL_URL") ?? "mysql://unset:1");
  const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
  const buffer = new Uint8Array(256);
  const n = await conn.read(buffer);
  conn.close();
  const greeting = new TextDecoder().decode(buffer.subarray(0, n ?? 0));
  console.log("SERVER " + url.port + " " + (greeting.includes("MariaDB") ? "mariadb" : "silent"));
});
`;

Deno.test("without a given server the task starts one throw-away mariadbd for every test file and stops it after", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gatecast-task-" });
  try {
    await Deno.writeTextFile(`${dir}/a_test.ts`, GREETING_TEST);
    await Deno.writeTextFile(`${dir}/b_test.ts`, GREETING_TEST);
    const closed = freePort();
    const result = await runTask(["--allow-all", `${dir}/a_test.ts`, `${dir}/b_test.ts`], {
      localPort: closed,
    }, {
      ...denoEnv(),
      PATH: Deno.env.get("PATH") ?? "",
    });
    assert.equal(result.code, 0, result.stderr + result.stdout);
    const announced = result.stderr.split("\n").filter((l) => l.startsWith("deno task test:"));
    assert.deepEqual(announced, [
      `deno task test: no MYSQL_URL and no server on 127.0.0.1:${closed}: one throw-away mariadbd for this run`,
    ]);
    const servers = result.stdout.split("\n").filter((l) => l.startsWith("SERVER "));
    assert.equal(servers.length, 2, result.stdout);
    assert.equal(servers[0], servers[1], "both files used the same server");
    const [, port, greeting] = servers[0].split(" ");
    assert.equal(greeting, "mariadb");
    assert.notEqual(Number(port), closed);
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port: Number(port) }),
      Deno.errors.ConnectionRefused,
      "the throw-away server is stopped when the run ends",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
