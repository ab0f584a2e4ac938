/**
 * TLS: `tls` in the config (or `--cert`/`--key`) serves `https://` and `wss://`. The test makes
 * a throw-away CA and a leaf certificate with openssl (Deno refuses a CA certificate as a
 * server's, so the leaf has `basicConstraints=critical,CA:FALSE` and a subjectAltName).
 */

import assert from "node:assert/strict";
import { parseFlags } from "../../lib/config/cli.ts";
import { ConfigError } from "../../lib/config/config.ts";
import { startTestApp } from "../support/app.ts";

async function openssl(cwd: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" }).output();
  if (!out.success) throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
}

/** A CA and a leaf for localhost/127.0.0.1 signed by it, in a temporary directory. */
async function makeCertificates(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "gatecast-tls-" });
  await openssl(
    dir,
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=gatecast test CA",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
  );
  await Deno.writeTextFile(
    `${dir}/leaf.ext`,
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
  );
  await openssl(
    dir,
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-subj",
    "/CN=localhost",
    "-keyout",
    "leaf.key",
    "-out",
    "leaf.csr",
  );
  await openssl(
    dir,
    "x509",
    "-req",
    "-in",
    "leaf.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    "leaf.ext",
    "-out",
    "leaf.pem",
  );
  return dir;
}

Deno.test("with tls configured the server answers https:// and wss:// with its certificate", async () => {
  const dir = await makeCertificates();
  const app = await startTestApp({}, { tls: { certFile: `${dir}/leaf.pem`, keyFile: `${dir}/leaf.key` } });
  const client = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(`${dir}/ca.pem`)] });
  try {
    assert.equal(app.tls, true);
    const health = await fetch(`https://localhost:${app.port}/healthz`, { client });
    assert.equal(health.status, 200);
    assert.equal((await health.json()).status, "ok");
    // A WebSocket client trusting the CA, in its own process (--cert), speaks v1 over wss.
    const script = `const ws = new WebSocket("wss://localhost:${app.port}/ws", "gatecast.v1");
      ws.onopen = () => ws.send(JSON.stringify({ type: "ping", id: 42 }));
      ws.onmessage = (e) => { console.log(e.data); ws.close(); };
      ws.onerror = () => { console.log("error"); Deno.exit(1); };`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--cert", `${dir}/ca.pem`, script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(new TextDecoder().decode(out.stdout).trim(), '{"type":"pong","id":42}');
    // Plain http to the TLS port gets no answer.
    await assert.rejects(fetch(`http://127.0.0.1:${app.port}/healthz`));
  } finally {
    client.close();
    await app.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an unreadable certificate file stops the start naming it", async () => {
  await assert.rejects(
    startTestApp({}, { tls: { certFile: "/nonexistent/cert.pem", keyFile: "/nonexistent/key.pem" } }),
    /^Error: cannot read the TLS certificate \/nonexistent\/cert.pem/,
  );
});

Deno.test("--cert and --key come together", () => {
  assert.deepEqual(
    [parseFlags(["--config", "g.json", "--cert", "c.pem", "--key", "k.pem"])].map((f) => [f.cert, f.key]),
    [["c.pem", "k.pem"]],
  );
  assert.throws(
    () => parseFlags(["--config", "g.json", "--cert", "c.pem"]),
    new ConfigError("--key", "is required with --cert"),
  );
});
