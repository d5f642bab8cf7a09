/**
 * A fast path for the YAML that real ConfigMaps hold: a top-level mapping of
 * plain keys to scalars, block lists of scalars and one-line flow lists, with
 * comments and blank lines. It builds the few nodes the config validator
 * reads, in the shape of the `yaml` package's (its `isMap`, `isSeq` and
 * `isScalar` recognise them), with the same values (YAML 1.1: `yes` and `on`
 * are booleans, `010` is octal) and the same positions. Anything else (tabs,
 * CR, anchors, tags, nested or multi-line values, numbers in another notation,
 * a second document ...) is "not in the subset": the caller then runs the full
 * YAML parse, which stays the reference. tests/config/fast_parse_test.ts checks
 * that both give identical results.
 *
 * Only values this module can resolve exactly are accepted: decimal integers,
 * the YAML 1.1 booleans and nulls, quoted strings without escapes, and plain
 * strings that no YAML 1.1 tag could claim (a `/` in them, or a letter that no
 * number or timestamp ends with, or a leading letter that starts no
 * boolean, null or exponent).
 *
 * @module
 */

const nodeType = Symbol.for("yaml.node.type");

/** A node of the fast path: its offset in the text and the line and column it starts at. */
export abstract class FastNode {
  /** A node starting at `offset`, which is at `line`:`column`. */
  constructor(
    /** Offset in the text (UTF-16 code units, as the `yaml` package counts). */
    readonly offset: number,
    /** 1-based. */
    readonly line: number,
    /** 1-based. */
    readonly column: number,
  ) {}

  /** Where the node starts, as the `yaml` package's `range` (only its start is known). */
  get range(): [number, number, number] {
    return [this.offset, this.offset, this.offset];
  }
}

/** A scalar: a string, number, boolean or null. */
export class FastScalar extends FastNode {
  /** `value` (already resolved) written at `offset`, `line`:`column`. */
  constructor(
    readonly value: string | number | boolean | null,
    offset: number,
    line: number,
    column: number,
  ) {
    super(offset, line, column);
  }
}

/** A list: block (`- item` lines) or flow (`[a, b]`). */
export class FastSeq extends FastNode {
  /** The items, in order. */
  readonly items: FastScalar[] = [];
}

/** One `key: value` of the top-level mapping. */
export class FastPair {
  /** A key and its value. */
  constructor(
    /** The key (a string scalar). */
    readonly key: FastScalar,
    /** The value; a null scalar when the key has none. */
    public value: FastScalar | FastSeq,
  ) {}
}

/** The top-level mapping, in file order (duplicate keys are kept for the validator to name). */
export class FastMap extends FastNode {
  /** The pairs, in order. */
  readonly items: FastPair[] = [];
}

Object.defineProperty(FastScalar.prototype, nodeType, { value: Symbol.for("yaml.scalar") });
Object.defineProperty(FastSeq.prototype, nodeType, { value: Symbol.for("yaml.seq") });
Object.defineProperty(FastMap.prototype, nodeType, { value: Symbol.for("yaml.map") });
Object.defineProperty(FastPair.prototype, nodeType, { value: Symbol.for("yaml.pair") });

/** What the fast path read: the document's top-level node (null for an empty document). */
export interface FastDocument {
  /** The top-level mapping, or null when the text holds only comments and blank lines. */
  readonly contents: FastMap | null;
}

const space = 0x20;
const hash = 0x23;
const colon = 0x3a;
const dash = 0x2d;
const comma = 0x2c;
const openBracket = 0x5b;
const closeBracket = 0x5d;
const doubleQuote = 0x22;
const singleQuote = 0x27;

/** Not in the subset: the caller falls back to the full parse. */
class OutOfSubset {}
const outOfSubset = new OutOfSubset();

/** Letters, digits and `._/:+-`: the characters of plain scalars in the subset. */
function isPlainChar(code: number): boolean {
  return (code >= 0x61 && code <= 0x7a) || (code >= 0x41 && code <= 0x5a) ||
    (code >= 0x30 && code <= 0x39) || code === 0x2e || code === 0x5f || code === 0x2f ||
    code === colon || code === 0x2b || code === dash;
}

const isDigit = (code: number) => code >= 0x30 && code <= 0x39;
const isLetter = (code: number) => (code >= 0x61 && code <= 0x7a) || (code >= 0x41 && code <= 0x5a);

const trueWords = new Set([
  "Y",
  "y",
  "yes",
  "Yes",
  "YES",
  "true",
  "True",
  "TRUE",
  "on",
  "On",
  "ON",
]);
const falseWords = new Set([
  "N",
  "n",
  "no",
  "No",
  "NO",
  "false",
  "False",
  "FALSE",
  "off",
  "Off",
  "OFF",
]);
const nullWords = new Set(["null", "Null", "NULL"]);
const decimal = /^(?:0|[1-9][0-9]{0,14})$/;

