// @ts-check
/// <reference lib="dom" />
/**
 * The live dashboard served at `GET /`: pick a database and one of its handles (from `/catalog`)
 * and a unit, or open `/?topic=…`, and see the topic's rows update through the client SDK, as a
 * table of their columns (`real`'s points as name, address, code, value). Rows appear and leave,
 * changed cells flash, and every numeric cell carries a sparkline of its values since the topic
 * was opened. The connection status and a stale topic are shown plainly. No build step: the
 * browser loads this file as it is.
 */

import { GatecastClient, rowKey, topicOf, topicParts } from "./gatecast_client.js";

/** @typedef {import("./gatecast_client.js").TopicState} TopicState */
/** @typedef {import("./gatecast_client.js").Status} Status */
/** @typedef {import("./gatecast_client.js").StatusDetail} StatusDetail */
/** @typedef {import("./gatecast_client.js").Row} Row */
/** @typedef {import("./gatecast_client.js").Scalar} Scalar */

/**
 * A handle as `/catalog` describes it; `unitType` is `undefined` for one the catalog does not
 * name (a `?topic=` link to it still opens).
 * @typedef {{ unitType: "int" | "string" | "none" | undefined, frames?: "points" | "rows", key?: string[] }} HandleInfo
 */

/**
 * One column of the table: its heading, the row columns it shows (a cell is redrawn when one of
 * them changes), and how its text is made. `tracked` names the column whose numbers the cell's
 * sparkline follows, when it has one.
 * @typedef {object} ViewColumn
 * @property {string} label the heading
 * @property {readonly string[]} sources the row columns the cell shows
 * @property {(row: Row, key: string) => { text: string, sub?: string }} content the cell's text
 * @property {string | undefined} tracked the row column whose numeric values get a sparkline
 * @property {string} className the cell's class (`num` right-aligns, `key` marks a key column)
 */

/** Values kept per sparkline: about a minute at one change a second. */
const SPARK_VALUES = 60;
const SPARK_WIDTH = 64;
const SPARK_HEIGHT = 16;
/** The widest step between two values, in pixels, while a sparkline has few. */
const SPARK_MAX_STEP = 6;
const SVG = "http://www.w3.org/2000/svg";

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
const handleSelect = /** @type {HTMLSelectElement} */ (byId("handle"));
const unitField = byId("unit-field");
const unitInput = /** @type {HTMLInputElement} */ (byId("unit"));
const statusBadge = byId("status");
const banner = byId("banner");
const title = byId("topic");
const meta = byId("meta");
const table = /** @type {HTMLTableElement} */ (byId("rows"));
const headRow =
  /** @type {HTMLTableRowElement} */ (/** @type {HTMLTableSectionElement} */ (table.tHead).rows[0]);
const tbody = /** @type {HTMLTableSectionElement} */ (table.tBodies[0]);

const wsUrl = new URL("ws", location.href);
wsUrl.protocol = location.protocol === "https:" ? "wss:" : "ws:";

/** Each database's handles, from `/catalog`. @type {Map<string, Map<string, HandleInfo>>} */
const catalog = new Map();

/** The state of the topic on screen; reset by {@link open}. */
let view = newView();
/** @type {(() => void) | undefined} */
let unsubscribe;
let connectionProblem = "";
let topicProblem = "";
// With auth on, open the page as `/?token=…`: the token is sent in an `auth` frame, never in the
// WebSocket URL (which proxies tend to log).
const token = new URLSearchParams(location.search).get("token") ?? undefined;
const client = new GatecastClient(wsUrl.href, { onStatus: showStatus, token });

/**
 * What is drawn for the open topic: the table's columns, its rows by key, each numeric cell's
 * recent values (by row key, then column) and, for points, when each value last changed.
 */
function newView() {
  return {
    /** @type {ViewColumn[]} */
    columns: [],
    /** The columns' identity: the headings and their sources. */
    signature: "",
    /** Whether the topic's first snapshot has been drawn (nothing flashes before). */
    painted: false,
    /** @type {Map<string, HTMLTableRowElement>} */
    rows: new Map(),
    /** @type {Map<string, Map<string, number[]>>} */
    history: new Map(),
    /** @type {Map<string, number>} */
    changedAt: new Map(),
  };
}

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

/** @param {Scalar | undefined} value */
function formatValue(value) {
  if (value === null || value === undefined || value === "") return "—";
  return String(value);
}

