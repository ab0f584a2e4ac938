/**
 * What the benchmark reads of another process from `/proc`: CPU time (user + system, from
 * `/proc/<pid>/stat`) and resident memory (`VmRSS` from `/proc/<pid>/status`). Linux only.
 */

/** Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux). */
const CLOCK_TICKS_PER_SECOND = 100;

/** CPU time a process has used so far, in microseconds (user + system). */
export function cpuMicros(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]); // field 14
  const stime = Number(fields[12]); // field 15
  return (utime + stime) * (1_000_000 / CLOCK_TICKS_PER_SECOND);
}

/**
 * CPU time of a process's live threads so far, in microseconds, at the kernel's nanosecond
 * resolution (the first field of each `/proc/<pid>/task/<tid>/schedstat`), where
 * {@link cpuMicros} counts 10 ms ticks. A thread that has exited is no longer counted: use it for
 * windows over which the process's threads live on, as a Deno server's do.
 */
export function threadCpuMicros(pid: number): number {
  let nanos = 0;
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      nanos += Number(Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/schedstat`).split(" ")[0]);
    } catch {
      // the thread exited meanwhile
    }
  }
  return nanos / 1000;
}

/** Resident set size of a process, in bytes. */
export function rssBytes(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = status.match(/^VmRSS:\s+(\d+) kB$/m);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/**
 * Resident memory over a window, sampled every second: the median, and the range. The runtime's
 * heap grows and shrinks by tens of MiB around each major garbage collection even while idle, so
 * one sample lands anywhere in that cycle; the median does not.
 */
export async function rssOverWindow(
  pid: number,
  windowMs: number,
): Promise<{ median: number; min: number; max: number; samples: number }> {
  const samples = [rssBytes(pid)];
  for (let waited = 0; waited < windowMs; waited += 1000) {
    await new Promise((r) => setTimeout(r, 1000));
    samples.push(rssBytes(pid));
  }
  const sorted = samples.toSorted((a, b) => a - b);
  return {
    median: sorted[Math.floor(sorted.length / 2)],
    min: sorted[0],
    max: sorted.at(-1)!,
    samples: samples.length,
  };
}

/** Busy and total CPU time of the whole machine so far, in clock ticks (from `/proc/stat`). */
export function machineCpuTicks(): { busy: number; total: number } {
  const line = Deno.readTextFileSync("/proc/stat").split("\n")[0]; // "cpu  user nice system idle iowait ..."
  const fields = line.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((sum, n) => sum + n, 0);
  return { busy: total - fields[3] - fields[4], total };
}