/**
 * The YAML 1.1 value of a plain scalar, or `outOfSubset` when it might be
 * anything but a decimal integer, a boolean, a null or a string.
 */
function resolvePlain(text: string): string | number | boolean | null | OutOfSubset {
  const first = text.charCodeAt(0);
  if (isDigit(first)) {
    if (decimal.test(text)) return Number(text);
    // No YAML 1.1 number, sexagesimal or timestamp has a "/" (an IPv4 CIDR does).
    if (text.includes("/")) return text;
    // Nor ends with a letter other than a hex digit, x, z or Z ("60s", "1h30m").
    const last = text.charCodeAt(text.length - 1);
    if (isLetter(last) && !/[a-fA-FxXzZ]/.test(text[text.length - 1])) return text;
    return outOfSubset;
  }
  // "e5" is a YAML 1.1 float (an exponent without a mantissa).
  if (!isLetter(first) || first === 0x65 || first === 0x45) return outOfSubset;
  if (trueWords.has(text)) return true;
  if (falseWords.has(text)) return false;
  if (nullWords.has(text)) return null;
  return text;
}

/**
 * Reads `text` if it is in the subset, else returns undefined (then the full
 * parse decides everything, errors included).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseFastYaml } from "./fast_parse.ts";
 *
 * const doc = parseFastYaml("# cidrs\nnonMasqueradeCIDRs:\n  - 10.0.0.0/8\nmasqLinkLocal: yes\n");
 * assert.ok(doc?.contents);
 * const [cidrs, linkLocal] = doc.contents.items;
 * assert.equal(cidrs.key.value, "nonMasqueradeCIDRs");
 * assert.equal(linkLocal.value.range[0], 58);
 * assert.equal((linkLocal.value as { value: unknown }).value, true);
 *
 * // An anchor is YAML the fast path leaves to the full parse.
 * assert.equal(parseFastYaml("a: &x 1\n"), undefined);
 * ```
 */
export function parseFastYaml(text: string): FastDocument | undefined {
  // A tab or a CR changes indentation and line rules; rare enough to leave to the full parse.
  if (text.includes("\t") || text.includes("\r")) return undefined;
  try {
    return new Scanner(text).document();
  } catch (error) {
    if (error === outOfSubset) return undefined;
    throw error;
  }
}

class Scanner {
  #root: FastMap | null = null;
  /** The pair whose value may still come as `- item` lines. */
  #open: FastPair | null = null;
  #openSeq: FastSeq | null = null;
  /** Whether the document start marker (`---`) was seen. */
  #started = false;
  #lineStart = 0;
  #line = 1;

  constructor(readonly text: string) {}

