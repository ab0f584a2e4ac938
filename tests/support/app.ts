/**
 * Starts gatecast in-process for a test, on 127.0.0.1 and a free port, with a logger that
 * keeps its lines for assertions.
 */

import { type App, type AppOptions, startApp } from "../../lib/app.ts";
import { type Config, type DatabaseSettings, parseConfig } from "../../lib/config/config.ts";
import { Logger } from "../../lib/ops/log.ts";
import type { Source } from "../../lib/sources/source.ts";

/** A running test server. */
export interface TestApp extends App {
  /** `ws://127.0.0.1:<port>/ws` */
  readonly wsUrl: string;
  /** `http://127.0.0.1:<port>` */
  readonly httpUrl: string;
  /** Log lines written so far, parsed. */
  readonly logs: Record<string, unknown>[];
  /** The configuration it runs with. */
  readonly config: Config;
}

/**
 * Starts a server with the given databases and top-level settings (validated like a config file).
 * Authentication is off (`"auth": {"mode": "none"}`) unless `settings.auth` says otherwise;
 * `options` are the app's other options (shorter intervals, lower thresholds).
 */
export async function startTestApp(
  databases: Record<string, DatabaseSettings | Record<string, unknown>>,
  settings: Record<string, unknown> = {},
  sources?: ReadonlyMap<string, Source>,
  options: Omit<AppOptions, "logger" | "sources"> = {},
): Promise<TestApp> {
  const config = parseConfig(
    {
      host: "127.0.0.1",
      port: 0,
      pollIntervalMs: 100,
      logLevel: "debug",
      auth: { mode: "none" },
      ...settings,
      databases,
    },
    (name) => Deno.env.get(name),
  );
  const logs: Record<string, unknown>[] = [];
  const app = await startApp(config, {
    logger: new Logger(config.logLevel, (line) => logs.push(JSON.parse(line))),
    sources,
    ...options,
  });
  return Object.assign(app, {
    wsUrl: `ws://127.0.0.1:${app.port}/ws`,
    httpUrl: `http://127.0.0.1:${app.port}`,
    logs,
    config,
  });
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns true or `timeoutMs` passes (then throws `what`). */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(20);
  }
}

/**
 * Starts a server on `databases`, runs `fn`, then stops the server and drops the test
 * database `db`, whether `fn` passed or failed.
 */
export async function withTestApp(
  db: { drop(): Promise<void> },
  databases: Record<string, DatabaseSettings | Record<string, unknown>>,
  fn: (app: TestApp) => Promise<void>,
  settings: Record<string, unknown> = {},
): Promise<void> {
  try {
    const app = await startTestApp(databases, settings);
    try {
      await fn(app);
    } finally {
      await app.stop();
    }
  } finally {
    await db.drop();
  }
}