/** @param {number | undefined} ts */
function formatTime(ts) {
  return ts ? new Date(ts).toLocaleTimeString() : "—";
}

/**
 * The columns of `real`'s points: the seed's table, with a sparkline on the value.
 * @returns {ViewColumn[]}
 */
function pointColumns() {
  /** @param {string} label @param {string} column @returns {ViewColumn} */
  const plain = (label, column) => ({
    label,
    sources: [column],
    content: (row) => ({ text: String(row[column] ?? "") }),
    tracked: undefined,
    className: "",
  });
  return [
    {
      label: "Name",
      sources: ["rename", "name"],
      content: (row) => ({ text: String(row.rename ?? row.name ?? ""), sub: String(row.name ?? "") }),
      tracked: undefined,
      className: "",
    },
    plain("Address", "address"),
    plain("Code", "code"),
    {
      label: "Value",
      sources: ["value"],
      content: (row) => ({ text: formatValue(row.value) }),
      tracked: "value",
      className: "num value",
    },
    {
      label: "Last change",
      sources: ["value"],
      content: (_row, key) => ({ text: formatTime(view.changedAt.get(key)) }),
      tracked: undefined,
      className: "changed-at",
    },
  ];
}

/**
 * The columns of a configured handle's rows: one per result column, in the result's order. Key
 * columns are marked and get no sparkline (a row's key never changes: another key is another row);
 * the columns holding a number in `sample` are right-aligned.
 * @param {readonly string[]} names
 * @param {readonly string[]} key
 * @param {Row | undefined} sample
 * @returns {ViewColumn[]}
 */
function rowColumns(names, key, sample) {
  return names.map((name) => ({
    label: name,
    sources: [name],
    content: (row) => ({ text: formatValue(row[name]) }),
    tracked: key.includes(name) ? undefined : name,
    className: key.includes(name) ? "key" : typeof sample?.[name] === "number" ? "num" : "",
  }));
}

/**
 * The table's columns for a state: the points' own, or the rows' columns (those of the first
 * row; while there is none, the columns drawn so far, or the key columns).
 * @param {TopicState} state
 * @returns {ViewColumn[]}
 */
function columnsOf(state) {
  if (state.frames === "points") return pointColumns();
  if (state.rows.length > 0) return rowColumns(Object.keys(state.rows[0]), state.key, state.rows[0]);
  return view.columns.length > 0 ? view.columns : rowColumns(state.key, state.key, undefined);
}

/** @param {TopicState} state */
function render(state) {
  if (state.error) {
    topicProblem = `${state.topic}: ${state.error.message} (${state.error.code})`;
    showBanner();
    return;
  }
  topicProblem = state.stale
    ? `Topic ${state.topic} is stale: ${state.stale.message}. Showing the last known values.`
    : "";
  showBanner();
  table.classList.toggle("stale", state.stale !== undefined);
  if (state.reason === "snapshot" || state.reason === "update") draw(state);
  const what = state.frames === "points" ? "points" : "rows";
  const key = state.frames === "rows" ? ` · key ${state.key.join(", ")}` : "";
  const epoch = state.epoch === undefined ? "" : ` · epoch ${state.epoch}`;
  meta.textContent = `${state.rows.length} ${what}${key} · seq ${state.seq}${epoch} · last change ${
    formatTime(state.ts)
  }`;
}

/**
 * Brings the table to the state's rows: new rows are added, rows gone removed, the cells of
 * changed columns redrawn and flashed, and the rows kept in the server's order.
 * @param {TopicState} state
 */
function draw(state) {
  const columns = columnsOf(state);
  const signature = JSON.stringify(columns.map((c) => [c.label, c.sources]));
  if (signature !== view.signature) {
    view.columns = columns;
    view.signature = signature;
    headRow.replaceChildren(...columns.map((column) => {
      const th = document.createElement("th");
      th.textContent = column.label;
      th.className = column.className;
      return th;
    }));
    view.rows.clear();
    tbody.replaceChildren();
  }
  const flashing = view.painted;
  for (const key of state.removed) {
    view.history.delete(key);
    view.changedAt.delete(key);
  }
  const current = new Set();
  state.rows.forEach((row, i) => {
    const key = rowKey(row, state.key);
    current.add(key);
    const changed = state.changedColumns.get(key);
    if (changed) {
      if (flashing) view.changedAt.set(key, state.ts);
      remember(key, row, changed);
    }
    let tr = view.rows.get(key);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.key = key;
      for (const column of view.columns) tr.append(cell(column, row, key));
      if (flashing) restartAnimation(tr, "appeared");
      view.rows.set(key, tr);
    } else if (changed) {
      const cells = tr.cells;
      view.columns.forEach((column, c) => {
        if (!column.sources.some((source) => changed.includes(source))) return;
        fill(cells[c], column, row, key);
        if (flashing) restartAnimation(cells[c], "flash");
      });
    }
    if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] ?? null);
  });
  for (const [key, tr] of view.rows) {
    if (current.has(key)) continue;
    tr.remove();
    view.rows.delete(key);
  }
  view.painted = true;
  table.hidden = false;
}

