/**
 * Decisions taken on a WebSocket upgrade request before any frame: is the browser origin
 * allowed, and which address is the client's (the peer's, or `X-Forwarded-For` when the peer
 * is a trusted proxy). Pure functions of the request, no I/O.
 */

import { BlockList, isIP } from "node:net";

/**
 * True when a request's `Origin` may connect. No `Origin` (not a browser) is allowed; with an
 * empty allowlist only the same origin (the `Host` header) is; `*` allows every origin.
 *
 * @example
 * ```ts
 * originAllowed("https://dash.example.com", "gatecast:4053", ["https://dash.example.com"]); // true
 * ```
 */
export function originAllowed(
  origin: string | null,
  host: string | null,
  allowed: readonly string[],
): boolean {
  if (origin === null) return true;
  if (allowed.includes("*") || allowed.includes(origin)) return true;
  if (allowed.length > 0) return false;
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}

/** A set of trusted proxy addresses and ranges (`10.0.0.0/8`, `::1`). */
export class ProxySet {
  private readonly list = new BlockList();
  /** Whether any range is configured. */
  readonly empty: boolean;

  /** @param ranges addresses or CIDR ranges, validated by the config */
  constructor(ranges: readonly string[]) {
    this.empty = ranges.length === 0;
    for (const range of ranges) {
      const [address, bits] = range.split("/");
      const type = isIP(address) === 4 ? "ipv4" : "ipv6";
      if (bits === undefined) this.list.addAddress(address, type);
      else this.list.addSubnet(address, Number(bits), type);
    }
  }

  /** True when `address` is a trusted proxy. */
  has(address: string): boolean {
    const family = isIP(address);
    if (family === 0 || this.empty) return false;
    return this.list.check(address, family === 4 ? "ipv4" : "ipv6");
  }
}

/**
 * The client's real address. When the peer is a trusted proxy, `X-Forwarded-For` is read from
 * the right, skipping trusted proxies; the first address that is not one is the client. A
 * header from an untrusted peer is ignored: anyone can write one.
 *
 * @example
 * ```ts
 * clientAddress("10.0.0.2", "203.0.113.7, 10.0.0.3", new ProxySet(["10.0.0.0/8"])); // "203.0.113.7"
 * ```
 */
export function clientAddress(peer: string, forwardedFor: string | null, proxies: ProxySet): string {
  if (!forwardedFor || !proxies.has(peer)) return peer;
  const hops = forwardedFor.split(",").map((hop) => hop.trim());
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i];
    if (isIP(hop) === 0) return peer; // a malformed entry: trust nothing beyond the proxy
    if (!proxies.has(hop)) return hop;
  }
  return hops[0] ?? peer;
}
