/**
 * The `real` handle: the seed's device points with their latest values, read with at most two
 * queries per poll for any number of units (the seed ran 1 + N per unit).
 *
 * Point metadata (`archive_device`) changes rarely and is the bulk of the rows, so it is
 * cached: each poll reads the values of every cached address and, at the same time on a second
 * connection, re-reads the metadata of a slice of the units (every unit at least once per
 * `pointsRefreshPolls` polls, the slices as even as the units allow whatever their ids; see
 * {@link RefreshSchedule}). A unit polled for the first time has its metadata read first, then
 * the values. Re-read metadata that names an address the poll did not read is used from the
 * next poll on, so a point is never shown without a value it has.
 *
 * A point's `code` names a column of `device_data_real`; that name is looked up in the returned
 * row, never put into SQL, so a hostile or odd `code` can only yield "no value".
 */

import type { Unit } from "../config/unit.ts";
import type { Row, Source } from "../sources/source.ts";
import type { Handle } from "./handle.ts";
import { type Cell, layoutOf, rowKey, type RowSet, type Scalar, type Shape, toScalar } from "./rows.ts";

/**
 * A point's columns, in the order the seed sent them: one `archive_device` row with
 * `status = 'a'`, identified by `(address, code)`, and `value`, the `device_data_real` column
 * named by `code` in the row whose `equip_address` is the point's address (no value when there
 * is no such row or column).
 */
export const POINT_COLUMNS = [
  "code",
  "recode",
  "name",
  "rename",
  "show_id",
  "address",
  "gateway_id",
  "address_type",
  "value",
] as const;

/** The points' layout: keyed by address and code; only `value` changes between metadata reads. */
export const POINT_LAYOUT = layoutOf(POINT_COLUMNS, ["address", "code"], ["value"]);

const WIDTH = POINT_COLUMNS.length;
const VALUE = POINT_COLUMNS.indexOf("value");
const CODE = POINT_COLUMNS.indexOf("code");
const ADDRESS = POINT_COLUMNS.indexOf("address");

/** One unit's points without their values: `WIDTH` cells a point, the value cell empty. */
type Metadata = Cell[];

/** `?, ?, ?` for n placeholders. */
function placeholders(n: number): string {
  return Array.from({ length: n }, () => "?").join(", ");
}

// Rows come back in the table's natural order within a unit, as the seed sent them.
function pointsSql(units: number): string {
  return "SELECT `unit_id`, `code`, `recode`, `name`, `rename`, `show_id`, " +
    "`gateway_address` AS `address`, `gateway_id`, `lot_type` AS `address_type` " +
    "FROM `archive_device` WHERE `status` = 'a' AND `unit_id` IN (" + placeholders(units) + ")";
}

function valuesSql(addresses: number): string {
  return "SELECT * FROM `device_data_real` WHERE `equip_address` IN (" + placeholders(addresses) + ")";
}

/** Options of {@link createRealHandle}. */
export interface RealHandleOptions {
  /**
   * Each unit's point metadata is re-read at least once every this many polls (1: every
   * poll). Values are read every poll. A renamed, added or removed point reaches subscribers
   * (as a fresh snapshot) within that many polls, or one more when it names an address the
   * poll that re-read it did not read.
   */
  readonly pointsRefreshPolls: number;
}

/** One unit's cached metadata, with what each poll needs of it worked out once. */
interface CachedUnit {
  /** Handed out with every poll's cells while the metadata is unchanged (see {@link RowSet}). */
  readonly shape: Shape;
  /** The points' cells, the value cells empty: each poll copies it and fills in the values. */
  readonly metadata: Metadata;
  /** `String(address)` of each point; `undefined` for a point without an address. */
  readonly addressKeys: readonly (string | undefined)[];
  /** The unit's distinct addresses. */
  readonly addresses: readonly string[];
  /** The rows the last poll handed out: handed out again while no value changed. */
  last?: RowSet;
}

/**
 * Which cached units re-read their metadata on which poll. Each unit holds one of
 * `pointsRefreshPolls` slots and is due on the polls whose count modulo `pointsRefreshPolls` is
 * its slot. A unit takes the emptiest slot when it is first cached, so units fall due evenly by
 * the order they joined, never by their ids (ids 10, 20, 30 with 10 slots would all share a
 * slot under `id % 10`). When units leave, a due unit in a slot fuller than the emptiest by more
 * than one moves to it; it was just re-read and the new slot comes round within
 * `pointsRefreshPolls` polls, so no unit ever waits longer, and the slots even out within one
 * round. Costs one map lookup per unit and poll, plus a scan of the slots per move.
 */
