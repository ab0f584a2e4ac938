/**
 * The load generator: one process holding many WebSocket clients, driven by the benchmark over
 * stdin/stdout (one JSON command per line in, one JSON reply per line out).
 *
 * Commands: `connect` (open clients and subscribe each to its topics, one by default, waiting
 * for their snapshots),
 * `measure` (start counting), `report` (frames, bytes and, per tick, the first and last arrival
 * time over this process's clients), `close`. A tick is named by its frames' `ts`, which is the
 * same for every topic polled in one tick.
 */

/** A command from the benchmark. */
export type LoadCommand =
  | {
    cmd: "connect";
    url: string;
    count: number;
    topics: string[];
    firstIndex: number;
    /** Topics each client subscribes to, in one message: client i takes topics i*k .. i*k+k-1 (mod n); 1 by default. */
    topicsPerClient?: number;
  }
  | { cmd: "measure" }
  | { cmd: "report" }
  | { cmd: "close" };

/** First and last arrival of one tick's frames, over this process's clients. */
export interface TickArrivals {
  /** The tick's `ts`. */
  ts: number;
  /** Earliest arrival, ms since the epoch (sub-millisecond). */
  first: number;
  /** Latest arrival. */
  last: number;
  /** Frames of this tick received. */
  count: number;
}

/** The reply to `report`. */
export interface LoadReport {
  /** Frames received while measuring. */
  frames: number;
  /** Characters received while measuring. */
  chars: number;
  /** Of {@link frames}, the `snapshot` frames (a subscriber that could not be sent an update). */
  snapshots: number;
  /** Arrivals per tick while measuring. */
  ticks: TickArrivals[];
  /** Clients open now. */
  open: number;
  /** Clients closed by the server or the network since they connected. */
  dropped: number;
}

const clients: WebSocket[] = [];
let dropped = 0;
let closing = false;
let measuring = false;
let frames = 0;
let chars = 0;
let snapshots = 0;
let ticks = new Map<number, TickArrivals>();

function now(): number {
  return performance.timeOrigin + performance.now();
}

function receive(text: string): void {
  if (!measuring) return;
  const at = now();
  frames++;
  chars += text.length;
  if (text.startsWith('{"type":"snapshot"')) snapshots++;
  // Reading `ts` without parsing the whole frame keeps the load generator cheap.
  const i = text.indexOf('"ts":');
  if (i < 0) return;
  const ts = parseInt(text.slice(i + 5, i + 25), 10);
  const tick = ticks.get(ts);
  if (tick === undefined) ticks.set(ts, { ts, first: at, last: at, count: 1 });
  else {
    tick.last = at;
    tick.count++;
  }
}

function open(url: string, topics: string[], id: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, "gatecast.v1");
    let subscribed = false;
    let snapshotsOwed = topics.length;
    socket.onopen = () => {
      const subscribe = topics.length === 1 ? { topic: topics[0] } : { topics };
      socket.send(JSON.stringify({ type: "subscribe", id, ...subscribe }));
    };
    socket.onmessage = (event) => {
      const text = event.data as string;
      if (!subscribed) {
        if (!text.startsWith('{"type":"snapshot"') || --snapshotsOwed > 0) return;
        subscribed = true;
        clients.push(socket);
        resolve(true);
        return;
      }
      receive(text);
    };
    socket.onclose = () => {
      if (!subscribed) return resolve(false);
      if (!closing) dropped++;
    };
  });
}

async function connect(command: Extract<LoadCommand, { cmd: "connect" }>): Promise<unknown> {
  let failed = 0;
  let next = 0;
  const started = Date.now();
  // A bounded number of handshakes at once, so the server's accept queue never overflows.
  const worker = async () => {
    while (next < command.count) {
      const index = command.firstIndex + next++;
      const k = command.topicsPerClient ?? 1;
      const topics = Array.from(
        { length: k },
        (_, j) => command.topics[(index * k + j) % command.topics.length],
      );
      const ok = await open(command.url, topics, index);
      if (!ok) failed++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(64, command.count) }, worker));
  return { connected: command.count - failed, failed, ms: Date.now() - started };
}

function report(): LoadReport {
  const result = {
    frames,
    chars,
    snapshots,
    ticks: [...ticks.values()],
    open: clients.length - dropped,
    dropped,
  };
  measuring = false;
  return result;
}

async function handle(command: LoadCommand): Promise<unknown> {
  switch (command.cmd) {
    case "connect":
      return await connect(command);
    case "measure":
      frames = 0;
      chars = 0;
      snapshots = 0;
      ticks = new Map();
      measuring = true;
      return { ok: true };
    case "report":
      return report();
    case "close":
      closing = true;
      for (const socket of clients) socket.close();
      return { ok: true };
  }
}

const encoder = new TextEncoder();
let buffered = "";
for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  buffered += chunk;
  let newline;
  while ((newline = buffered.indexOf("\n")) >= 0) {
    const line = buffered.slice(0, newline);
    buffered = buffered.slice(newline + 1);
    const reply = await handle(JSON.parse(line));
    const bytes = encoder.encode(JSON.stringify(reply) + "\n");
    for (let written = 0; written < bytes.length;) written += Deno.stdout.writeSync(bytes.subarray(written));
  }
}
