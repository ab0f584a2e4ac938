import assert from "node:assert/strict";
import { exportJWK, exportSPKI, generateKeyPair } from "jose";
import { Authenticator, AuthError, bearerToken, requestToken, sha256Hex } from "../../lib/net/auth.ts";
import { parseConfig } from "../../lib/config/config.ts";
import { signToken, TEST_SECRET } from "../support/tokens.ts";

function authOf(auth: Record<string, unknown>) {
  return parseConfig({ databases: {}, auth }, () => undefined).auth;
}

Deno.test("an HS256 token yields its subject, topics and expiry", async () => {
  const auth = await Authenticator.create(authOf({ mode: "token", jwt: { secret: TEST_SECRET } }));
  const exp = Math.floor(Date.now() / 1000) + 600;
  const principal = await auth.verify(await signToken({ sub: "alice", exp, topics: ["plant1/real/*"] }));
  assert.equal(principal.subject, "alice");
  assert.equal(principal.expiresAt, exp * 1000);
  assert.deepEqual(principal.topics.map((t) => t.text), ["plant1/real/*"]);
});

Deno.test("the topics claim name is configurable", async () => {
  const auth = await Authenticator.create(
    authOf({ mode: "token", jwt: { secret: TEST_SECRET, topicsClaim: "gc_topics" } }),
  );
  const principal = await auth.verify(await signToken({ gc_topics: ["*/real/12"] }));
  assert.deepEqual(principal.topics.map((t) => t.text), ["*/real/12"]);
  await assert.rejects(
    auth.verify(await signToken({ topics: ["*/real/12"] })),
    /claim "gc_topics": expected an array/,
  );
});

Deno.test("expired, wrongly signed and claim-less tokens are refused with the reason", async () => {
  const auth = await Authenticator.create(authOf({ mode: "token", jwt: { secret: TEST_SECRET } }));
  const past = Math.floor(Date.now() / 1000) - 10;
  await assert.rejects(
    auth.verify(await signToken({ exp: past, topics: [] })),
    new AuthError("token expired"),
  );
  const other = new TextEncoder().encode("another-secret-of-at-least-32-bytes!!");
  await assert.rejects(auth.verify(await signToken({ topics: [] }, other)), new AuthError("bad signature"));
  await assert.rejects(
    auth.verify(await signToken({ topics: ["plant1/real/12/3"] })),
    /claim "topics": \[0\]/,
  );
  await assert.rejects(auth.verify(await signToken({ sub: undefined, topics: [] })), /claim "sub"/);
});

Deno.test("an RS256 token verifies with an inline PEM public key; HS256 is then refused", async () => {
  const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
  const auth = await Authenticator.create(
    authOf({ mode: "token", jwt: { publicKey: await exportSPKI(publicKey) } }),
  );
  const principal = await auth.verify(
    await signToken({ sub: "rsa", topics: ["*/*/*"] }, privateKey, "RS256"),
  );
  assert.equal(principal.subject, "rsa");
  // The classic confusion: an HS256 token "signed" with the public key text must not pass.
  const pem = new TextEncoder().encode(await exportSPKI(publicKey));
  await assert.rejects(
    auth.verify(await signToken({ topics: ["*/*/*"] }, pem)),
    /algorithm not accepted|no key/,
  );
});

