/**
 * UTF-8 byte counts of strings without encoding them, for the sent-bytes counter: fan-out
 * knows a frame's length from its parts, and only the parts that may hold non-ASCII text are
 * scanned.
 */

/**
 * The number of bytes `text` takes in UTF-8 (a lone surrogate counts 3, as `TextEncoder`
 * writes U+FFFD for it).
 *
 * @example
 * ```ts
 * utf8Length("é€😀"); // 2 + 3 + 4 = 9
 * ```
 */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      bytes += 1;
      continue;
    }
    const next = text.charCodeAt(i + 1);
    if (c >= 0xd800 && c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) i++; // a pair: 4 bytes
    bytes += 2;
  }
  return bytes;
}
