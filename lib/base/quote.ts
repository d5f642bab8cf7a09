/**
 * The one way user input appears in an error message: input comes from people and attackers
 * alike, so a message must neither act on it (a newline forging a log line, terminal escapes,
 * bidi overrides) nor grow with it (a 1 MiB "CIDR").
 *
 * @module
 */

/** How many UTF-16 code units of the input a message shows at most. */
export const maxQuotedLength = 64;

/**
 * `text` in double quotes as printable ASCII and a valid JSON string literal (`\uXXXX` outside
 * printable ASCII), cut at {@link maxQuotedLength} with `…` after the closing quote. The flag
 * parser's messages use `goQuote` instead, rule text `iptablesQuote`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { quoteInput } from "./quote.ts";
 *
 * assert.equal(quoteInput("10.0.0.0/8"), '"10.0.0.0/8"');
 * assert.equal(quoteInput('a"b\nc\u202e'), '"a\\"b\\nc\\u202e"');
 * assert.equal(quoteInput("x".repeat(100)), `"${"x".repeat(64)}"…`);
 * ```
 */
export function quoteInput(text: string): string {
  let out = "";
  const shown = Math.min(text.length, maxQuotedLength);
  for (let i = 0; i < shown; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 || c === 0x5c) out += `\\${text[i]}`;
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x09) out += "\\t";
    else if (c >= 0x20 && c < 0x7f) out += text[i];
    else out += `\\u${c.toString(16).padStart(4, "0")}`;
  }
  return `"${out}"${text.length > maxQuotedLength ? "…" : ""}`;
}
