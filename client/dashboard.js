// @ts-check
/// <reference lib="dom" />
/**
 * The live dashboard served at `GET /`: pick a database and unit (or open `/?topic=…`), and see
 * the topic's points update through the client SDK. Changed values flash; the connection status
 * and a stale topic are shown plainly. No build step: the browser loads this file as it is.
 */

import { GatecastClient, pointKey } from "./gatecast_client.js";

/** @typedef {import("./gatecast_client.js").TopicState} TopicState */
/** @typedef {import("./gatecast_client.js").Status} Status */
/** @typedef {import("./gatecast_client.js").StatusDetail} StatusDetail */

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @returns {T}
 */
function byId(id) {
  return /** @type {T} */ (document.getElementById(id));
}

const picker = /** @type {HTMLFormElement} */ (byId("picker"));
const dbSelect = /** @type {HTMLSelectElement} */ (byId("db"));
const handleInput = /** @type {HTMLInputElement} */ (byId("handle"));
const unitInput = /** @type {HTMLInputElement} */ (byId("unit"));
const statusBadge = byId("status");
const banner = byId("banner");
const title = byId("topic");
const meta = byId("meta");
const table = /** @type {HTMLTableElement} */ (byId("points"));
const tbody = /** @type {HTMLTableSectionElement} */ (table.tBodies[0]);

const wsUrl = new URL("ws", location.href);
wsUrl.protocol = location.protocol === "https:" ? "wss:" : "ws:";

/** @type {(() => void) | undefined} */
let unsubscribe;
/** @type {Map<string, number>} when each point's value last changed, while this page watched */
let changedAt = new Map();
let connectionProblem = "";
let topicProblem = "";
const client = new GatecastClient(wsUrl.href, { onStatus: showStatus });

/**
 * @param {Status} status
 * @param {StatusDetail} detail
 */
function showStatus(status, detail) {
  document.body.dataset.status = status;
  statusBadge.textContent = status;
  if (status === "closed" && detail.reconnectInMs !== undefined) {
    connectionProblem = `Disconnected from gatecast; reconnecting in ${
      Math.ceil(detail.reconnectInMs / 1000)
    } s. Values shown may be out of date.`;
  } else if (status === "closed") {
    connectionProblem = "Disconnected from gatecast.";
  } else if (status !== "connecting") {
    connectionProblem = "";
  }
  showBanner();
}

function showBanner() {
  const text = connectionProblem || topicProblem;
  banner.hidden = text === "";
  banner.textContent = text;
  banner.className = connectionProblem ? "error" : "";
}

/** @param {import("./gatecast_client.js").Scalar} value */
function formatValue(value) {
  if (value === null || value === undefined || value === "") return "—";
  return String(value);
}

/** @param {number | undefined} ts */
function formatTime(ts) {
  return ts ? new Date(ts).toLocaleTimeString() : "—";
}

/** @param {string} text @param {string} [sub] */
function cell(text, sub) {
  const td = document.createElement("td");
  td.textContent = text;
  if (sub && sub !== text) {
    const span = document.createElement("span");
    span.className = "sub";
    span.textContent = sub;
    td.append(span);
  }
  return td;
}

/** @param {TopicState} state */
function render(state) {
  if (state.error) {
    topicProblem = `${state.topic}: ${state.error.message} (${state.error.code})`;
    showBanner();
    return;
  }
  const first = state.reason === "snapshot" && tbody.rows.length === 0;
  if (state.reason === "update" || state.reason === "snapshot") {
    for (const key of state.changed) if (!first) changedAt.set(key, state.ts);
  }
  topicProblem = state.stale
    ? `Topic ${state.topic} is stale: ${state.stale.message}. Showing the last known values.`
    : "";
  showBanner();
  table.classList.toggle("stale", state.stale !== undefined);
  if (state.reason === "snapshot") rebuild(state);
  else if (state.reason === "update") {
    for (const row of tbody.rows) {
      const key = row.dataset.key ?? "";
      if (!state.changed.has(key)) continue;
      const point = state.points[Number(row.dataset.index)];
      row.cells[3].textContent = formatValue(point.value);
      row.cells[4].textContent = formatTime(changedAt.get(key));
      flash(row);
    }
  }
  table.hidden = false;
  meta.textContent = `${state.points.length} points · seq ${state.seq} · last change ${formatTime(state.ts)}`;
}

/** @param {TopicState} state */
function rebuild(state) {
  const first = tbody.rows.length === 0;
  tbody.replaceChildren(...state.points.map((point, index) => {
    const key = pointKey(point);
    const row = document.createElement("tr");
    row.dataset.key = key;
    row.dataset.index = String(index);
    const value = cell(formatValue(point.value));
    value.className = "value";
    const when = cell(formatTime(changedAt.get(key)));
    when.className = "changed-at";
    row.append(
      cell(String(point.rename ?? point.name ?? ""), String(point.name ?? "")),
      cell(String(point.address ?? "")),
      cell(String(point.code ?? "")),
      value,
      when,
    );
    if (!first && state.changed.has(key)) flash(row);
    return row;
  }));
}

/** @param {HTMLTableRowElement} row */
function flash(row) {
  row.classList.remove("flash");
  void row.offsetWidth; // restart the animation
  row.classList.add("flash");
}

/** @param {string} topic */
function open(topic) {
  unsubscribe?.();
  changedAt = new Map();
  topicProblem = "";
  tbody.replaceChildren();
  table.hidden = true;
  title.textContent = topic;
  document.title = `${topic} · gatecast`;
  meta.textContent = "Waiting for the snapshot…";
  unsubscribe = client.subscribe(topic, render);
}

picker.addEventListener("submit", (event) => {
  event.preventDefault();
  const topic = `${dbSelect.value}/${handleInput.value}/${unitInput.value}`;
  history.pushState(null, "", `?topic=${encodeURIComponent(topic)}`);
  open(topic);
});

async function start() {
  const wanted = new URLSearchParams(location.search).get("topic");
  const [db, handle, unit] = wanted?.split("/") ?? [];
  try {
    const health = await (await fetch("healthz")).json();
    for (const code of Object.keys(health.databases ?? {})) dbSelect.add(new Option(code, code));
  } catch {
    // The picker stays empty; a ?topic= link still works.
  }
  if (db && ![...dbSelect.options].some((o) => o.value === db)) dbSelect.add(new Option(db, db));
  if (db) dbSelect.value = db;
  if (handle) handleInput.value = handle;
  if (unit) unitInput.value = unit;
  if (wanted) open(wanted);
}

addEventListener("popstate", () => location.reload());
start();
