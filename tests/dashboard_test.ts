/**
 * The dashboard: its embedded files are served as they are in `client/`, and a real headless
 * Chromium (Debian's `chromium`, driven by `playwright-core`) loads it from a running gatecast,
 * sees the snapshot, sees a value change after an UPDATE, sees a stale banner, and saves
 * screenshots under `tests/artifacts/`.
 *
 * Without /usr/bin/chromium the browser tests are ignored, unless GATECAST_REQUIRE_BROWSER=1
 * (as `.ci/run` sets), where they fail instead.
 */

import assert from "node:assert/strict";
import { chromium, type Page } from "playwright-core";
import { DASHBOARD_ASSETS } from "../lib/dashboard.ts";
import { startDemoPlant } from "../lib/demo_plant.ts";
import { createTestDatabase, type TestDatabase } from "./support/mysql.ts";
import { startTestApp, withTestApp } from "./support/app.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = new URL("./artifacts/", import.meta.url);
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
        await Deno.readTextFile(new URL(`../client/${file}`, import.meta.url)),
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

async function screenshot(page: Page, name: string): Promise<void> {
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  const path = new URL(name, ARTIFACTS);
  await page.screenshot({ path: path.pathname, fullPage: true });
  assert.ok(Deno.statSync(path).size > 10_000, `${name} looks empty`);
}

/** The value cell text of each row, keyed by "address code". */
async function valueCells(page: Page): Promise<Record<string, string>> {
  const rows = await rowTexts(page);
  return Object.fromEntries(rows.map((cells) => [`${cells[1]} ${cells[2]}`, cells[3]]));
}

/** The text of every cell, row by row. */
function rowTexts(page: Page, selector = "#points tbody tr"): Promise<string[][]> {
  return page.locator(selector).evaluateAll(
    (rows) => rows.map((row) => [...row.children].map((td) => td.textContent ?? "")),
  );
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
  "in Chromium the dashboard shows the snapshot, then an UPDATE's new value, flashing, and a stale banner",
  async () => {
    const db = await plant();
    await withTestApp(db, { plant1: db.settings }, (app) =>
      withPage(async (page, errors) => {
        await page.goto(`${app.httpUrl}/?topic=plant1/real/12`);
        await page.waitForSelector("#points tbody tr");
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
        await page.locator('#points tbody tr[data-index="1"] td.value', { hasText: "12.25" }).waitFor();
        const flashing = (await rowTexts(page, "#points tbody tr.flash")).map((cells) =>
          `${cells[1]} ${cells[2]}`
        );
        assert.deepEqual(flashing, ["GW1 ia"]);
        assert.notDeepEqual(await page.textContent('#points tbody tr[data-index="1"] td.changed-at'), "—");
        assert.deepEqual(await page.textContent('#points tbody tr[data-index="0"] td.changed-at'), "—");
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
        await page.waitForSelector("#points tbody tr");
        assert.deepEqual(new URL(page.url()).search, "?topic=plant2%2Freal%2F12");
        assert.deepEqual((await valueCells(page))["GW2 ua"], "231");
        assert.deepEqual(errors, []);
      }),
  );
});

browserTest(
  "in Chromium the demo plant's dashboard is alive: values change within a few seconds",
  async () => {
    const demo = startDemoPlant();
    const app = await startTestApp(
      { demo: { driver: "sqlite", path: ":memory:" } },
      { pollIntervalMs: 1000 },
      demo.sources,
    );
    try {
      await withPage(async (page, errors) => {
        await page.goto(`${app.httpUrl}/?topic=demo/real/2`);
        await page.waitForSelector("#points tbody tr");
        assert.deepEqual(await page.locator("#points tbody tr").count(), 15);
        // The simulator changes four readings a second somewhere in the plant: unit 2 holds half of it.
        await page.waitForSelector("#points tbody tr.flash", { timeout: 15_000 });
        await screenshot(page, "dashboard-demo.png");
        assert.deepEqual(errors, []);
      });
    } finally {
      await app.stop();
      demo.stop();
    }
  },
);
