/**
 * The dashboard: its embedded files are served as they are in `client/`, and a real headless
 * Chromium (Debian's `chromium`, driven by `playwright-core`) loads it from a running gatecast.
 * On MariaDB's `real` points it sees the snapshot, a value change after an UPDATE (the cell
 * flashing, its sparkline growing) and a stale banner. Over the demo plant's database with the
 * demo's handles it lists the catalog, shows a custom handle as a table of its columns whose
 * cells flash and whose rows appear and leave as the test changes the table, and opens a
 * unit-less topic. Screenshots go to `tests/artifacts/`; with GATECAST_DOCS_SCREENSHOT=1 the
 * custom handle's also replaces `docs/dashboard.png`.
 *
 * Without /usr/bin/chromium the browser tests are ignored, unless GATECAST_REQUIRE_BROWSER=1
 * (as `.ci/run` sets), where they fail instead.
 */

import assert from "node:assert/strict";
import { chromium, type Page } from "playwright-core";
import { DatabaseSync } from "node:sqlite";
import { DASHBOARD_ASSETS } from "../../lib/net/dashboard.ts";
import { createDemoSchema, DEMO_HANDLES, startDemoPlant } from "../../lib/sources/demo_plant.ts";
import { SqliteSource } from "../../lib/sources/sqlite_source.ts";
import { createTestDatabase, type TestDatabase } from "../support/mysql.ts";
import { startTestApp, type TestApp, waitFor, withTestApp } from "../support/app.ts";
import { signToken, tokenAuth } from "../support/tokens.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = new URL("../artifacts/", import.meta.url);
const DOCS_SCREENSHOT = new URL("../../docs/dashboard.png", import.meta.url);
const hasChromium = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
const browserRequired = Deno.env.get("GATECAST_REQUIRE_BROWSER") === "1";

Deno.test("every dashboard file is served from the program with its type, byte for byte as in client/", async () => {
  const db = await createTestDatabase();
  await withTestApp(db, { plant1: db.settings }, async (app) => {
    const files: Record<string, [string, string]> = {
      "/": ["dashboard.html", "text/html; charset=utf-8"],
      "/dashboard.css": ["dashboard.css", "text/css; charset=utf-8"],
      "/dashboard.js": ["dashboard.js", "text/javascript; charset=utf-8"],
      "/gatecast_client.js": ["gatecast_client.js", "text/javascript; charset=utf-8"],
    };
    assert.deepEqual([...DASHBOARD_ASSETS.keys()].sort(), Object.keys(files).sort());
    for (const [path, [file, type]] of Object.entries(files)) {
      const response = await fetch(app.httpUrl + path);
      assert.deepEqual(response.status, 200, path);
      assert.deepEqual(response.headers.get("content-type"), type, path);
      assert.deepEqual(response.headers.get("cache-control"), "no-cache", path);
      assert.deepEqual(
        await response.text(),
        await Deno.readTextFile(new URL(`../../client/${file}`, import.meta.url)),
      );
    }
    const missing = await fetch(`${app.httpUrl}/dashboard.jsx`);
    assert.deepEqual(missing.status, 404);
    assert.deepEqual(await missing.json(), { error: "no route /dashboard.jsx" });
  });
});

/** A test that needs Chromium: ignored without it, unless GATECAST_REQUIRE_BROWSER=1. */
function browserTest(name: string, fn: () => Promise<void>): void {
  // Playwright's pipes to the browser outlive a test's ops by design.
  Deno.test({
    name,
    ignore: !hasChromium && !browserRequired,
    sanitizeOps: false,
    sanitizeResources: false,
    fn,
  });
}

/** Runs `fn` with a page of a fresh headless Chromium (its own empty profile directory). */
async function withPage(fn: (page: Page, errors: string[]) => Promise<void>): Promise<void> {
  const profile = await Deno.makeTempDir({ prefix: "gatecast-chromium-" });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    // Playwright passes --headless and the profile itself; the rest keeps Chromium off the network.
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1100, height: 720 },
  });
  const errors: string[] = [];
  try {
    const page = context.pages()[0] ?? await context.newPage();
    page.on("pageerror", (error) => errors.push(error.message));
    page.on("console", (message) => {
      if (message.type() === "error") errors.push(message.text());
    });
    await fn(page, errors);
  } finally {
    await context.close();
    await Deno.remove(profile, { recursive: true });
  }
}

async function screenshot(page: Page, name: string): Promise<URL> {
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  const path = new URL(name, ARTIFACTS);
  await page.screenshot({ path: path.pathname, fullPage: true });
  assert.ok(Deno.statSync(path).size > 10_000, `${name} looks empty`);
  return path;
}

