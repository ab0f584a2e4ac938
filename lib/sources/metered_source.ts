/**
 * A {@link Source} that counts and times every query it passes on: the per-database query
 * count, duration histogram and errors of `/metrics`. The poller and handles never see the
 * difference; `app.ts` wraps each opened source in one.
 */

import type { Metrics } from "../ops/metrics.ts";
import { type Row, type SelectOptions, type Source, SourceError, type SqlParam } from "./source.ts";

/** Wraps a source so that each `select` is counted, timed, and its failures counted by kind. */
export class MeteredSource implements Source {
  /** The database code of the wrapped source. */
  readonly code: string;
  private readonly labels: { db: string };

  /**
   * @param inner the source that runs the queries
   * @param metrics where the counts and durations go
   */
  constructor(private readonly inner: Source, private readonly metrics: Metrics) {
    this.code = inner.code;
    this.labels = { db: inner.code };
    // Every database's series exist from the start, at 0.
    metrics.inc("gatecast_db_queries_total", this.labels, 0);
    for (const failure of ["unavailable", "timeout", "query"]) {
      metrics.inc("gatecast_db_query_errors_total", { db: inner.code, failure }, 0);
    }
    metrics.inc("gatecast_poll_errors_total", this.labels, 0);
  }

  /** Runs the query on the wrapped source, counting it, its duration and any failure. */
  async select(sql: string, params: readonly SqlParam[], options?: SelectOptions): Promise<Row[]> {
    const started = performance.now();
    try {
      return await this.inner.select(sql, params, options);
    } catch (error) {
      const failure = error instanceof SourceError ? error.failure : "query";
      this.metrics.inc("gatecast_db_query_errors_total", { db: this.code, failure });
      throw error;
    } finally {
      this.metrics.inc("gatecast_db_queries_total", this.labels);
      this.metrics.observe(
        "gatecast_db_query_duration_seconds",
        this.labels,
        (performance.now() - started) / 1000,
      );
    }
  }

  /** Closes the wrapped source. */
  close(): Promise<void> {
    return this.inner.close();
  }
}