  document(): FastDocument {
    const text = this.text;
    const length = text.length;
    let start = 0;
    while (start < length) {
      let end = text.indexOf("\n", start);
      if (end < 0) end = length;
      this.#lineStart = start;
      this.lineAt(start, end);
      start = end + 1;
      this.#line++;
    }
    return { contents: this.#root };
  }

  private lineAt(start: number, end: number): void {
    const text = this.text;
    let at = start;
    while (at < end && text.charCodeAt(at) === space) at++;
    if (at === end || text.charCodeAt(at) === hash) return;
    const first = text.charCodeAt(at);
    if (first === dash && (at + 1 === end || text.charCodeAt(at + 1) === space)) {
      return this.item(at, end);
    }
    if (at !== start) throw outOfSubset;
    if (this.#root === null && !this.#started && first === dash && text.startsWith("---", at)) {
      this.#started = true;
      // One document start marker before everything, alone on its line or before a comment.
      if (this.restIsEmpty(at + 3, end)) return;
      throw outOfSubset;
    }
    this.keyLine(at, end);
  }

  /** `key:` (a list may follow), `key: scalar` or `key: [flow, list]`. */
  private keyLine(at: number, end: number): void {
    const text = this.text;
    let key: FastScalar;
    let after: number;
    const first = text.charCodeAt(at);
    if (first === doubleQuote || first === singleQuote) {
      const close = this.quotedEnd(at, end);
      key = this.scalar(text.slice(at + 1, close), at);
      after = close + 1;
    } else {
      let stop = at;
      while (stop < end && isPlainChar(text.charCodeAt(stop)) && text.charCodeAt(stop) !== colon) {
        stop++;
      }
      if (stop === at) throw outOfSubset;
      const value = resolvePlain(text.slice(at, stop));
      if (typeof value !== "string") throw outOfSubset;
      key = this.scalar(value, at);
      after = stop;
    }
    if (text.charCodeAt(after) !== colon || after >= end) throw outOfSubset;
    after++;
    if (after < end && text.charCodeAt(after) !== space) throw outOfSubset;
    let valueAt = after;
    while (valueAt < end && text.charCodeAt(valueAt) === space) valueAt++;
    const root = this.#root ??= new FastMap(at, this.#line, at - this.#lineStart + 1);
    this.#openSeq = null;
    if (valueAt === end || text.charCodeAt(valueAt) === hash) {
      const pair = new FastPair(key, this.scalar(null, valueAt));
      root.items.push(pair);
      this.#open = pair;
      return;
    }
    this.#open = null;
    const value = text.charCodeAt(valueAt) === openBracket
      ? this.flowSeq(valueAt, end)
      : this.value(valueAt, end, false);
    root.items.push(new FastPair(key, value.node));
    if (!this.restIsEmpty(value.next, end)) throw outOfSubset;
  }

  /** `- item` (or `-` alone) under the last `key:`; every item at one indentation. */
  private item(dashAt: number, end: number): void {
    const pair = this.#open;
    if (pair === null) throw outOfSubset;
    let seq = this.#openSeq;
    if (seq === null) {
      seq = new FastSeq(dashAt, this.#line, dashAt - this.#lineStart + 1);
      this.#openSeq = seq;
      pair.value = seq;
    } else if (seq.column !== dashAt - this.#lineStart + 1) {
      throw outOfSubset;
    }
    let at = dashAt + 1;
    while (at < end && this.text.charCodeAt(at) === space) at++;
    if (at === end || this.text.charCodeAt(at) === hash) {
      seq.items.push(this.scalar(null, at));
      return;
    }
    const value = this.value(at, end, false);
    seq.items.push(value.node);
    if (!this.restIsEmpty(value.next, end)) throw outOfSubset;
  }

  /** `[a, "b", c]` on one line; a trailing comma is allowed, as in YAML. */
  private flowSeq(open: number, end: number): { node: FastSeq; next: number } {
    const text = this.text;
    const seq = new FastSeq(open, this.#line, open - this.#lineStart + 1);
    let at = open + 1;
    for (;;) {
      while (at < end && text.charCodeAt(at) === space) at++;
      if (at >= end) throw outOfSubset;
      if (text.charCodeAt(at) === closeBracket) {
        // `[]` or `[a, b,]`; `[,]` is an error for the full parse to word.
        if (seq.items.length === 0 && text.charCodeAt(at - 1) === comma) throw outOfSubset;
        return { node: seq, next: at + 1 };
      }
      const value = this.value(at, end, true);
      seq.items.push(value.node);
      at = value.next;
      while (at < end && text.charCodeAt(at) === space) at++;
      const code = text.charCodeAt(at);
      if (code === comma) at++;
      else if (code !== closeBracket) throw outOfSubset;
    }
  }

  /** A quoted or plain scalar starting at `at`; `next` is just after it. */
  private value(at: number, end: number, flow: boolean): { node: FastScalar; next: number } {
    const text = this.text;
    const first = text.charCodeAt(at);
    if (first === doubleQuote || first === singleQuote) {
      const close = this.quotedEnd(at, end);
      return { node: this.scalar(text.slice(at + 1, close), at), next: close + 1 };
    }
    let stop = at;
    while (stop < end && isPlainChar(text.charCodeAt(stop))) stop++;
    if (stop === at) throw outOfSubset;
    const next = text.charCodeAt(stop);
    // A plain scalar ends at the line's end, at a space (then only a comment may follow) or,
    // in a flow list, at the comma or bracket; a trailing ":" would make it a mapping key.
    if (
      !(stop === end || next === space || (flow && (next === comma || next === closeBracket))) ||
      text.charCodeAt(stop - 1) === colon
    ) {
      throw outOfSubset;
    }
    const value = resolvePlain(text.slice(at, stop));
    if (value === outOfSubset) throw outOfSubset;
    return { node: this.scalar(value as string | number | boolean | null, at), next: stop };
  }

  /** The closing quote of a one-line quoted scalar without escapes. */
  private quotedEnd(open: number, end: number): number {
    const text = this.text;
    const quote = text[open];
    const close = text.indexOf(quote, open + 1);
    if (close < 0 || close >= end) throw outOfSubset;
    // An escape (\ in double quotes, '' in single quotes) is left to the full parse.
    if (quote === '"' && text.slice(open + 1, close).includes("\\")) throw outOfSubset;
    if (quote === "'" && text.charCodeAt(close + 1) === singleQuote) throw outOfSubset;
    return close;
  }

  /** Only spaces, then optionally a comment (which needs a space before it). */
  private restIsEmpty(at: number, end: number): boolean {
    const text = this.text;
    let spaced = false;
    while (at < end && text.charCodeAt(at) === space) {
      at++;
      spaced = true;
    }
    return at === end || (spaced && text.charCodeAt(at) === hash);
  }

  private scalar(value: string | number | boolean | null, at: number): FastScalar {
    return new FastScalar(value, at, this.#line, at - this.#lineStart + 1);
  }
}