/** The value cell text of each row, keyed by "address code". */
async function valueCells(page: Page): Promise<Record<string, string>> {
  const rows = await rowTexts(page);
  return Object.fromEntries(rows.map((cells) => [`${cells[1]} ${cells[2]}`, cells[3]]));
}

/** The text of every cell, row by row. */
function rowTexts(page: Page, selector = "#rows tbody tr"): Promise<string[][]> {
  return page.locator(selector).evaluateAll(
    (rows) => rows.map((row) => [...row.children].map((td) => td.textContent ?? "")),
  );
}

const GW1_UA = `#rows tbody tr[data-key='["GW1","ua"]']`;
const GW1_IA = `#rows tbody tr[data-key='["GW1","ia"]']`;

/** The cells flashing: [row key, column heading] each. */
function flashingCells(page: Page): Promise<[string, string][]> {
  return page.locator("#rows tbody td.flash").evaluateAll((cells) =>
    cells.map((td) => [td.parentElement?.dataset.key ?? "", td.dataset.column ?? ""] as [string, string])
  );
}

/** How many values each sparkline shows, by "row key column". */
async function sparklineSizes(page: Page): Promise<Record<string, number>> {
  const sizes = await page.locator("#rows tbody svg.spark").evaluateAll((svgs) =>
    svgs.map((svg) => {
      const td = svg.closest("td")!;
      return [`${td.parentElement?.dataset.key} ${td.dataset.column}`, Number(svg.dataset.values)] as const;
    })
  );
  return Object.fromEntries(sizes);
}

/** The table's headings. */
function headings(page: Page): Promise<string[]> {
  return page.locator("#rows thead th").allTextContents();
}

async function plant(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  await db.addPoints([
    { unit: 12, code: "ua", address: "GW1", showId: 1, name: "Voltage A", rename: "Feeder 1 voltage" },
    { unit: 12, code: "ia", address: "GW1", showId: 2, name: "Current A", rename: "Feeder 1 current" },
    { unit: 12, code: "ua", address: "GW2", showId: 3, name: "Voltage A", rename: "Feeder 2 voltage" },
    { unit: 12, code: "state", address: "GW-NODATA", showId: 4, name: "State", rename: "Spare feeder" },
  ]);
  await db.setData("GW1", { ua: 229.5, ia: 10 });
  await db.setData("GW2", { ua: 231 });
  return db;
}

browserTest(
  "in Chromium the dashboard shows real's points, then an UPDATE's new value flashing with its sparkline grown, and a stale banner",
  async () => {
    const db = await plant();
    await withTestApp(db, { plant1: db.settings }, (app) =>
      withPage(async (page, errors) => {
        await page.goto(`${app.httpUrl}/?topic=plant1/real/12`);
        await page.waitForSelector("#rows tbody tr");
        assert.deepEqual(await page.textContent("#topic"), "plant1/real/12");
        assert.deepEqual(await page.getAttribute("body", "data-status"), "open");
        assert.deepEqual(await valueCells(page), {
          "GW1 ua": "229.5",
          "GW1 ia": "10",
          "GW2 ua": "231",
          "GW-NODATA state": "—",
        });
        assert.deepEqual(
          (await rowTexts(page)).map((cells) => cells[0]),
          [
            "Feeder 1 voltageVoltage A",
            "Feeder 1 currentCurrent A",
            "Feeder 2 voltageVoltage A",
            "Spare feederState",
          ],
        );
        assert.deepEqual(await page.isHidden("#banner"), true);

        await db.query("UPDATE device_data_real SET ia = 12.25 WHERE equip_address = 'GW1'");
        await page.locator(`${GW1_IA} td.value`, { hasText: "12.25" }).waitFor();
        assert.deepEqual(await flashingCells(page), [['["GW1","ia"]', "Value"], [
          '["GW1","ia"]',
          "Last change",
        ]]);
        assert.notDeepEqual(await page.textContent(`${GW1_IA} td.changed-at`), "—");
        assert.deepEqual(await page.textContent(`${GW1_UA} td.changed-at`), "—");
        // Each number's sparkline: two values where one changed, one elsewhere, none without a number.
        assert.deepEqual(await sparklineSizes(page), {
          '["GW1","ua"] Value': 1,
          '["GW1","ia"] Value': 2,
          '["GW2","ua"] Value': 1,
        });
        await screenshot(page, "dashboard-mariadb.png");

        await db.query("RENAME TABLE device_data_real TO device_data_gone");
        await page.waitForSelector("#banner:not([hidden])");
        assert.match(
          await page.textContent("#banner") ?? "",
          /^Topic plant1\/real\/12 is stale: .*Showing the last known values\.$/,
        );
        assert.deepEqual(await page.getAttribute("body", "data-status"), "stale");
        assert.deepEqual((await valueCells(page))["GW1 ia"], "12.25");
        await screenshot(page, "dashboard-stale.png");
        await db.query("RENAME TABLE device_data_gone TO device_data_real");
        await page.waitForSelector("#banner", { state: "hidden" });
        assert.deepEqual(await page.getAttribute("body", "data-status"), "open");

        assert.deepEqual(errors, []);
      }));
  },
);