/**
 * Adds the numbers of a row's changed columns to their sparklines' values.
 * @param {string} key
 * @param {Row} row
 * @param {readonly string[]} changed
 */
function remember(key, row, changed) {
  let columns = view.history.get(key);
  if (!columns) view.history.set(key, columns = new Map());
  for (const column of changed) {
    const value = row[column];
    if (typeof value !== "number") continue;
    const values = columns.get(column) ?? [];
    values.push(value);
    if (values.length > SPARK_VALUES) values.shift();
    columns.set(column, values);
  }
}

/**
 * @param {ViewColumn} column
 * @param {Row} row
 * @param {string} key
 */
function cell(column, row, key) {
  const td = document.createElement("td");
  if (column.className) td.className = column.className;
  td.dataset.column = column.label;
  fill(td, column, row, key);
  return td;
}

/**
 * Draws a cell: its sparkline (when its tracked column holds a number), its text and a second line.
 * @param {HTMLTableCellElement} td
 * @param {ViewColumn} column
 * @param {Row} row
 * @param {string} key
 */
function fill(td, column, row, key) {
  const { text, sub } = column.content(row, key);
  /** @type {(Node | string)[]} */
  const parts = [];
  const values = column.tracked !== undefined && typeof row[column.tracked] === "number"
    ? view.history.get(key)?.get(column.tracked)
    : undefined;
  if (values && values.length > 0) parts.push(sparkline(values));
  parts.push(text);
  if (sub && sub !== text) {
    const span = document.createElement("span");
    span.className = "sub";
    span.textContent = sub;
    parts.push(span);
  }
  td.classList.toggle("numeric", values !== undefined);
  td.replaceChildren(...parts);
}

/**
 * An inline SVG line of `values`, the latest at the right end, scaled between their minimum and
 * maximum (a flat line when they are all equal). It holds no text, so the cell's text is its value.
 * @param {readonly number[]} values
 * @returns {SVGSVGElement}
 */
function sparkline(values) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", String(SPARK_WIDTH));
  svg.setAttribute("height", String(SPARK_HEIGHT));
  svg.setAttribute("viewBox", `0 0 ${SPARK_WIDTH} ${SPARK_HEIGHT}`);
  svg.setAttribute("aria-hidden", "true");
  svg.dataset.values = String(values.length);
  const min = Math.min(...values);
  const max = Math.max(...values);
  const step = values.length > 1 ? Math.min(SPARK_MAX_STEP, (SPARK_WIDTH - 4) / (values.length - 1)) : 0;
  const points = values.map((value, i) => {
    const x = SPARK_WIDTH - 2 - (values.length - 1 - i) * step;
    const y = max === min ? SPARK_HEIGHT / 2 : 2 + (1 - (value - min) / (max - min)) * (SPARK_HEIGHT - 4);
    return [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
  });
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.map((p) => p.join(",")).join(" "));
  const [lastX, lastY] = points[points.length - 1];
  const dot = document.createElementNS(SVG, "circle");
  dot.setAttribute("cx", String(lastX));
  dot.setAttribute("cy", String(lastY));
  dot.setAttribute("r", "1.8");
  svg.append(line, dot);
  return svg;
}

/**
 * Adds a class whose CSS animation plays once, restarting it when it is already there.
 * @param {HTMLElement} element
 * @param {string} className
 */
function restartAnimation(element, className) {
  element.classList.remove(className);
  void element.offsetWidth; // restart the animation
  element.classList.add(className);
}

