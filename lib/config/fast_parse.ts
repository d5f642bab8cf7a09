/**
 * A fast path for the YAML real ConfigMaps hold: a top-level mapping of plain keys to scalars,
 * block lists and one-line flow lists, with comments. Its nodes carry the `yaml` package's marks,
 * values (YAML 1.1) and positions. Anything else (tabs, CR, anchors, tags, nested values, numbers
 * in another notation, values it cannot resolve exactly ...) is left to the full YAML parse, the
 * reference (tests/config/fast_parse_test.ts checks both give identical results).
 *
 * @module
 */

/** A scalar's value as YAML 1.1 resolves it. */
export type FastValue = string | number | boolean | null;

/** A resolved scalar at 1-based `line` and `column`. */
export class FastScalar {
  /** `value` written at `line`:`column`. */
  constructor(readonly value: FastValue, readonly line: number, readonly column: number) {}
}

/** A list, block (`- item` lines) or flow (`[a, b]`), at 1-based `line` and `column`. */
export class FastSeq {
  /** The items, in order. */
  readonly items: FastScalar[] = [];
  /** An empty list starting at `line`:`column`. */
  constructor(readonly line: number, readonly column: number) {}
}

/** The top-level mapping. */
export class FastMap {
  /** The `key: value` pairs in file order, duplicates kept; no value is a null scalar. */
  readonly items: { readonly key: FastScalar; value: FastScalar | FastSeq }[] = [];
}

for (const [node, kind] of [[FastScalar, "scalar"], [FastSeq, "seq"], [FastMap, "map"]] as const) {
  Object.defineProperty(node.prototype, Symbol.for("yaml.node.type"), {
    value: Symbol.for(`yaml.${kind}`),
  });
}

/** What the fast path read. */
export interface FastDocument {
  /** The top-level mapping, or null when the text holds only comments and blank lines. */
  readonly contents: FastMap | null;
}

/** Not in the subset: the caller falls back to the full parse. */
const outOfSubset = Symbol("out of the subset");

/** A plain scalar's YAML 1.1 value; `outOfSubset` unless an integer, boolean, null or string. */
function resolvePlain(text: string): FastValue | typeof outOfSubset {
  if (/^[0-9]/.test(text)) {
    if (/^(?:0|[1-9][0-9]{0,14})$/.test(text)) return Number(text);
    // No YAML 1.1 number, sexagesimal or timestamp has a "/" (an IPv4 CIDR does), nor ends with a
    // letter other than a hex digit, x, z or Z ("60s", "1h30m").
    return text.includes("/") || /[g-wyG-WY]$/.test(text) ? text : outOfSubset;
  }
  // Only a letter starts a string; "e5" is a YAML 1.1 float (an exponent without a mantissa).
  if (!/^[a-df-zA-DF-Z]/.test(text)) return outOfSubset;
  // YAML 1.1's booleans and null, each in lower, Capitalized or UPPER case.
  if (/^(?:[yY](?:es)?|YES|[tT]rue|TRUE|[oO]n|ON)$/.test(text)) return true;
  if (/^(?:[nN]o?|NO|[fF]alse|FALSE|[oO]ff|OFF)$/.test(text)) return false;
  if (/^(?:[nN]ull|NULL)$/.test(text)) return null;
  return text;
}

/**
 * A scalar where the search starts: double-quoted without `\`, single-quoted without `''` (escapes
 * are left to the full parse), or plain (letters, digits and `._/:+-`) not ending in ":", which
 * would make it a mapping key. A plain one ends at the first other character.
 */
