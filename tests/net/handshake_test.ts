import assert from "node:assert/strict";
import { clientAddress, originAllowed, ProxySet } from "../../lib/net/handshake.ts";

Deno.test("a request without Origin (not a browser) is allowed", () => {
  assert.equal(originAllowed(null, "gatecast:4053", []), true);
});

Deno.test("with no allowlist only the same origin is allowed", () => {
  assert.equal(originAllowed("http://gatecast:4053", "gatecast:4053", []), true);
  assert.equal(originAllowed("https://evil.example", "gatecast:4053", []), false);
  assert.equal(originAllowed("null", "gatecast:4053", []), false);
});

Deno.test("an allowlist admits exactly its origins, and * admits every origin", () => {
  const allowed = ["https://dash.example.com"];
  assert.equal(originAllowed("https://dash.example.com", "gatecast:4053", allowed), true);
  assert.equal(originAllowed("https://dash.example.com:8443", "gatecast:4053", allowed), false);
  assert.equal(originAllowed("http://gatecast:4053", "gatecast:4053", allowed), false);
  assert.equal(originAllowed("https://anything.example", "h", ["*"]), true);
});

Deno.test("X-Forwarded-For from an untrusted peer is ignored", () => {
  assert.equal(clientAddress("198.51.100.9", "203.0.113.7", new ProxySet([])), "198.51.100.9");
  assert.equal(clientAddress("198.51.100.9", "203.0.113.7", new ProxySet(["10.0.0.0/8"])), "198.51.100.9");
});

Deno.test("behind trusted proxies the client is the rightmost untrusted hop", () => {
  const proxies = new ProxySet(["10.0.0.0/8", "::1"]);
  assert.equal(clientAddress("10.0.0.2", "203.0.113.7", proxies), "203.0.113.7");
  // A client can put anything on the left; only what the proxies appended counts.
  assert.equal(clientAddress("10.0.0.2", "1.1.1.1, 203.0.113.7, 10.0.0.3", proxies), "203.0.113.7");
  assert.equal(clientAddress("::1", "2001:db8::5", proxies), "2001:db8::5");
  assert.equal(clientAddress("10.0.0.2", "10.0.0.5, 10.0.0.3", proxies), "10.0.0.5");
});

Deno.test("a malformed X-Forwarded-For hop makes the proxy itself the client", () => {
  const proxies = new ProxySet(["10.0.0.0/8"]);
  assert.equal(clientAddress("10.0.0.2", "203.0.113.7, not-an-ip", proxies), "10.0.0.2");
  assert.equal(clientAddress("10.0.0.2", "", proxies), "10.0.0.2");
});
