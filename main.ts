/**
 * gatecast's entry point: flags, configuration, signals. Everything else is in `lib/`;
 * `lib/app.ts` wires it.
 */

import { type App, startApp } from "./lib/app.ts";
import { applyFlags, type Flags, HELP, parseFlags, VERSION } from "./lib/config/cli.ts";
import { type Config, ConfigError, parseConfig } from "./lib/config/config.ts";
import { DEMO_HANDLES, startDemoPlant } from "./lib/sources/demo_plant.ts";
import { Logger } from "./lib/ops/log.ts";

function fail(message: string): never {
  console.error(`gatecast: ${message}`);
  Deno.exit(2);
}

async function readConfigFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError("--config", `cannot read ${path}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    // V8 quotes short inputs whole (newlines, passwords and all): keep only what and where.
    const problem = /Unexpected token '.'|Unexpected end of JSON input|[^"\n]* at position \d+[^"\n]*/
      .exec((error as Error).message)?.[0];
    throw new ConfigError(path, problem ? `is not valid JSON: ${problem}` : "is not valid JSON");
  }
}

async function main(): Promise<void> {
  let flags;
  let config: Config;
  try {
    flags = parseFlags(Deno.args);
    if (flags.help) {
      console.log(HELP);
      return;
    }
    if (flags.version) {
      console.log(`gatecast ${VERSION}`);
      return;
    }
    // The demo serves made-up data on loopback, so it runs without authentication. Its handles
    // are written as an operator writes them (lib/sources/demo_handles.json).
    const raw = flags.demo
      ? {
        host: "127.0.0.1",
        databases: { demo: { driver: "sqlite", path: ":memory:" } },
        handles: DEMO_HANDLES,
        auth: { mode: "none" },
      }
      : await readConfigFile(flags.config!);
    config = applyFlags(parseConfig(raw, (name) => Deno.env.get(name)), flags);
  } catch (error) {
    if (error instanceof ConfigError) fail(error.message);
    throw error;
  }
  const logger = new Logger(config.logLevel);
  const demo = flags.demo ? startDemoPlant() : undefined;

  // Signals are taken from before the start: the "listening" line may reach a supervisor (or a
  // test) before startApp returns, and a SIGHUP without a listener would end the process.
  let app: App | undefined;
  let reloadAsked = false;
  let signals = 0;
  const shutdown = async () => {
    if (++signals > 1) Deno.exit(1);
    logger.info("shutting down");
    demo?.stop();
    if (!app) Deno.exit(0);
    const forced = setTimeout(() => Deno.exit(1), 10_000);
    await app.stop();
    clearTimeout(forced);
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", shutdown);
  Deno.addSignalListener("SIGTERM", shutdown);
  if (!demo) {
    Deno.addSignalListener("SIGHUP", () => app ? reload(app, flags, logger) : reloadAsked = true);
  }

  try {
    app = await startApp(config, { logger, sources: demo?.sources });
  } catch (error) {
    fail(`cannot start on ${config.host}:${config.port}: ${(error as Error).message}`);
  }
  if (reloadAsked) await reload(app, flags, logger);
  if (demo) {
    const secure = app.tls ? "s" : "";
    const url = `ws${secure}://${app.hostname}:${app.port}/ws`;
    const dashboard = `http${secure}://${app.hostname}:${app.port}/?topic=demo/real/1`;
    console.log(`gatecast demo running: ${dashboard}  (WebSocket ${url})`);
    console.log(`try: ${demo.exampleCommand(url)}`);
  }
}

/**
 * SIGHUP: reads the config file again and lays the flags over it as at start; a bad file is
 * logged and the running config kept.
 */
async function reload(app: App, flags: Flags, logger: Logger): Promise<void> {
  try {
    const next = parseConfig(await readConfigFile(flags.config!), (name) => Deno.env.get(name));
    await app.reload(applyFlags(next, flags));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    logger.error("configuration not reloaded; keeping the running one", { error: error.message });
  }
}

if (import.meta.main) await main();
