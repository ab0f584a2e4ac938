/**
 * Epochs: the name of one run of a topic's sequence. A topic's `seq` counts its `snapshot` and
 * `update` frames within an epoch; whenever the sequence starts again (the process restarts, the
 * topic is created anew after its last subscriber left, another cluster node takes its group
 * over) the epoch changes, so a client that sees another epoch knows its numbers no longer
 * follow. An epoch is opaque to clients: they only compare it.
 */

/** This process's part of every epoch it makes: its start time and a random suffix, base 36. */
const PROCESS = Date.now().toString(36) + "-" + crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
let last = 0;

/**
 * A new epoch, never made before by any process: `<prefix>.<process>.<n>`, where `prefix`
 * (a cluster lease's fencing counter) is left out when empty.
 *
 * @example
 * ```ts
 * newEpoch(); // "miw3kq1c-1h3k2a.1"
 * newEpoch("17"); // "17.miw3kq1c-1h3k2a.2"
 * ```
 */
export function newEpoch(prefix = ""): string {
  const own = `${PROCESS}.${++last}`;
  return prefix === "" ? own : `${prefix}.${own}`;
}
