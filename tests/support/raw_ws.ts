/**
 * A WebSocket client on a bare TCP socket, for behaviour a browser-like client cannot show:
 * a client that stops reading (its frames pile up on the server), a peer that never answers
 * pings, a refused upgrade's HTTP status. Frames are read only while {@link RawClient.read} runs.
 */

/** A frame read from the server. */
export interface RawFrame {
  /** 1 text, 2 binary, 8 close, 9 ping, 10 pong. */
  readonly opcode: number;
  /** Text of a text frame, reason of a close frame. */
  readonly text: string;
  /** Close code of a close frame. */
  readonly code?: number;
}

/** The server's answer to the upgrade request. */
export interface UpgradeAnswer {
  /** HTTP status (101 when upgraded). */
  readonly status: number;
  /** Response headers, lower-case names. */
  readonly headers: Map<string, string>;
  /** Response body when not upgraded. */
  readonly body: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A client on a raw socket: nothing is read unless asked, pings are answered only if asked. */
export class RawClient {
  private buffer: Uint8Array = new Uint8Array(0);

  private constructor(readonly conn: Deno.TcpConn, readonly answer: UpgradeAnswer, rest: Uint8Array) {
    this.buffer = rest;
  }

  /**
   * Sends an upgrade request to `ws://host:port/path`; returns the client even when the server
   * refused (see {@link RawClient.answer}).
   */
  static async open(port: number, options: { path?: string; protocol?: string } = {}): Promise<RawClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    const lines = [
      `GET ${options.path ?? "/ws"} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Key: ${key}`,
      "Sec-WebSocket-Version: 13",
      ...(options.protocol ? [`Sec-WebSocket-Protocol: ${options.protocol}`] : []),
    ];
    await writeAll(conn, encoder.encode(lines.join("\r\n") + "\r\n\r\n"));
    let data: Uint8Array = new Uint8Array(0);
    let end = -1;
    while (end < 0) {
      const chunk = new Uint8Array(4096);
      const n = await conn.read(chunk);
      if (n === null) break;
      data = concat(data, chunk.subarray(0, n));
      end = indexOfCrlfCrlf(data);
    }
    if (end < 0) throw new Error("connection closed before the upgrade answer");
    const head = decoder.decode(data.subarray(0, end)).split("\r\n");
    const status = Number(head[0].split(" ")[1]);
    const headers = new Map<string, string>();
    for (const line of head.slice(1)) {
      const colon = line.indexOf(":");
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    let rest: Uint8Array = data.subarray(end + 4);
    let body = "";
    if (status !== 101) {
      const length = Number(headers.get("content-length") ?? 0);
      while (rest.length < length) {
        const chunk = new Uint8Array(4096);
        const n = await conn.read(chunk);
        if (n === null) break;
        rest = concat(rest, chunk.subarray(0, n));
      }
      body = decoder.decode(rest);
      rest = new Uint8Array(0);
    }
    return new RawClient(conn, { status, headers, body }, rest);
  }

  /** Sends one masked text frame (as every client must). */
  sendText(text: string): Promise<void> {
    return this.sendFrame(1, encoder.encode(text));
  }

  /** Sends one masked frame of any opcode. */
  async sendFrame(opcode: number, payload: Uint8Array): Promise<void> {
    await writeAll(this.conn, maskedFrame(opcode, payload));
  }

  /** Sends many text frames in one write, as a client flooding the server does: they arrive together. */
  async sendTexts(texts: readonly string[]): Promise<void> {
    const frames = texts.map((text) => maskedFrame(1, encoder.encode(text)));
    const all = new Uint8Array(frames.reduce((bytes, frame) => bytes + frame.length, 0));
    let offset = 0;
    for (const frame of frames) {
      all.set(frame, offset);
      offset += frame.length;
    }
    await writeAll(this.conn, all);
  }

  /**
   * Reads the next frame (a close frame included); `null` when the connection ended. Pings are
   * answered with a pong when `answerPings` is set, and skipped either way.
   */
  async read(timeoutMs = 5000, answerPings = true): Promise<RawFrame | null> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const frame = this.parse();
      if (frame) {
        if (frame.opcode === 9) {
          if (answerPings) await this.sendFrame(10, encoder.encode(frame.text));
          continue;
        }
        return frame;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame within ${timeoutMs} ms`);
      const chunk = new Uint8Array(1 << 16);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        this.conn.read(chunk).catch(() => null),
        new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), left)),
      ]);
      clearTimeout(timer);
      if (n === "timeout") throw new Error(`no frame within ${timeoutMs} ms`);
      if (n === null) return null;
      this.buffer = concat(this.buffer, chunk.subarray(0, n));
    }
  }

  /** Closes the TCP connection without a close handshake. */
  destroy(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }

  private parse(): RawFrame | null {
    const b = this.buffer;
    if (b.length < 2) return null;
    let length = b[1] & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (b.length < 4) return null;
      length = (b[2] << 8) | b[3];
      offset = 4;
    } else if (length === 127) {
      if (b.length < 10) return null;
      length = Number(new DataView(b.buffer, b.byteOffset + 2, 8).getBigUint64(0));
      offset = 10;
    }
    if (b.length < offset + length) return null;
    const opcode = b[0] & 0x0f;
    const payload = b.subarray(offset, offset + length);
    this.buffer = b.slice(offset + length);
    if (opcode === 8) {
      const code = payload.length >= 2 ? (payload[0] << 8) | payload[1] : undefined;
      return { opcode, code, text: decoder.decode(payload.subarray(2)) };
    }
    return { opcode, text: decoder.decode(payload) };
  }
}

/** One frame as a client sends it: FIN set, payload masked. */
function maskedFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const mask = crypto.getRandomValues(new Uint8Array(4));
  const header = payload.length < 126
    ? [0x80 | opcode, 0x80 | payload.length]
    : payload.length < 65536
    ? [0x80 | opcode, 0x80 | 126, payload.length >> 8, payload.length & 255]
    : [0x80 | opcode, 0x80 | 127, 0, 0, 0, 0, ...[24, 16, 8, 0].map((s) => (payload.length >>> s) & 255)];
  const masked = payload.map((b, i) => b ^ mask[i % 4]);
  return concat(new Uint8Array([...header, ...mask]), masked);
}

async function writeAll(conn: Deno.TcpConn, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.length) written += await conn.write(data.subarray(written));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function indexOfCrlfCrlf(data: Uint8Array): number {
  for (let i = 0; i + 3 < data.length; i++) {
    if (data[i] === 13 && data[i + 1] === 10 && data[i + 2] === 13 && data[i + 3] === 10) return i;
  }
  return -1;
}
