/**
 * Command-line flags: what each flag yields, one message naming the flag for each mistake, and
 * how flags are laid over a configuration (at start and on reload alike).
 */

import assert from "node:assert/strict";
import { applyFlags, type Flags, HELP, parseFlags, VERSION } from "../../lib/config/cli.ts";
import { ConfigError, parseConfig } from "../../lib/config/config.ts";
import { restartNeeded } from "../../lib/ops/reload.ts";

function flagError(path: string, message: string) {
  return (error: unknown) => {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    assert.equal(error.path, path);
    assert.equal(error.message, message);
    return true;
  };
}

Deno.test("--config with --port, --host and --log-level yields each value parsed", () => {
  const flags: Flags = parseFlags([
    "--config",
    "gatecast.json",
    "--port",
    "4053",
    "--host",
    "127.0.0.1",
    "--log-level",
    "debug",
  ]);
  assert.deepEqual(flags, {
    config: "gatecast.json",
    port: 4053,
    host: "127.0.0.1",
    logLevel: "debug",
    cert: undefined,
    key: undefined,
    demo: false,
    help: false,
    version: false,
  });
});

Deno.test("flags not given are undefined, so the config file's values stand", () => {
  assert.deepEqual(parseFlags(["--config=gatecast.json"]), {
    config: "gatecast.json",
    port: undefined,
    host: undefined,
    logLevel: undefined,
    cert: undefined,
    key: undefined,
    demo: false,
    help: false,
    version: false,
  });
});

Deno.test("--port 0 asks for a free port", () => {
  assert.equal(parseFlags(["--demo", "--port", "0"]).port, 0);
});

Deno.test("--help and --version need no --config", () => {
  assert.equal(parseFlags(["--help"]).help, true);
  assert.equal(parseFlags(["--version"]).version, true);
});

Deno.test("--demo runs without a config file", () => {
  const flags = parseFlags(["--demo"]);
  assert.equal(flags.demo, true);
  assert.equal(flags.config, undefined);
});

Deno.test("an unknown flag is rejected naming it and pointing to --help", () => {
  assert.throws(
    () => parseFlags(["--bogus"]),
    flagError("--bogus", "--bogus: Unknown option '--bogus'; see --help"),
  );
  assert.throws(() => parseFlags(["-x"]), flagError("-x", "-x: Unknown option '-x'; see --help"));
});

Deno.test("an unknown flag is rejected even next to --help", () => {
  assert.throws(
    () => parseFlags(["--help", "--bogus"]),
    flagError("--bogus", "--bogus: Unknown option '--bogus'; see --help"),
  );
});

Deno.test("a flag missing its value is rejected naming the flag", () => {
  assert.throws(
    () => parseFlags(["--port"]),
    flagError("--port", "--port: Option '--port <value>' argument missing; see --help"),
  );
});

Deno.test("a positional argument is rejected naming the stray argument", () => {
  assert.throws(
    () => parseFlags(["gatecast.json"]),
    flagError("(arguments)", "(arguments): Unexpected argument 'gatecast.json'; see --help"),
  );
});

Deno.test("a leading '--', as deno task passes it on, is ignored", () => {
  assert.deepEqual(parseFlags(["--", "--config", "gatecast.json"]).config, "gatecast.json");
  assert.equal(parseFlags(["--", "--demo"]).demo, true);
});

Deno.test("a bad --port is rejected naming --port and the accepted range", () => {
  assert.throws(
    () => parseFlags(["--config", "x", "--port", "abc"]),
    flagError("--port", '--port: expected an integer 0-65535, got "abc"'),
  );
  assert.throws(
    () => parseFlags(["--config", "x", "--port", "70000"]),
    flagError("--port", "--port: expected an integer 0-65535, got 70000"),
  );
});

Deno.test("a bad --log-level is rejected naming the accepted levels", () => {
  assert.throws(
    () => parseFlags(["--config", "x", "--log-level", "loud"]),
    flagError("--log-level", '--log-level: expected one of debug, info, warn, error, got "loud"'),
  );
});

Deno.test("no --config and no --demo is rejected naming --config", () => {
  assert.throws(() => parseFlags([]), flagError("--config", "--config: is required (or --demo); see --help"));
});

Deno.test("--demo with --config is rejected", () => {
  assert.throws(
    () => parseFlags(["--demo", "--config", "x"]),
    flagError("--demo", "--demo: cannot be combined with --config"),
  );
});

Deno.test("an empty --host is rejected", () => {
  assert.throws(
    () => parseFlags(["--demo", "--host", ""]),
    flagError("--host", "--host: expected an address, got an empty string"),
  );
});

Deno.test("a boolean flag given a value is rejected naming it", () => {
  assert.throws(
    () => parseFlags(["--demo=1"]),
    flagError("--demo", "--demo: Option '--demo' does not take an argument; see --help"),
  );
});

Deno.test("the help text names every flag and the version", () => {
  for (
    const flag of [
      "--config",
      "--port",
      "--host",
      "--log-level",
      "--cert",
      "--key",
      "--demo",
      "--help",
      "--version",
    ]
  ) {
    assert.ok(HELP.includes(flag), `${flag} missing from --help`);
  }
  assert.ok(HELP.startsWith(`gatecast ${VERSION}:`));
  assert.match(VERSION, /^\d+\.\d+\.\d+$/);
});

/** A configuration file's contents, validated. */
function fileConfig(settings: Record<string, unknown> = {}) {
  return parseConfig({ auth: { mode: "none" }, databases: {}, ...settings }, () => undefined);
}

Deno.test("flags override the file's host, port, logLevel and tls; every other setting stands", () => {
  const file = fileConfig({
    host: "0.0.0.0",
    port: 4053,
    logLevel: "warn",
    pollIntervalMs: 700,
    tls: { certFile: "file.pem", keyFile: "file.key" },
  });
  const flags = parseFlags([
    "--config",
    "g.json",
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--log-level",
    "debug",
    "--cert",
    "c.pem",
    "--key",
    "k.pem",
  ]);
  assert.deepEqual(applyFlags(file, flags), {
    ...file,
    host: "127.0.0.1",
    port: 0,
    logLevel: "debug",
    tls: { certFile: "c.pem", keyFile: "k.pem" },
  });
  assert.deepEqual(applyFlags(file, parseFlags(["--config", "g.json"])), file);
});

Deno.test("--cert and --key serve TLS over a file that has no tls", () => {
  const flags = parseFlags(["--config", "g.json", "--cert", "c.pem", "--key", "k.pem"]);
  assert.deepEqual(fileConfig().tls, undefined);
  assert.deepEqual(applyFlags(fileConfig(), flags).tls, { certFile: "c.pem", keyFile: "k.pem" });
});

Deno.test("a reload of an unchanged file under --cert/--key/--port needs no restart; a changed start-only setting does", () => {
  const flags = parseFlags(["--config", "g.json", "--port", "4100", "--cert", "c.pem", "--key", "k.pem"]);
  const running = applyFlags(fileConfig({ port: 4053 }), flags);
  assert.deepEqual(restartNeeded(running, applyFlags(fileConfig({ port: 4053 }), flags)), []);
  // The file's port is overridden by --port, so changing it changes nothing; trustedProxies is not.
  assert.deepEqual(
    restartNeeded(running, applyFlags(fileConfig({ port: 4054, trustedProxies: ["10.0.0.1"] }), flags)),
    ["trustedProxies"],
  );
});
