/**
 * Where the tests' MariaDB server comes from (tests/support/servers.ts): every combination of
 * MYSQL_URL, a local server, mariadbd on PATH, root and apt-get; a throw-away mariadbd that dies
 * during start-up is reported at once with its log.
 */

import assert from "node:assert/strict";
import { decide, type Machine } from "./support/requirements.ts";
import {
  freePort,
  locateServer,
  mysqlUrl,
  parseMysqlUrl,
  type ServerFacts,
  serverRequirement,
  startThrowawayMariadb,
} from "./support/servers.ts";

const REMOTE = { host: "db.example", port: 3307, user: "gc", password: "s3cret" };
const URLS: Record<string, ServerFacts["url"]> = {
  unset: undefined,
  answering: { info: REMOTE },
  refusing: { info: REMOTE, error: "connect ECONNREFUSED 10.0.0.1:3307" },
  malformed: { line: "MYSQL_URL is not a URL: expected mysql://user:password@host:port" },
};
const THREE_WAYS =
  "no MariaDB or MySQL server for the tests: set MYSQL_URL=mysql://user:password@host:port, " +
  "run one on 127.0.0.1:3306 (root, no password), or put mariadbd on PATH " +
  "(apt-get install mariadb-server; Debian puts it in /usr/sbin)";

Deno.test("the server is MYSQL_URL, else the local one, else a throw-away one, else installed or one line", () => {
  const requirement = serverRequirement();
  let cases = 0;
  for (const [urlName, url] of Object.entries(URLS)) {
    for (const localAnswers of [false, true]) {
      for (const programs of [false, true]) {
        for (
          const machine of [true, false].flatMap((root) => [true, false].map((aptGet) => ({ root, aptGet })))
        ) {
          for (const afterInstall of [false, true]) {
            cases++;
            const at = JSON.stringify({ urlName, localAnswers, programs, machine, afterInstall });
            const decision = decide(
              requirement,
              locateServer({ url, localAnswers, programs }),
              machine as Machine,
              afterInstall,
            );
            if (urlName === "answering") {
              assert.deepEqual(decision, { action: "use", value: { kind: "url", info: REMOTE } }, at);
            } else if (urlName === "refusing") {
              assert.deepEqual(decision, {
                action: "fail",
                line:
                  "MYSQL_URL (mysql://gc@db.example:3307) does not answer: connect ECONNREFUSED 10.0.0.1:3307; " +
                  "fix it or unset it to use the local server",
              }, at);
            } else if (urlName === "malformed") {
              assert.deepEqual(decision, { action: "fail", line: (url as { line: string }).line }, at);
            } else if (localAnswers) {
              assert.deepEqual(decision, {
                action: "use",
                value: { kind: "local", info: { host: "127.0.0.1", port: 3306, user: "root", password: "" } },
              }, at);
            } else if (programs) {
              assert.deepEqual(decision, { action: "use", value: { kind: "throwaway" } }, at);
            } else if (machine.root && machine.aptGet && !afterInstall) {
              assert.deepEqual(decision, {
                action: "install",
                packages: ["mariadb-server", "mariadb-client"],
              }, at);
            } else {
              const why = afterInstall
                ? "still missing after apt-get install mariadb-server mariadb-client"
                : !machine.root
                ? "not installed: not running as root"
                : "not installed: apt-get is not on PATH";
              assert.deepEqual(decision, { action: "fail", line: `${THREE_WAYS}; ${why}` }, at);
            }
          }
        }
      }
    }
  }
  assert.equal(cases, 4 * 2 * 2 * 4 * 2);
});

Deno.test("the failure line names the local address looked at", () => {
  const requirement = serverRequirement({ host: "127.0.0.1", port: 3399, user: "root", password: "" });
  const decision = decide(requirement, { state: "missing" }, { root: false, aptGet: false }, false);
  assert.ok(
    decision.action === "fail" && decision.line.includes("run one on 127.0.0.1:3399 (root, no password)"),
  );
});

Deno.test("MYSQL_URL is read as mysql://user:password@host:port and written back the same", () => {
  assert.deepEqual(parseMysqlUrl("mysql://gc:p%40ss@db.example:3307"), {
    ...REMOTE,
    user: "gc",
    password: "p@ss",
  });
  assert.deepEqual(parseMysqlUrl("mysql://root@127.0.0.1"), {
    host: "127.0.0.1",
    port: 3306,
    user: "root",
    password: "",
  });
  assert.equal(mysqlUrl({ ...REMOTE, password: "p@ss" }), "mysql://gc:p%40ss@db.example:3307");
  assert.throws(() => parseMysqlUrl("127.0.0.1:3306"), {
    name: "SyntaxError",
    message: "MYSQL_URL is not a URL: expected mysql://user:password@host:port",
  });
  assert.throws(() => parseMysqlUrl("postgres://root:secret@db:5432"), {
    name: "SyntaxError",
    message: "MYSQL_URL: expected mysql://user:password@host:port, got a postgres: URL",
  });
});

Deno.test("a MYSQL_URL that does not answer is a broken requirement naming it, without its password", async () => {
  const saved = Deno.env.get("MYSQL_URL");
  const port = freePort(); // nothing listens there
  try {
    Deno.env.set("MYSQL_URL", `mysql://root:hunter2@127.0.0.1:${port}`);
    assert.deepEqual(await serverRequirement().probe(), {
      state: "broken",
      line:
        `MYSQL_URL (mysql://root@127.0.0.1:${port}) does not answer: connect ECONNREFUSED 127.0.0.1:${port}; ` +
        "fix it or unset it to use the local server",
    });
  } finally {
    if (saved === undefined) Deno.env.delete("MYSQL_URL");
    else Deno.env.set("MYSQL_URL", saved);
  }
});

Deno.test("a throw-away mariadbd whose port is taken is reported at once with the end of its log", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  // Our listener accepts and stays silent, so the wait for an answer cannot succeed; only the
  // server's exit ends it before the 30-second deadline.
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of taken) accepted.push(conn);
  })();
  try {
    const error = await startThrowawayMariadb(32, port).then(() => undefined, (e: Error) => e);
    assert.ok(error, "mariadbd started on a taken port");
    const [first, ...tail] = error.message.split("\n");
    assert.match(
      first,
      new RegExp(`^mariadbd on port ${port} exited during start-up; the end of /.+/mariadbd\\.log:$`),
    );
    assert.ok(tail.some((line) => line.includes("Address already in use")), error.message);
    const dir = first.match(/the end of (.+)\/mariadbd\.log:$/)![1];
    await Deno.remove(dir, { recursive: true });
  } finally {
    taken.close();
    await accepting.catch(() => {});
    for (const conn of accepted) conn.close();
  }
});
