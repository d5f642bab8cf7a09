/**
 * Go's strconv and fmt's %q as the `flag` package uses them: values and messages byte for byte.
 *
 * @module
 */

import { err, ok, type Result } from "./result.ts";

// strconv.Quote's named escapes; every other escaped character is \x or \u by its code.
const goEscapes: Readonly<Record<string, string>> = {
  "\x07": "\\a",
  "\b": "\\b",
  "\f": "\\f",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
  "\v": "\\v",
  "\\": "\\\\",
  '"': '\\"',
};

/**
 * Go's `fmt` `%q`. Unbounded, as Go's is: other messages show user input with `quoteInput`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { goQuote } from "./go_strconv.ts";
 *
 * assert.equal(goQuote("tab\there"), String.raw`"tab\there"`);
 * ```
 */
export function goQuote(s: string): string {
  // Escapes all but printable ASCII (less `"` and `\`) and U+00A0 on: controls, lone surrogates.
  const quoted = s.replace(/[^ !#-[\]-~\xa0-\ud7ff\ue000-\u{10ffff}]/gu, (ch) => {
    const escape = goEscapes[ch];
    if (escape !== undefined) return escape;
    const code = ch.charCodeAt(0);
    const hex = code.toString(16);
    return code <= 0x7f ? `\\x${hex.padStart(2, "0")}` : `\\u${hex.padStart(4, "0")}`;
  });
  return `"${quoted}"`;
}

/** `strconv.ParseBool`: the twelve spellings Go accepts, nothing else. */
export function parseGoBool(s: string): Result<boolean, string> {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(s)) return ok(true);
  if (["0", "f", "F", "FALSE", "false", "False"].includes(s)) return ok(false);
  return err(PARSE_ERROR);
}

// strconv's ErrSyntax and ErrRange, as Go's flag package prints them.
const PARSE_ERROR = "parse error";
const RANGE_ERROR = "value out of range";

const UINT64_MAX = (1n << 64n) - 1n;
const prefixBases = new Map([["b", 2], ["o", 8], ["x", 16]]);

/** strconv.ParseUint(s, 0, 64), including which error wins when both could apply. */
function parseGoUint(s: string): Result<bigint, string> {
  if (s === "") return err(PARSE_ERROR);
  // 0b, 0o or 0x with a digit after it names the base; a bare leading 0 (a digit too) means octal.
  const prefix = /^0[box]./is.test(s) ? s[1].toLowerCase() : "";
  const base = prefixBases.get(prefix) ?? (s[0] === "0" ? 8 : 10);
  let n = 0n;
  for (const c of s.slice(prefix ? 2 : 0)) {
    if (c === "_") continue;
    const d = parseInt(c, 36); // NaN for anything but 0-9, a-z, A-Z
    if (!(d < base)) return err(PARSE_ERROR);
    n = n * BigInt(base) + BigInt(d);
    if (n > UINT64_MAX) return err(RANGE_ERROR);
  }
  // strconv's underscoreOK, given that every other character is a digit: an underscore only
  // between digits, a base prefix counting as one ("0x_1" is fine, "1__0" and "1_" are not).
  if (/^_|__|_$/.test(s)) return err(PARSE_ERROR);
  return ok(n);
}

/**
 * `strconv.ParseInt(s, 0, 64)`, as Go's `flag.Int` uses on 64-bit platforms: base prefixes
 * (`0x`, `0o`, `0b`, a bare leading `0` for octal) and underscores between digits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseGoInt } from "./go_strconv.ts";
 *
 * assert.deepEqual(parseGoInt("0x1_0"), { ok: true, value: 16 });
 * assert.deepEqual(parseGoInt("08"), { ok: false, error: "parse error" }); // octal
 * ```
 */
export function parseGoInt(s: string): Result<number, string> {
  const neg = s[0] === "-";
  const parsed = parseGoUint(neg || s[0] === "+" ? s.slice(1) : s);
  if (!parsed.ok) return parsed;
  const n = Number(neg ? -parsed.value : parsed.value);
  // Deviation from Go: a JavaScript number cannot hold every int64 exactly, and silently
  // rounding a flag value is worse than refusing it; past ±2^53 is a range error, as past int64.
  return Number.isSafeInteger(n) ? ok(n) : err(RANGE_ERROR);
}