browserTest("in Chromium the picker lists the configured databases and opens the chosen unit", async () => {
  const db = await plant();
  await withTestApp(
    db,
    { plant1: db.settings, plant2: db.settings },
    (app) =>
      withPage(async (page, errors) => {
        await page.goto(`${app.httpUrl}/`);
        await page.waitForSelector("#db option", { state: "attached" });
        assert.deepEqual(await page.locator("#db option").allTextContents(), [
          "plant1",
          "plant2",
        ]);
        await page.selectOption("#db", "plant2");
        await page.fill("#unit", "12");
        await page.click("#picker button");
        await page.waitForSelector("#rows tbody tr");
        assert.deepEqual(new URL(page.url()).search, "?topic=plant2%2Freal%2F12");
        assert.deepEqual((await valueCells(page))["GW2 ua"], "231");
        assert.deepEqual(errors, []);
      }),
  );
});

browserTest(
  "in Chromium with ?token= the page authenticates, and the picker keeps the token in the address",
  async () => {
    const db = await plant();
    const token = await signToken({ topics: ["plant1/real/*"] });
    await withTestApp(db, { plant1: db.settings }, (app) =>
      withPage(async (page, errors) => {
        await page.goto(`${app.httpUrl}/?topic=plant1/real/12&token=${token}`);
        await page.waitForSelector("#rows tbody tr");
        assert.deepEqual((await valueCells(page))["GW1 ua"], "229.5");
        await page.fill("#unit", "13");
        await page.click("#picker button");
        await page.locator("#topic", { hasText: "plant1/real/13" }).waitFor();
        const query = new URL(page.url()).searchParams;
        assert.deepEqual([query.get("topic"), query.get("token")], ["plant1/real/13", token]);
        assert.deepEqual(await page.getAttribute("body", "data-status"), "open");
        assert.deepEqual(errors, []);
      }), { auth: tokenAuth() });
  },
);

// ---- The demo plant's handles: a string-unit handle (tanks) and a unit-less one (alarms) ----

/** A gatecast over the demo plant's database with the demo's handles, and no simulator: the test changes the tables. */
interface DemoApp {
  readonly app: TestApp;
  readonly db: DatabaseSync;
  /** The cell texts the dashboard should show for a demo handle's SQL on `units`, row by row. */
  expected(handle: "tanks" | "alarms", ...units: string[]): string[][];
}

async function withDemoApp(fn: (demo: DemoApp) => Promise<void>): Promise<void> {
  const db = new DatabaseSync(":memory:");
  createDemoSchema(db, new Date("2026-12-01T08:00:00.000Z"));
  const app = await startTestApp(
    { demo: { driver: "sqlite", path: ":memory:" } },
    { handles: DEMO_HANDLES },
    new Map([["demo", new SqliteSource("demo", db)]]),
  );
  const expected = (handle: "tanks" | "alarms", ...units: string[]) => {
    const sql = String(DEMO_HANDLES[handle].sql).replace(":units", units.map(() => "?").join(", "));
    return db.prepare(sql).all(...units).map((row) =>
      Object.values(row).map((value) => value === null || value === "" ? "—" : String(value))
    );
  };
  try {
    await fn({ app, db, expected });
  } finally {
    await app.stop();
    if (db.isOpen) db.close();
  }
}

/** Waits until the table shows `rows()`, and returns them. */
async function tableShows(page: Page, what: string, rows: () => string[][]): Promise<string[][]> {
  let shown: string[][] = [];
  await waitFor(what, async () => {
    shown = await rowTexts(page);
    return JSON.stringify(shown) === JSON.stringify(rows());
  });
  return shown;
}

const TANK_COLUMNS = ["site", "tank_id", "level_m", "temp_c", "updated_at"];

