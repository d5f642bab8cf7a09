/**
 * The one way user input (from people and attackers alike) appears in a message: it must neither
 * act (a newline forging a log line, terminal escapes, bidi overrides) nor grow (a 1 MiB "CIDR").
 *
 * @module
 */

/** How many UTF-16 code units of the input a message shows at most. */
export const maxQuotedLength = 64;

/**
 * `text` double-quoted as printable ASCII and a valid JSON string (`\uXXXX` for the rest), cut
 * at {@link maxQuotedLength}, `…` after the quote. Flags use `goQuote`, rule text `iptablesQuote`.
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
  const shown = text.slice(0, maxQuotedLength).replace(/["\\]|[^ -~]/g, (c) => {
    // JSON's own escapes for a quote, a backslash, \n, \r and \t; \uXXXX for every other.
    if (/[\n\r\t"\\]/.test(c)) return JSON.stringify(c).slice(1, -1);
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
  return `"${shown}"${text.length > maxQuotedLength ? "…" : ""}`;
}