class RefreshSchedule {
  private readonly slotOf = new Map<number, number>();
  private readonly load: number[];

  constructor(private readonly polls: number) {
    this.load = new Array<number>(polls).fill(0);
  }

  /** Schedules a unit just read. */
  add(id: number): void {
    const slot = this.emptiest();
    this.slotOf.set(id, slot);
    this.load[slot]++;
  }

  /** Forgets a unit no longer polled. */
  remove(id: number): void {
    const slot = this.slotOf.get(id);
    if (slot === undefined) return;
    this.slotOf.delete(id);
    this.load[slot]--;
  }

  /** The scheduled units among `unitIds` due at poll number `poll`; evens out their slot. */
  due(poll: number, unitIds: readonly number[]): number[] {
    const slot = poll % this.polls;
    const due = unitIds.filter((id) => this.slotOf.get(id) === slot);
    for (const id of due) {
      const target = this.emptiest();
      if (this.load[slot] <= this.load[target] + 1) break;
      this.slotOf.set(id, target);
      this.load[slot]--;
      this.load[target]++;
    }
    return due;
  }

  private emptiest(): number {
    let best = 0;
    for (let slot = 1; slot < this.polls; slot++) if (this.load[slot] < this.load[best]) best = slot;
    return best;
  }
}

/** Per source: the cached metadata of every unit polled, the count of polls, and the schedule. */
interface MetadataCache {
  polls: number;
  readonly units: Map<number, CachedUnit>;
  /** Re-read metadata with an address the poll that read it had no value for: used next poll. */
  readonly next: Map<number, CachedUnit>;
  readonly schedule: RefreshSchedule;
}

/**
 * Creates a `real` handle with its own metadata cache (per source).
 *
 * @example
 * ```ts
 * const real = createRealHandle({ pointsRefreshPolls: 10 });
 * const byUnit = await real.fetch(source, [12, 13]); // Map { 12 => { shape, cells }, 13 => … }
 * ```
 */
export function createRealHandle(options: RealHandleOptions): Handle {
  const caches = new WeakMap<Source, MetadataCache>();
  return {
    name: "real",
    unitType: "int",
    frames: "points",
    databases: undefined,
    pollIntervalMs: undefined,
    queriesPerFetch: () => 2,
    async fetch(source: Source, requested: readonly Unit[]): Promise<Map<Unit, RowSet>> {
      const unitIds = requested as readonly number[];
      let cache = caches.get(source);
      if (!cache) {
        cache = {
          polls: 0,
          units: new Map(),
          next: new Map(),
          schedule: new RefreshSchedule(options.pointsRefreshPolls),
        };
        caches.set(source, cache);
      }
      const { units, next, schedule } = cache;
      for (const [id, unit] of next) units.set(id, unit);
      next.clear();
      const wanted = new Set(unitIds);
      for (const id of units.keys()) {
        if (wanted.has(id)) continue;
        units.delete(id);
        schedule.remove(id);
      }

      // Known units are re-read in turn; new ones at once, then in turn with the others.
      const due = schedule.due(cache.polls++, unitIds);
      const unknown = unitIds.filter((id) => !units.has(id));
      /** Takes in re-read metadata; with `read`, only where every address was among those read. */
      const renew = (refreshed: Map<number, Metadata>, read?: ReadonlySet<string>) => {
        for (const id of due) {
          const metadata = refreshed.get(id) ?? [];
          // Unchanged metadata keeps its shape, so the diff and the frame caches see it as such.
          if (sameCells(units.get(id)!.metadata, metadata)) continue;
          const unit = cachedUnit(metadata);
          // An address this poll read no value for waits for the next poll, not to show "no value".
          if (!read || unit.addresses.every((address) => read.has(address))) units.set(id, unit);
          else next.set(id, unit);
        }
      };
      let dataRows: Row[];
      if (unknown.length > 0) {
        // A new unit's values cannot be asked for before its addresses are known.
        const refreshed = await readMetadata(source, [...unknown, ...due]);
        for (const id of unknown) {
          units.set(id, cachedUnit(refreshed.get(id) ?? []));
          schedule.add(id);
        }
        renew(refreshed);
        dataRows = await readValues(source, addressesOf(units, unitIds));
      } else {
        // Both queries at once: the values of the cached addresses, and the metadata due.
        const addresses = addressesOf(units, unitIds);
        let refreshed: Map<number, Metadata>;
        [refreshed, dataRows] = await Promise.all([readMetadata(source, due), readValues(source, addresses)]);
        renew(refreshed, addresses);
      }
      const dataByAddress = new Map<string, Row>();
      for (const row of dataRows) {
        const address = String(row.equip_address);
        if (!dataByAddress.has(address)) dataByAddress.set(address, row); // the seed's LIMIT 1
      }
      const result = new Map<Unit, RowSet>();
      for (const id of unitIds) result.set(id, unitRows(units.get(id)!, dataByAddress));
      return result;
    },
  };
}

