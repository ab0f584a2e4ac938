/**
 * Logging: one JSON object per line on stderr (`time`, `level`, `msg`, then fields).
 * Callers never pass secrets; {@link Logger} has no way to print a config object whole.
 */

import { LOG_LEVELS, type LogLevel } from "../config/config.ts";

/** Structured fields of a log line. */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

/** Where lines go; stderr by default, an array in tests. */
export type LogSink = (line: string) => void;

const encoder = new TextEncoder();

/** Writes JSON log lines at or above a level. */
export class Logger {
  /**
   * @param level the least severe level written
   * @param sink where each line goes (default: stderr)
   */
  constructor(
    public level: LogLevel = "info",
    private readonly sink: LogSink = (line) => Deno.stderr.writeSync(encoder.encode(line + "\n")),
  ) {}

  /** Logs at debug level. */
  debug(msg: string, fields?: LogFields): void {
    this.write("debug", msg, fields);
  }
  /** Logs at info level. */
  info(msg: string, fields?: LogFields): void {
    this.write("info", msg, fields);
  }
  /** Logs at warn level. */
  warn(msg: string, fields?: LogFields): void {
    this.write("warn", msg, fields);
  }
  /** Logs at error level. */
  error(msg: string, fields?: LogFields): void {
    this.write("error", msg, fields);
  }

  private write(level: LogLevel, msg: string, fields?: LogFields): void {
    if (LOG_LEVELS.indexOf(level) < LOG_LEVELS.indexOf(this.level)) return;
    this.sink(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }));
  }
}
