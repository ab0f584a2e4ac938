/**
 * A safe reader for Python literals, as the seed's clients wrote their subscription
 * (`{'unit_id': 12, 'handle': 'real', ...}`). The seed evaluated it as Python code; this only reads
 * dicts, lists, tuples, strings, numbers, True, False and None, and never runs anything.
 */

/** Raised when the text is not a Python literal; the message gives the offset at fault. */
export class PythonLiteralError extends SyntaxError {
  override name = "PythonLiteralError";
}

/** The deepest nesting accepted, so that hostile input cannot exhaust the stack. */
export const MAX_DEPTH = 32;

/**
 * Parses one Python literal into the equivalent JSON value (tuples become arrays).
 *
 * @example
 * ```ts
 * parsePythonLiteral("{'unit_id': 12, 'ok': True}"); // { unit_id: 12, ok: true }
 * ```
 * @throws {PythonLiteralError} on anything else.
 */
export function parsePythonLiteral(text: string): unknown {
  const reader = new Reader(text);
  const value = reader.value(0);
  reader.skipSpace();
  if (reader.pos !== text.length) reader.fail("unexpected text after the literal");
  return value;
}

class Reader {
  pos = 0;
  constructor(readonly text: string) {}

  fail(what: string): never {
    throw new PythonLiteralError(`${what} at offset ${this.pos}`);
  }

  skipSpace(): void {
    while (this.pos < this.text.length && " \t\r\n".includes(this.text[this.pos])) this.pos++;
  }

  value(depth: number): unknown {
    if (depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH}`);
    this.skipSpace();
    const c = this.text[this.pos];
    if (c === "{") return this.dict(depth);
    if (c === "[") return this.sequence("]", depth);
    if (c === "(") return this.sequence(")", depth);
    if (c === "'" || c === '"') return this.string();
    if (c !== undefined && /[-+0-9.]/.test(c)) return this.number();
    for (const [word, value] of [["True", true], ["False", false], ["None", null]] as const) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return value;
      }
    }
    return this.fail(c === undefined ? "unexpected end of text" : `unexpected ${JSON.stringify(c)}`);
  }

  dict(depth: number): Record<string, unknown> {
    const out: Record<string, unknown> = Object.create(null);
    this.pos++; // {
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] === "}") {
        this.pos++;
        return { ...out };
      }
      const key = this.value(depth + 1);
      if (typeof key !== "string" && typeof key !== "number") {
        this.fail("dict keys must be strings or numbers");
      }
      this.skipSpace();
      if (this.text[this.pos] !== ":") this.fail("expected ':'");
      this.pos++;
      out[String(key)] = this.value(depth + 1);
      if (!this.separator("}")) return { ...out };
    }
  }

  sequence(close: string, depth: number): unknown[] {
    const out: unknown[] = [];
    this.pos++;
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] === close) {
        this.pos++;
        return out;
      }
      out.push(this.value(depth + 1));
      if (!this.separator(close)) return out;
    }
  }

  /** Reads `,` (true: more may follow) or the closing bracket (false: done). */
  separator(close: string): boolean {
    this.skipSpace();
    const c = this.text[this.pos];
    if (c === ",") {
      this.pos++;
      return true;
    }
    if (c === close) {
      this.pos++;
      return false;
    }
    return this.fail(`expected ',' or '${close}'`);
  }

  string(): string {
    const quote = this.text[this.pos++];
    let out = "";
    for (;;) {
      const c = this.text[this.pos++];
      if (c === undefined || c === "\n") this.fail("unterminated string");
      if (c === quote) return out;
      if (c !== "\\") {
        out += c;
        continue;
      }
      const e = this.text[this.pos++];
      const simple: Record<string, string> = {
        "\\": "\\",
        "'": "'",
        '"': '"',
        n: "\n",
        t: "\t",
        r: "\r",
        "0": "\0",
        b: "\b",
        f: "\f",
      };
      if (e in simple) out += simple[e];
      else if (e === "x") out += this.hex(2);
      else if (e === "u") out += this.hex(4);
      else if (e === "U") out += this.hex(8);
      else this.fail(`unknown escape \\${e ?? ""}`);
    }
  }

  hex(length: number): string {
    const digits = this.text.slice(this.pos, this.pos + length);
    if (!/^[0-9a-fA-F]+$/.test(digits) || digits.length !== length) this.fail("bad escape");
    this.pos += length;
    const code = parseInt(digits, 16);
    if (code > 0x10ffff) this.fail("escape beyond U+10FFFF");
    return String.fromCodePoint(code);
  }

  number(): number {
    const match = /^[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)/.exec(
      this.text.slice(this.pos, this.pos + 400),
    );
    if (!match) return this.fail("bad number");
    this.pos += match[0].length;
    const n = Number(match[0]);
    if (!Number.isFinite(n)) this.fail("number out of range");
    return n;
  }
}