const scalarPattern = /"([^"\\]*)"|'([^']*)'(?!')|[A-Za-z0-9._/:+-]*(?<!:)/y;
/** A top-level `key:`, quoted or plain, then a space or the line's end, and the spaces after. */
const keyPattern = /^(?:"([^"\\]*)"|'([^']*)'|([A-Za-z0-9._/+-]*)):(?= |$) */;
/** Only spaces from `at`, then optionally a comment (which needs a space before it). */
const restIsEmpty = (line: string, at: number) => /^(?: *$| +#)/.test(line.slice(at));

/**
 * Reads `text` if it is in the subset, else returns undefined (the full parse decides, errors too).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FastScalar, parseFastYaml } from "./fast_parse.ts";
 * const doc = parseFastYaml("# cidrs\nnonMasqueradeCIDRs:\n  - 10.0.0.0/8\nmasqLinkLocal: yes\n");
 * const linkLocal = doc?.contents?.items[1].value;
 * assert.ok(linkLocal instanceof FastScalar);
 * assert.deepEqual([linkLocal.value, linkLocal.line, linkLocal.column], [true, 4, 16]);
 * assert.equal(parseFastYaml("a: &x 1\n"), undefined); // an anchor: left to the full parse
 * ```
 */
export function parseFastYaml(text: string): FastDocument | undefined {
  // A tab or a CR changes indentation and line rules; rare enough to leave to the full parse.
  if (text.includes("\t") || text.includes("\r")) return undefined;
  try {
    return readLines(text.split("\n"));
  } catch (error) {
    if (error === outOfSubset) return undefined;
    throw error;
  }
}

function readLines(lines: readonly string[]): FastDocument {
  let root: FastMap | null = null;
  // The pair whose value may still come as `- item` lines, and that list once it began.
  let open: FastMap["items"][number] | null = null;
  let openSeq: FastSeq | null = null;
  let documentStarted = false;
  for (const [index, line] of lines.entries()) {
    const number = index + 1;
    const indent = skipSpaces(line, 0);
    if (indent === line.length || line[indent] === "#") continue;
    if (line[indent] === "-" && (indent + 1 === line.length || line[indent + 1] === " ")) {
      // `- item` (or `-` alone) under the last `key:`; every item at one indentation.
      if (open === null) throw outOfSubset;
      if (openSeq === null) open.value = openSeq = new FastSeq(number, indent + 1);
      else if (openSeq.column !== indent + 1) throw outOfSubset;
      const at = skipSpaces(line, indent + 1);
      const value = lineValue(line, number, at, false) as FastScalar | undefined;
      openSeq.items.push(value ?? new FastScalar(null, number, at + 1));
      continue;
    }
    if (indent > 0) throw outOfSubset;
    if (root === null && !documentStarted && line.startsWith("---")) {
      // One document start marker before everything, alone on its line or before a comment.
      documentStarted = true;
      if (restIsEmpty(line, 3)) continue;
      throw outOfSubset;
    }
    // `key:` (a list may follow), `key: scalar` or `key: [flow, list]`; a plain key is a string.
    const keyMatch = keyPattern.exec(line);
    if (!keyMatch) throw outOfSubset;
    // One of the three groups matched: a quoted key is a string as is, a plain one is resolved.
    const key = keyMatch[1] ?? keyMatch[2] ?? resolvePlain(keyMatch[3]);
    if (typeof key !== "string") throw outOfSubset;
    const at = keyMatch[0].length;
    const value = lineValue(line, number, at, true);
    const pair = {
      key: new FastScalar(key, number, 1),
      value: value ?? new FastScalar(null, number, at + 1),
    };
    (root ??= new FastMap()).items.push(pair);
    open = value ? null : pair;
    openSeq = null;
  }
  return { contents: root };
}

/** From `at`, a scalar (or, if `flowList`, `[a, b]`) and at most a comment; undefined if none. */
function lineValue(line: string, number: number, at: number, flowList: boolean) {
  if (at === line.length || line[at] === "#") return undefined;
  let node: FastScalar | FastSeq;
  let next: number;
  if (flowList && line[at] === "[") {
    // `[a, "b", c]` on one line; a trailing comma is allowed, as in YAML.
    node = new FastSeq(number, at + 1);
    for (next = skipSpaces(line, at + 1); line[next] !== "]";) {
      const item = scalarAt(line, number, next);
      node.items.push(item.node);
      next = skipSpaces(line, item.next);
      if (line[next] === ",") next = skipSpaces(line, next + 1);
      else if (line[next] !== "]") throw outOfSubset;
    }
    next++;
  } else {
    ({ node, next } = scalarAt(line, number, at));
  }
  if (!restIsEmpty(line, next)) throw outOfSubset;
  return node;
}

function scalarAt(line: string, number: number, at: number): { node: FastScalar; next: number } {
  scalarPattern.lastIndex = at;
  const match = scalarPattern.exec(line);
  const token = match?.[0] ?? "";
  // Empty, or a value of another tag: not in the subset.
  const value = match?.[1] ?? match?.[2] ?? resolvePlain(token);
  if (value === outOfSubset) throw outOfSubset;
  return { node: new FastScalar(value, number, at + 1), next: at + token.length };
}

function skipSpaces(line: string, at: number): number {
  while (line[at] === " ") at++;
  return at;
}
