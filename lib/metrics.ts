/**
 * Counters, gauges and histograms, rendered in the Prometheus text format for `GET /metrics`.
 * Deliberately small: no dependency, labels fixed when a series is first touched.
 */

type Labels = Readonly<Record<string, string>>;

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  readonly series: Map<string, { labels: Labels; value: number; buckets?: number[]; sum?: number }>;
}

/** Upper bounds, in seconds, of the query duration histogram. */
export const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** A set of metric families. */
export class Metrics {
  private readonly families = new Map<string, Family>();
  private readonly gauges = new Map<string, () => number>();

  /** Adds `by` (default 1) to a counter. */
  inc(name: string, help: string, labels: Labels = {}, by = 1): void {
    this.series(name, help, "counter", labels).value += by;
  }

  /** Records one observation, in seconds, in a histogram over {@link DURATION_BUCKETS}. */
  observe(name: string, help: string, labels: Labels, seconds: number): void {
    const s = this.series(name, help, "histogram", labels);
    s.buckets ??= DURATION_BUCKETS.map(() => 0);
    s.sum = (s.sum ?? 0) + seconds;
    s.value++;
    DURATION_BUCKETS.forEach((bound, i) => {
      if (seconds <= bound) s.buckets![i]++;
    });
  }

  /** Registers a gauge whose value is read when metrics are rendered. */
  gauge(name: string, help: string, read: () => number): void {
    this.series(name, help, "gauge", {});
    this.gauges.set(name, read);
  }

  /** The current value of a counter or gauge series (0 when never touched). */
  value(name: string, labels: Labels = {}): number {
    const read = this.gauges.get(name);
    if (read) return read();
    return this.families.get(name)?.series.get(labelText(labels))?.value ?? 0;
  }

  /** All families in the Prometheus text exposition format. */
  render(): string {
    const lines: string[] = [];
    for (const family of this.families.values()) {
      lines.push(`# HELP ${family.name} ${family.help}`, `# TYPE ${family.name} ${family.type}`);
      for (const [key, s] of family.series) {
        if (family.type === "gauge") {
          lines.push(`${family.name}${key} ${this.gauges.get(family.name)?.() ?? s.value}`);
        } else if (family.type === "counter") {
          lines.push(`${family.name}${key} ${s.value}`);
        } else {
          DURATION_BUCKETS.forEach((bound, i) => {
            lines.push(
              `${family.name}_bucket${labelText({ ...s.labels, le: String(bound) })} ${s.buckets![i]}`,
            );
          });
          lines.push(`${family.name}_bucket${labelText({ ...s.labels, le: "+Inf" })} ${s.value}`);
          lines.push(`${family.name}_sum${key} ${s.sum}`, `${family.name}_count${key} ${s.value}`);
        }
      }
    }
    return lines.join("\n") + "\n";
  }

  private series(name: string, help: string, type: Family["type"], labels: Labels) {
    let family = this.families.get(name);
    if (!family) {
      family = { name, help, type, series: new Map() };
      this.families.set(name, family);
    }
    const key = labelText(labels);
    let s = family.series.get(key);
    if (!s) {
      s = { labels, value: 0 };
      family.series.set(key, s);
    }
    return s;
  }
}

function labelText(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return "";
  return "{" +
    entries.map(([k, v]) => `${k}="${v.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : "\\" + c)}"`).join(
      ",",
    ) + "}";
}
