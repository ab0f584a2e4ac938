/**
 * The live dashboard's files, embedded in the program: `GET /` and the files it loads, including
 * the client SDK. They are imported as text, so `deno run`, the bundle and the compiled binary
 * all carry them and nothing is read from disk at run time.
 */

import html from "../../client/dashboard.html" with { type: "text" };
import css from "../../client/dashboard.css" with { type: "text" };
import script from "../../client/dashboard.js" with { type: "text" };
import sdk from "../../client/gatecast_client.js" with { type: "text" };

/** One embedded file. */
export interface Asset {
  /** The `content-type` it is served with. */
  readonly type: string;
  /** Its text. */
  readonly body: string;
}

const JS = "text/javascript; charset=utf-8";

/** The embedded files by request path. */
export const DASHBOARD_ASSETS: ReadonlyMap<string, Asset> = new Map([
  ["/", { type: "text/html; charset=utf-8", body: html }],
  ["/dashboard.css", { type: "text/css; charset=utf-8", body: css }],
  ["/dashboard.js", { type: JS, body: script }],
  ["/gatecast_client.js", { type: JS, body: sdk }],
]);

/**
 * The response for a dashboard path, or `undefined` when the path is not one.
 *
 * @example
 * ```ts
 * dashboardResponse("/gatecast_client.js")?.headers.get("content-type"); // "text/javascript; charset=utf-8"
 * ```
 */
export function dashboardResponse(pathname: string): Response | undefined {
  const asset = DASHBOARD_ASSETS.get(pathname);
  if (!asset) return undefined;
  // no-cache: a browser revalidates, so an upgraded server serves its own dashboard at once.
  return new Response(asset.body, {
    headers: { "content-type": asset.type, "cache-control": "no-cache", "x-content-type-options": "nosniff" },
  });
}