Deno.test("an ES256 token verifies with a key from a JWKS file, chosen by kid", async () => {
  const one = await generateKeyPair("ES256", { extractable: true });
  const two = await generateKeyPair("ES256", { extractable: true });
  const dir = await Deno.makeTempDir();
  const file = `${dir}/jwks.json`;
  const jwk = async (key: Parameters<typeof exportJWK>[0], kid: string) => ({
    ...(await exportJWK(key)),
    kid,
    alg: "ES256",
    use: "sig",
  });
  await Deno.writeTextFile(
    file,
    JSON.stringify({ keys: [await jwk(one.publicKey, "k1"), await jwk(two.publicKey, "k2")] }),
  );
  try {
    const auth = await Authenticator.create(authOf({ mode: "token", jwt: { jwksFile: file } }));
    const token = await signToken({ sub: "ec", topics: ["plant1/*/*"] }, two.privateKey, "ES256", "k2");
    assert.equal((await auth.verify(token)).subject, "ec");
    const wrongKid = await signToken({ topics: [] }, one.privateKey, "ES256", "k2");
    await assert.rejects(auth.verify(wrongKid), new AuthError("bad signature"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a JWKS file that cannot be read stops the start naming the key", async () => {
  await assert.rejects(
    Authenticator.create(authOf({ mode: "token", jwt: { jwksFile: "/nonexistent/jwks.json" } })),
    /^Error: auth.jwt.jwksFile: cannot read \/nonexistent\/jwks.json/,
  );
});

Deno.test("an API key is found by its SHA-256 and grants its topics", async () => {
  const key = "k_live_8f1d2c3b4a5e6f7081928374655647382910";
  const auth = await Authenticator.create(
    authOf({
      mode: "token",
      apiKeys: [{ name: "wallboard", sha256: await sha256Hex(key), topics: ["plant1/real/12"] }],
    }),
  );
  const principal = await auth.verify(key);
  assert.equal(principal.subject, "apikey:wallboard");
  assert.equal(principal.expiresAt, undefined);
  await assert.rejects(auth.verify(key + "x"), new AuthError("unknown API key or malformed token"));
  await assert.rejects(auth.verify("x".repeat(9000)), /1 to 8192 characters/);
});

Deno.test("sha256Hex gives the same digest as sha256sum", async () => {
  assert.equal(await sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
});

Deno.test("the upgrade token comes from Authorization: Bearer, else from ?token=", () => {
  const url = new URL("http://h/ws?token=fromquery");
  const bearer = new Request(url, { headers: { authorization: "Bearer fromheader" } });
  assert.equal(requestToken(bearer, url), "fromheader");
  assert.equal(requestToken(new Request(url), url), "fromquery");
  const plain = new URL("http://h/ws");
  assert.equal(
    requestToken(new Request(plain, { headers: { authorization: "Basic abc" } }), plain),
    undefined,
  );
});

Deno.test("a JWT grants notify by its notify claim; without the claim it grants none", async () => {
  const auth = await Authenticator.create(authOf({ mode: "token", jwt: { secret: TEST_SECRET } }));
  const writer = await auth.verify(await signToken({ topics: [], notify: ["plant1/tanks/*"] }));
  assert.deepEqual(writer.notify.map((p) => p.text), ["plant1/tanks/*"]);
  assert.deepEqual((await auth.verify(await signToken({ topics: ["*/*/*"] }))).notify, []);
  await assert.rejects(
    auth.verify(await signToken({ topics: [], notify: "plant1/tanks/*" })),
    new AuthError('claim "notify": expected an array of topic patterns, got "plant1/tanks/*"'),
  );
  await assert.rejects(
    auth.verify(await signToken({ topics: [], notify: ["plant1/tanks/north/1"] })),
    /^AuthError: claim "notify": \[0\]: topic pattern "plant1\/tanks\/north\/1" must have three parts/,
  );
});

Deno.test("the notify claim name is configurable", async () => {
  const auth = await Authenticator.create(
    authOf({ mode: "token", jwt: { secret: TEST_SECRET, notifyClaim: "gc_notify" } }),
  );
  const principal = await auth.verify(await signToken({ topics: [], gc_notify: ["*/alarms"], notify: 1 }));
  assert.deepEqual(principal.notify.map((p) => p.text), ["*/alarms"]);
});

Deno.test("an API key grants notify by its own notify list, none without one", async () => {
  const writer = "k_writer_0a1b2c3d4e5f60718293a4b5c6d7e8f9";
  const reader = "k_reader_0a1b2c3d4e5f60718293a4b5c6d7e8f9";
  const auth = await Authenticator.create(
    authOf({
      mode: "token",
      apiKeys: [
        { name: "writer", sha256: await sha256Hex(writer), topics: [], notify: ["plant1/alarms"] },
        { name: "reader", sha256: await sha256Hex(reader), topics: ["*/*/*"] },
      ],
    }),
  );
  assert.deepEqual((await auth.verify(writer)).notify.map((p) => p.text), ["plant1/alarms"]);
  assert.deepEqual((await auth.verify(reader)).notify, []);
});

Deno.test("a notify token comes from Authorization: Bearer only", () => {
  const url = new URL("http://h/notify?token=fromquery");
  assert.equal(
    bearerToken(new Request(url, { headers: { authorization: "Bearer fromheader" } })),
    "fromheader",
  );
  assert.equal(bearerToken(new Request(url)), undefined);
});
