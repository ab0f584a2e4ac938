import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../../lib/config/config.ts";

const parse = (extra: Record<string, unknown>, env: Record<string, string> = {}) =>
  parseConfig({ databases: {}, auth: { mode: "none" }, ...extra }, (name) => env[name]);

function fails(extra: Record<string, unknown>, message: string) {
  assert.throws(() => parse(extra), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.equal(error.message, message);
    return true;
  });
}

Deno.test("a config without auth is refused, saying how to turn auth on or off", () => {
  assert.throws(
    () => parseConfig({ databases: {} }, () => undefined),
    new ConfigError(
      "auth",
      'is required: {"mode":"token", "jwt":{...}, "apiKeys":[...]} to require tokens, or {"mode":"none"} to let anyone read every topic',
    ),
  );
});

Deno.test("security settings have safe defaults", () => {
  const config = parse({});
  assert.deepEqual(config.auth, { mode: "none", timeoutMs: 10_000, apiKeys: [] });
  // Without tokens, only this machine and its trusted proxies may ask for polls (POST /notify).
  assert.equal(config.notifyFrom, "local");
  assert.deepEqual(
    [
      config.maxConnections,
      config.maxConnectionsPerAddress,
      config.maxFramesPerSecond,
      config.firstFrameTimeoutMs,
    ],
    [10_000, 100, 100, 10_000],
  );
  assert.deepEqual([config.allowedOrigins, config.trustedProxies, config.legacyAllow, config.tls], [
    [],
    [],
    [],
    undefined,
  ]);
});

Deno.test("token auth takes a secret from the environment and API keys with topic patterns", () => {
  const sha = "a".repeat(64);
  const config = parse({
    auth: {
      mode: "token",
      jwt: { secretEnv: "GC_SECRET", issuer: "idp" },
      apiKeys: [{ name: "wall", sha256: sha, topics: ["plant1/real/*"] }],
    },
    legacy: { allow: ["plant1/real/12"] },
  }, { GC_SECRET: "s".repeat(32) });
  assert.equal(config.auth.jwt?.secret, "s".repeat(32));
  assert.equal(config.auth.jwt?.topicsClaim, "topics");
  assert.equal(config.auth.jwt?.notifyClaim, "notify");
  assert.deepEqual(config.auth.apiKeys[0].notify, []);
  assert.equal(config.auth.jwt?.issuer, "idp");
  assert.deepEqual(config.auth.apiKeys[0].topics[0], {
    db: "plant1",
    handle: "real",
    unit: undefined,
    text: "plant1/real/*",
  });
  assert.equal(config.legacyAllow[0].unit, "12");
});

Deno.test("bad security settings name their path", () => {
  fails({ auth: { mode: "open" } }, 'auth.mode: expected "token" or "none", got "open"');
  fails(
    { auth: { mode: "token" } },
    'auth: mode "token" needs "jwt" settings or at least one entry in "apiKeys"',
  );
  fails({ auth: { mode: "none", apiKeys: [] } }, 'auth.apiKeys: is not used when auth.mode is "none"');
  fails(
    { auth: { mode: "token", jwt: { secret: "short" } } },
    "auth.jwt.secret: an HS256 secret must be at least 32 bytes",
  );
  fails(
    { auth: { mode: "token", jwt: {} } },
    "auth.jwt: needs a key: secret, secretEnv, publicKey or jwksFile",
  );
  fails(
    { auth: { mode: "token", jwt: { publicKey: "ssh-rsa AAAA" } } },
    "auth.jwt.publicKey: expected a PEM public key (-----BEGIN PUBLIC KEY-----)",
  );
  fails(
    { auth: { mode: "token", apiKeys: [{ name: "a", sha256: "XYZ", topics: [] }] } },
    "auth.apiKeys[0].sha256: expected the key's SHA-256 as 64 lower-case hex digits (printf %s KEY | sha256sum)",
  );
  fails(
    {
      auth: { mode: "token", apiKeys: [{ name: "a", sha256: "a".repeat(64), topics: ["*/*/*", "x/y/z/w"] }] },
    },
    'auth.apiKeys[0].topics[1]: topic pattern "x/y/z/w" must have three parts <db>/<handle>/<unit_id>, ' +
      "each a value or * (two, <db>/<handle>, for handles without units)",
  );
  fails(
    { legacy: { allow: "plant1/real/*" } },
    'legacy.allow: expected an array of topic patterns, got "plant1/real/*"',
  );
  fails(
    { allowedOrigins: ["dash.example.com"] },
    'allowedOrigins[0]: expected an origin like "https://dash.example.com" or "*", got "dash.example.com"',
  );
  fails(
    { trustedProxies: ["10.0.0.0/33"] },
    'trustedProxies[0]: expected an IP address or CIDR range like "10.0.0.0/8", got "10.0.0.0/33"',
  );
  fails({ tls: { certFile: "c.pem" } }, "tls.keyFile: expected a non-empty string, got undefined");
  fails(
    {
      auth: {
        mode: "token",
        apiKeys: [{ name: "a", sha256: "a".repeat(64), topics: [], notify: ["x/y/z/w"] }],
      },
    },
    'auth.apiKeys[0].notify[0]: topic pattern "x/y/z/w" must have three parts <db>/<handle>/<unit_id>, ' +
      "each a value or * (two, <db>/<handle>, for handles without units)",
  );
  fails(
    { auth: { mode: "token", jwt: { secret: "s".repeat(32), topicsClaim: "notify" } } },
    'auth.jwt.notifyClaim: must differ from topicsClaim ("notify")',
  );
  fails(
    { auth: { mode: "token", jwt: { secret: "s".repeat(32) } }, notifyFrom: "local" },
    'notifyFrom: is used only when auth.mode is "none"; with tokens, a token\'s notify patterns decide who may notify',
  );
  fails({ maxFramesPerSecond: 0 }, "maxFramesPerSecond: expected an integer 1-1000000, got 0");
  fails({ firstFrameTimeoutMs: 10 }, "firstFrameTimeoutMs: expected an integer 100-600000, got 10");
});
