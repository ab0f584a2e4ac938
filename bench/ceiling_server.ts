/**
 * The ceiling: the least a Deno broadcast server can do for the benchmark's load. Once per
 * topic per tick it encodes one `update` frame of every point's new value (the frame gatecast
 * sends when every value changed) and `send`s it to each subscriber; nothing else: no
 * database, no diff, no send-buffer checks, no metrics. A new subscriber gets a snapshot of
 * the same size as gatecast's, since the largest frame a connection has carried sets part of
 * what it keeps in memory.
 *
 * deno run --allow-net bench/ceiling_server.ts --port 4100 --devices 11 --interval 100
 */

import { parseArgs } from "node:util";
import { benchPoint, CODES_PER_DEVICE, deviceAddress, startValue } from "./plant.ts";

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    devices: { type: "string" },
    interval: { type: "string" },
  },
});
const port = Number(values.port);
const devices = Number(values.devices);
const intervalMs = Number(values.interval);

const subscribers = new Map<string, Set<WebSocket>>();
const snapshots = new Map<string, string>();

/** The topic's snapshot, as long as gatecast's: it sizes the buffers a connection keeps. */
function snapshot(topic: string): string {
  let text = snapshots.get(topic);
  if (text === undefined) {
    const unit = Number(topic.slice(topic.lastIndexOf("/") + 1));
    const points = [];
    for (let device = 1; device <= devices; device++) {
      for (let i = 0; i < CODES_PER_DEVICE; i++) points.push(benchPoint(unit, device, i));
    }
    text = JSON.stringify({ type: "snapshot", topic, seq: 1, ts: Date.now(), points });
    snapshots.set(topic, text);
  }
  return text;
}
let tick = 0;

Deno.serve({ hostname: "127.0.0.1", port, onListen: () => console.log("listening") }, (request) => {
  const { socket, response } = Deno.upgradeWebSocket(request, { protocol: "gatecast.v1" });
  socket.onmessage = (event) => {
    const topic = JSON.parse(event.data).topic as string;
    let set = subscribers.get(topic);
    if (!set) subscribers.set(topic, set = new Set());
    set.add(socket);
    socket.send(snapshot(topic));
    socket.onclose = () => set.delete(socket);
  };
  return response;
});

setInterval(() => {
  tick++;
  const ts = Date.now();
  for (const [topic, sockets] of subscribers) {
    const unit = Number(topic.slice(topic.lastIndexOf("/") + 1));
    const changes = [];
    for (let device = 1; device <= devices; device++) {
      const address = deviceAddress(unit, device);
      for (let i = 0; i < CODES_PER_DEVICE; i++) {
        changes.push({ address, code: `c${i}`, value: startValue(device, i) + tick * 0.25 });
      }
    }
    const text = JSON.stringify({ type: "update", topic, seq: tick + 1, ts, changes });
    for (const socket of sockets) socket.send(text);
  }
}, intervalMs);