browserTest(
  "in Chromium the catalog lists each database's handles; a unit-less handle opens without a unit, a string unit with one",
  async () => {
    await withDemoApp(({ app, expected }) =>
      withPage(async (page, errors) => {
        await page.goto(`${app.httpUrl}/`);
        await page.waitForSelector("#handle option", { state: "attached" });
        assert.deepEqual(await page.locator("#db option").allTextContents(), ["demo"]);
        assert.deepEqual(await page.locator("#handle option").allTextContents(), ["real", "tanks", "alarms"]);
        assert.deepEqual(await page.isVisible("#unit"), true);
        assert.deepEqual(await page.getAttribute("#unit", "pattern"), "[1-9][0-9]{0,9}");

        await page.selectOption("#handle", "alarms");
        assert.deepEqual(await page.isHidden("#unit-field"), true);
        assert.deepEqual(await page.isDisabled("#unit"), true);
        await page.click("#picker button");
        await page.waitForSelector("#rows tbody tr");
        assert.deepEqual(new URL(page.url()).searchParams.get("topic"), "demo/alarms");
        assert.deepEqual(await page.textContent("#topic"), "demo/alarms");
        assert.deepEqual(await headings(page), ["id", "severity", "message", "raised_at"]);
        await tableShows(page, "the open alarms", () => expected("alarms"));

        await page.selectOption("#handle", "tanks");
        assert.deepEqual(await page.isDisabled("#unit"), false);
        assert.deepEqual(await page.getAttribute("#unit", "pattern"), "[A-Za-z0-9_.:\\-]{1,64}");
        await page.fill("#unit", "east");
        await page.click("#picker button");
        await page.locator("#topic", { hasText: "demo/tanks/east" }).waitFor();
        await tableShows(page, "the east tanks", () => expected("tanks", "east"));
        assert.deepEqual(await headings(page), TANK_COLUMNS);
        assert.deepEqual(errors, []);
      })
    );
  },
);

browserTest(
  "in Chromium a custom handle is a table of its columns: a changed cell flashes and its sparkline grows, rows appear and leave",
  async () => {
    await withDemoApp(({ app, db, expected }) =>
      withPage(async (page, errors) => {
        await page.goto(`${app.httpUrl}/?topic=demo/tanks/north`);
        await page.waitForSelector("#rows tbody tr");
        assert.deepEqual(await headings(page), TANK_COLUMNS);
        assert.deepEqual(await page.locator("#rows thead th.key").allTextContents(), ["tank_id"]);
        await tableShows(page, "the north tanks", () => expected("tanks", "north"));
        assert.deepEqual(await page.textContent("#meta").then((t) => t?.split(" · ").slice(0, 3)), [
          "4 rows",
          "key tank_id",
          "seq 1",
        ]);
        assert.deepEqual(await flashingCells(page), []);
        // Every number that is not the key has a sparkline of one value so far.
        const one = Object.fromEntries(
          [1, 2, 3, 4].flatMap((tank) => [[`[${tank}] level_m`, 1], [`[${tank}] temp_c`, 1]]),
        );
        assert.deepEqual(await sparklineSizes(page), one);

        db.exec("UPDATE tank_level SET level_m = 1.25 WHERE site = 'north' AND tank_id = 2");
        await tableShows(page, "the UPDATE", () => expected("tanks", "north"));
        assert.deepEqual(await flashingCells(page), [["[2]", "level_m"]]);
        assert.deepEqual(await sparklineSizes(page), { ...one, "[2] level_m": 2 });
        assert.deepEqual(await page.locator("#rows tbody tr.appeared").count(), 0);

        db.exec("INSERT INTO tank_level VALUES ('north', 5, 2.5, 11.5, '2026-12-01T08:00:05.000Z')");
        const inserted = await tableShows(page, "the INSERT", () => expected("tanks", "north"));
        assert.deepEqual(inserted.map((cells) => cells[1]), ["1", "2", "3", "4", "5"]);
        assert.deepEqual(
          await page.locator("#rows tbody tr.appeared").evaluateAll((rows) => rows.map((r) => r.dataset.key)),
          ["[5]"],
        );

        db.exec("DELETE FROM tank_level WHERE site = 'north' AND tank_id = 1");
        const deleted = await tableShows(page, "the DELETE", () => expected("tanks", "north"));
        assert.deepEqual(deleted.map((cells) => cells[1]), ["2", "3", "4", "5"]);
        assert.deepEqual(await page.locator(`#rows tbody tr[data-key="[1]"]`).count(), 0);

        // A minute of a plant, compressed: every tank moves each round; the sparklines fill up.
        for (let round = 1; round <= 16; round++) {
          const at = new Date(Date.UTC(2026, 11, 1, 8, 0, 5 + round)).toISOString();
          for (const tank of [2, 3, 4, 5]) {
            const level = 5 + 2.5 * Math.sin(round / 2.5 + tank) + tank / 4;
            const temp = 14 + 1.5 * Math.cos(round / 3 + tank * 2);
            db.prepare(
              "UPDATE tank_level SET level_m = ?, temp_c = ?, updated_at = ? WHERE site = 'north' AND tank_id = ?",
            ).run(Math.round(level * 100) / 100, Math.round(temp * 10) / 10, at, tank);
          }
          await tableShows(page, `round ${round}`, () => expected("tanks", "north"));
        }
        const sizes = await sparklineSizes(page);
        assert.ok(sizes["[3] level_m"] >= 16, `sparklines of ${JSON.stringify(sizes)}`);
        // The picture: the flashes of the rounds faded, then one cell just changed.
        await page.waitForFunction("document.getAnimations().length === 0");
        db.exec("UPDATE tank_level SET temp_c = 16.4 WHERE site = 'north' AND tank_id = 3");
        await tableShows(page, "the last change", () => expected("tanks", "north"));
        await page.setViewportSize({ width: 1100, height: 380 });
        const shot = await screenshot(page, "dashboard-rows.png");
        if (Deno.env.get("GATECAST_DOCS_SCREENSHOT") === "1") await Deno.copyFile(shot, DOCS_SCREENSHOT);
        assert.deepEqual(errors, []);
      })
    );
  },
);