/** @param {string} topic */
function open(topic) {
  unsubscribe?.();
  view = newView();
  topicProblem = "";
  headRow.replaceChildren();
  tbody.replaceChildren();
  table.hidden = true;
  title.textContent = topic;
  document.title = `${topic} · gatecast`;
  meta.textContent = "Waiting for the snapshot…";
  unsubscribe = client.subscribe(topic, render);
}

/** The handle chosen in the picker, as the catalog describes it. */
function chosenHandle() {
  return catalog.get(dbSelect.value)?.get(handleSelect.value);
}

/** Lists the chosen database's handles, keeping the chosen handle when that database offers it too. */
function showHandles() {
  const previous = handleSelect.value;
  const handles = catalog.get(dbSelect.value) ?? new Map();
  handleSelect.replaceChildren(...[...handles].map(([name, info]) => {
    const option = new Option(name, name);
    option.title = info.unitType === "none"
      ? "no units: one topic per database"
      : `units: ${info.unitType ?? "?"}`;
    return option;
  }));
  if (handles.has(previous)) handleSelect.value = previous;
  showUnitField();
}

/** Fits the unit field to the chosen handle's unit grammar: hidden and disabled when it has none. */
function showUnitField() {
  const unitType = chosenHandle()?.unitType;
  const none = unitType === "none";
  unitField.hidden = none;
  unitInput.disabled = none;
  if (unitType === "int") {
    unitInput.pattern = "[1-9][0-9]{0,9}";
    unitInput.inputMode = "numeric";
    unitInput.placeholder = "12";
    unitInput.title = "an integer from 1 to 2147483647";
  } else if (unitType === "string") {
    unitInput.pattern = "[A-Za-z0-9_.:\\-]{1,64}";
    unitInput.inputMode = "text";
    unitInput.placeholder = "north";
    unitInput.title = "a name of letters, digits and _ . : - (up to 64)";
  } else {
    unitInput.removeAttribute("pattern");
    unitInput.inputMode = "text";
    unitInput.placeholder = "";
    unitInput.title = "";
  }
}

/**
 * Adds a handle to the catalog as a `?topic=` link names it, when the catalog does not.
 * @param {string} db
 * @param {string} handle
 * @param {boolean} unitless
 */
function ensureListed(db, handle, unitless) {
  let handles = catalog.get(db);
  if (!handles) catalog.set(db, handles = new Map());
  if (!handles.has(handle)) handles.set(handle, { unitType: unitless ? "none" : undefined });
}

/** Fills the database list from the catalog. */
function showDatabases() {
  const previous = dbSelect.value;
  dbSelect.replaceChildren(...[...catalog.keys()].map((code) => new Option(code, code)));
  if (catalog.has(previous)) dbSelect.value = previous;
}

dbSelect.addEventListener("change", showHandles);
handleSelect.addEventListener("change", showUnitField);

picker.addEventListener("submit", (event) => {
  event.preventDefault();
  const unitless = chosenHandle()?.unitType === "none";
  const topic = topicOf(dbSelect.value, handleSelect.value, unitless ? undefined : unitInput.value.trim());
  const query = new URLSearchParams(location.search); // keeps ?token=
  query.set("topic", topic);
  history.pushState(null, "", `?${query}`);
  open(topic);
});

/** Reads `/catalog`; the picker stays empty without it, and a `?topic=` link still works. */
async function loadCatalog() {
  try {
    const body = await (await fetch("catalog")).json();
    for (const [db, { handles }] of Object.entries(body.databases ?? {})) {
      catalog.set(db, new Map(Object.entries(handles ?? {})));
    }
  } catch {
    // Shown as an empty picker.
  }
}

async function start() {
  const wanted = new URLSearchParams(location.search).get("topic");
  /** @type {ReturnType<typeof topicParts> | undefined} */
  let parts;
  try {
    parts = wanted ? topicParts(wanted) : undefined;
  } catch (error) {
    topicProblem = `?topic=: ${/** @type {Error} */ (error).message}`;
    showBanner();
  }
  await loadCatalog();
  if (parts) ensureListed(parts.db, parts.handle, parts.unit === undefined);
  showDatabases();
  if (parts) dbSelect.value = parts.db;
  showHandles();
  if (parts) {
    handleSelect.value = parts.handle;
    showUnitField();
    if (parts.unit !== undefined) unitInput.value = parts.unit;
  }
  if (parts && wanted) open(wanted);
}

addEventListener("popstate", () => location.reload());
start();
