/**
 * Command-line flags: parsing, the help text, and laying them over a configuration. Flags
 * override the configuration file, at start and on every reload alike; a bad flag is a
 * {@link ConfigError} naming the flag, printed as one line before exiting with 2.
 */

import { parseArgs } from "node:util";
import { type Config, ConfigError, type LogLevel, parseLogLevel, parsePort } from "./config.ts";

/** gatecast's version, printed by `--version`. */
export const VERSION = "0.1.0";

/** What the flags asked for. */
export interface Flags {
  /** `--config FILE`. */
  readonly config?: string;
  /** `--port N`. */
  readonly port?: number;
  /** `--host ADDR`. */
  readonly host?: string;
  /** `--log-level LEVEL`. */
  readonly logLevel?: LogLevel;
  /** `--cert FILE`: TLS certificate chain (PEM); needs `--key`. */
  readonly cert?: string;
  /** `--key FILE`: TLS private key (PEM); needs `--cert`. */
  readonly key?: string;
  /** `--demo`: serve the embedded demo plant. */
  readonly demo: boolean;
  /** `--help`. */
  readonly help: boolean;
  /** `--version`. */
  readonly version: boolean;
}

/** The text printed by `--help`. */
export const HELP = `gatecast ${VERSION}: a WebSocket push server for MySQL device readings

Usage:
  gatecast --config gatecast.json [--port 4053] [--host 0.0.0.0] [--log-level info]
           [--cert cert.pem --key key.pem]
  gatecast --demo [--port 4053]
  gatecast --help | --version

Flags:
  --config FILE      configuration file (JSON); see config.example.json
  --port N           port to listen on (overrides "port"; 0 picks a free port)
  --host ADDR        address to listen on (overrides "host")
  --log-level LEVEL  debug, info, warn or error (overrides "logLevel")
  --cert FILE        TLS certificate chain, PEM: serve https:// and wss:// (overrides "tls")
  --key FILE         TLS private key, PEM (with --cert)
  --demo             serve an embedded demo plant (SQLite in memory, values change every second)
  --help             print this text
  --version          print the version

Protocol: docs/protocol.md. Security (auth, limits, TLS): docs/security.md. Exit status 2 means a bad flag or configuration value.
`;

/**
 * Parses the command line.
 *
 * @example
 * ```ts
 * parseFlags(["--config", "gatecast.json", "--port", "4053"]);
 * ```
 * @throws {ConfigError} naming the flag at fault.
 */
export function parseFlags(args: string[]): Flags {
  // `deno task start -- --config x` passes the "--" on; it only separates the task's own flags.
  if (args[0] === "--") args = args.slice(1);
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: "string" },
        port: { type: "string" },
        host: { type: "string" },
        "log-level": { type: "string" },
        cert: { type: "string" },
        key: { type: "string" },
        demo: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
        version: { type: "boolean", default: false },
      },
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // node:util names the flag in quotes ('--bogus', '--port <value>'); keep its first sentence.
    const flag = message.startsWith("Unexpected argument")
      ? "(arguments)"
      : /'(-[^' ]+)/.exec(message)?.[1] ?? "(flags)";
    throw new ConfigError(flag, message.split(". ")[0].replace(/\.$/, "") + "; see --help");
  }
  const v = parsed.values;
  const flags: Flags = {
    config: v.config,
    port: v.port === undefined ? undefined : parsePort("--port", v.port),
    host: v.host,
    logLevel: v["log-level"] === undefined ? undefined : parseLogLevel("--log-level", v["log-level"]),
    cert: v.cert,
    key: v.key,
    demo: v.demo ?? false,
    help: v.help ?? false,
    version: v.version ?? false,
  };
  if (!flags.help && !flags.version && !flags.config && !flags.demo) {
    throw new ConfigError("--config", "is required (or --demo); see --help");
  }
  if (flags.config && flags.demo) {
    throw new ConfigError("--demo", "cannot be combined with --config");
  }
  if ((flags.cert === undefined) !== (flags.key === undefined)) {
    const [missing, given] = flags.cert === undefined ? ["--cert", "--key"] : ["--key", "--cert"];
    throw new ConfigError(missing, `is required with ${given}`);
  }
  if (flags.host === "") throw new ConfigError("--host", "expected an address, got an empty string");
  return flags;
}

/**
 * The configuration the server runs with: `config` (as read from the file) with the flags laid
 * over it. Start and reload (SIGHUP) both use this one function, so that a reload compares a
 * file's values with the same flags applied and never reports a flag as a changed setting.
 * Pure.
 *
 * @example
 * ```ts
 * const flags = parseFlags(["--config", "gatecast.json", "--cert", "c.pem", "--key", "k.pem"]);
 * applyFlags(config, flags).tls; // { certFile: "c.pem", keyFile: "k.pem" }
 * ```
 */
export function applyFlags(config: Config, flags: Flags): Config {
  return {
    ...config,
    host: flags.host ?? config.host,
    port: flags.port ?? config.port,
    logLevel: flags.logLevel ?? config.logLevel,
    // parseFlags accepts --cert only with --key, and the other way round.
    tls: flags.cert !== undefined && flags.key !== undefined
      ? { certFile: flags.cert, keyFile: flags.key }
      : config.tls,
  };
}