browserTest(
  "in Chromium a unit-less topic's rows appear and leave as alarms are raised and cleared",
  async () => {
    await withDemoApp(({ app, db, expected }) =>
      withPage(async (page, errors) => {
        await page.goto(`${app.httpUrl}/?topic=demo/alarms`);
        await page.waitForSelector("#rows tbody tr");
        assert.deepEqual(await page.inputValue("#handle"), "alarms");
        assert.deepEqual(await page.isHidden("#unit-field"), true);
        const first = await tableShows(page, "the open alarms", () => expected("alarms"));
        assert.deepEqual(first.map((cells) => cells[0]), ["2", "4", "5"]);

        db.exec(
          "INSERT INTO alarm (severity, message, raised_at) VALUES ('critical', 'east tank 2: inlet valve stuck', '2026-12-01T08:01:00.000Z')",
        );
        const raised = await tableShows(page, "the new alarm", () => expected("alarms"));
        assert.deepEqual(raised.map((cells) => cells[0]), ["2", "4", "5", "6"]);
        assert.deepEqual(
          await page.locator("#rows tbody tr.appeared").evaluateAll((rows) => rows.map((r) => r.dataset.key)),
          ["[6]"],
        );

        db.exec("UPDATE alarm SET cleared_at = '2026-12-01T08:02:00.000Z' WHERE id IN (2, 5)");
        const cleared = await tableShows(page, "two alarms cleared", () => expected("alarms"));
        assert.deepEqual(cleared.map((cells) => cells[0]), ["4", "6"]);
        assert.match(await page.textContent("#meta") ?? "", /^2 rows · key id · seq 3 · /);
        assert.deepEqual(errors, []);
      })
    );
  },
);

browserTest(
  "in Chromium the live demo (its simulator, the demo's handles) is alive: tanks and real points change within a few seconds",
  async () => {
    const demo = startDemoPlant();
    const app = await startTestApp(
      { demo: { driver: "sqlite", path: ":memory:" } },
      { pollIntervalMs: 1000, handles: DEMO_HANDLES },
      demo.sources,
    );
    try {
      await withPage(async (page, errors) => {
        await page.goto(`${app.httpUrl}/?topic=demo/tanks/north`);
        await page.waitForSelector("#rows tbody tr");
        assert.deepEqual(await page.locator("#rows tbody tr").count(), 4);
        // Three of the eleven tanks move every second: one of north's four soon does.
        await page.waitForSelector("#rows tbody td.flash", { timeout: 15_000 });
        await screenshot(page, "dashboard-demo-tanks.png");

        await page.goto(`${app.httpUrl}/?topic=demo/real/2`);
        await page.waitForSelector("#rows tbody tr");
        assert.deepEqual(await page.locator("#rows tbody tr").count(), 15);
        assert.deepEqual(await page.locator("#rows tbody td.value svg.spark").count(), 15);
        // The simulator changes four readings a second somewhere in the plant: unit 2 holds half of it.
        await page.waitForSelector("#rows tbody td.value.flash", { timeout: 15_000 });
        await screenshot(page, "dashboard-demo.png");
        assert.deepEqual(errors, []);
      });
    } finally {
      await app.stop();
      demo.stop();
    }
  },
);