/**
 * A unit's rows: its metadata with the values just read. While every value is the one the last
 * poll handed out, that same object again (nothing copied, and the diff sees it unchanged at once).
 */
function unitRows(unit: CachedUnit, dataByAddress: ReadonlyMap<string, Row>): RowSet {
  const { shape, metadata, addressKeys, last } = unit;
  let cells: Cell[] | undefined; // copied at the first value that differs from the last rows'
  for (let i = 0, at = 0; i < addressKeys.length; i++, at += WIDTH) {
    const key = addressKeys[i];
    if (key === undefined) continue;
    const value = readValue(dataByAddress.get(key), metadata[at + CODE]);
    if (cells === undefined) {
      if (last !== undefined && last.cells[at + VALUE] === value) continue;
      cells = (last?.cells ?? metadata).slice();
    }
    cells[at + VALUE] = value;
  }
  if (cells === undefined && last !== undefined) return last;
  return unit.last = { shape, cells: cells ?? metadata.slice() };
}

/** The metadata of these units (none asked: no query). */
async function readMetadata(
  source: Source,
  unitIds: readonly number[],
): Promise<Map<number, Metadata>> {
  return unitIds.length === 0
    ? new Map()
    : groupByUnit(await source.select(pointsSql(unitIds.length), unitIds));
}

/** The data rows of these addresses (none asked: no query). */
async function readValues(source: Source, addresses: ReadonlySet<string>): Promise<Row[]> {
  return addresses.size === 0 ? [] : await source.select(valuesSql(addresses.size), [...addresses]);
}

/** The distinct addresses of these (cached) units. */
function addressesOf(units: ReadonlyMap<number, CachedUnit>, unitIds: readonly number[]): Set<string> {
  const addresses = new Set<string>();
  for (const id of unitIds) for (const address of units.get(id)!.addresses) addresses.add(address);
  return addresses;
}

function cachedUnit(metadata: Metadata): CachedUnit {
  const addressKeys: (string | undefined)[] = [];
  const keys: string[] = [];
  const seen = new Map<string, number>();
  for (let at = 0; at < metadata.length; at += WIDTH) {
    const address = metadata[at + ADDRESS];
    addressKeys.push(address === null ? undefined : String(address));
    // The seed's table may list a point twice: the second gets a key of its own.
    const key = rowKey(metadata, at, POINT_LAYOUT.keyIndexes);
    const times = seen.get(key) ?? 0;
    seen.set(key, times + 1);
    keys.push(times === 0 ? key : `${key}\u0000#${times}`);
  }
  const addresses = [...new Set(addressKeys.filter((key) => key !== undefined))];
  return { shape: { layout: POINT_LAYOUT, keys }, metadata, addressKeys, addresses };
}

function sameCells(a: readonly Cell[], b: readonly Cell[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function groupByUnit(rows: Row[]): Map<number, Metadata> {
  const units = new Map<number, Metadata>();
  for (const row of rows) {
    const id = Number(row.unit_id);
    let cells = units.get(id);
    if (!cells) units.set(id, cells = []);
    cells.push(
      toScalar(row.code),
      toScalar(row.recode),
      toScalar(row.name),
      toScalar(row.rename),
      toScalar(row.show_id),
      toScalar(row.address),
      toScalar(row.gateway_id),
      toScalar(row.address_type),
      undefined,
    );
  }
  return units;
}

function readValue(data: Row | undefined, code: Cell): Scalar | undefined {
  if (!data || typeof code !== "string" || !Object.hasOwn(data, code)) return undefined;
  return toScalar(data[code]);
}
