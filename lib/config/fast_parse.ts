/**
 * A fast path for the YAML real ConfigMaps hold: a top-level mapping of plain keys to scalars,
 * block lists and one-line flow lists, with comments. Its nodes carry the `yaml` package's marks,
 * values (YAML 1.1) and positions. Anything else (tabs, CR, anchors, tags, nested values, numbers
 * in another notation, values it cannot resolve exactly ...) is left to the full YAML parse, the
 * reference (tests/config/fast_parse_test.ts checks both give identical results).
 *
 * @module
 */

/** A resolved scalar at 1-based `line` and `column`. */
export class FastScalar {
  /** `value` written at `line`:`column`. */
  constructor(
    readonly value: string | number | boolean | null,
    readonly line: number,
    readonly column: number,
  ) {}
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

const [space, hash, colon, dash, comma, openBracket, closeBracket, doubleQuote, singleQuote] = [
  ..." #:-,[]\"'",
].map((char) => char.charCodeAt(0));

/** Not in the subset: the caller falls back to the full parse. */
const outOfSubset = Symbol("out of the subset");

const isDigit = (code: number) => code >= 0x30 && code <= 0x39;
const isLetter = (code: number) => (code >= 0x61 && code <= 0x7a) || (code >= 0x41 && code <= 0x5a);
const isQuote = (code: number) => code === doubleQuote || code === singleQuote;
/** Letters, digits and `._/:+-`: the characters of plain scalars in the subset. */
const isPlainChar = (code: number) =>
  isLetter(code) || isDigit(code) || code === 0x2e || code === 0x5f || code === 0x2f ||
  code === colon || code === 0x2b || code === dash;

/** YAML 1.1 words, each also Capitalized and in UPPER case. */
function cased(words: string): Set<string> {
  const capitalized = (word: string) => word[0].toUpperCase() + word.slice(1);
  return new Set(words.split(" ").flatMap((word) => [word, capitalized(word), word.toUpperCase()]));
}
const trueWords = cased("y yes true on");
const falseWords = cased("n no false off");
const nullWords = cased("null");
const decimal = /^(?:0|[1-9][0-9]{0,14})$/;

type Value = string | number | boolean | null;

/** A plain scalar's YAML 1.1 value; `outOfSubset` unless an integer, boolean, null or string. */
function resolvePlain(text: string): Value | typeof outOfSubset {
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
 * Reads `text` if it is in the subset, else returns undefined (the full parse decides, errors too).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseFastYaml } from "./fast_parse.ts";
 * const doc = parseFastYaml("# cidrs\nnonMasqueradeCIDRs:\n  - 10.0.0.0/8\nmasqLinkLocal: yes\n");
 * assert.ok(doc?.contents);
 * const [cidrs, linkLocal] = doc.contents.items;
 * assert.equal(cidrs.key.value, "nonMasqueradeCIDRs");
 * assert.deepEqual([linkLocal.value.line, linkLocal.value.column], [4, 16]);
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
  /** The pair whose value may still come as `- item` lines, and that list once it began. */
  #open: FastMap["items"][number] | null = null;
  #openSeq: FastSeq | null = null;
  /** Whether `---` was seen. */
  #started = false;
  #lineStart = 0;
  #line = 1;

  constructor(readonly text: string) {}

  document(): FastDocument {
    for (let start = 0; start < this.text.length; this.#line++) {
      const newline = this.text.indexOf("\n", start);
      const end = newline < 0 ? this.text.length : newline;
      this.#lineStart = start;
      this.lineAt(start, end);
      start = end + 1;
    }
    return { contents: this.#root };
  }

  private lineAt(start: number, end: number): void {
    const text = this.text;
    const at = this.skipSpaces(start, end);
    const first = text.charCodeAt(at);
    if (at === end || first === hash) return;
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
    let after = at;
    let key: Value | typeof outOfSubset;
    if (isQuote(text.charCodeAt(at))) {
      after = this.quotedEnd(at, end) + 1;
      key = text.slice(at + 1, after - 1);
    } else {
      const inKey = (code: number) => isPlainChar(code) && code !== colon;
      while (after < end && inKey(text.charCodeAt(after))) after++;
      // Empty or not a string: not a key of the subset.
      key = resolvePlain(text.slice(at, after));
    }
    if (typeof key !== "string" || after >= end || text.charCodeAt(after) !== colon) {
      throw outOfSubset;
    }
    after++;
    if (after < end && text.charCodeAt(after) !== space) throw outOfSubset;
    const valueAt = this.skipSpaces(after, end);
    const value = this.lineValue(valueAt, end, true);
    const pair = { key: this.scalar(key, at), value: value ?? this.scalar(null, valueAt) };
    (this.#root ??= new FastMap()).items.push(pair);
    this.#open = value ? null : pair;
    this.#openSeq = null;
  }

  /** `- item` (or `-` alone) under the last `key:`; every item at one indentation. */
  private item(dashAt: number, end: number): void {
    if (this.#open === null) throw outOfSubset;
    const column = dashAt - this.#lineStart + 1;
    if (this.#openSeq === null) {
      this.#openSeq = new FastSeq(this.#line, column);
      this.#open.value = this.#openSeq;
    } else if (this.#openSeq.column !== column) {
      throw outOfSubset;
    }
    const at = this.skipSpaces(dashAt + 1, end);
    const value = this.lineValue(at, end, false) as FastScalar | undefined;
    this.#openSeq.items.push(value ?? this.scalar(null, at));
  }

  /**
   * The rest of a line from `at`: undefined when empty or a comment, else a scalar (or, if
   * `flowList`, `[a, b]`) and at most a comment.
   */
  private lineValue(at: number, end: number, flowList: boolean): FastScalar | FastSeq | undefined {
    if (at === end || this.text.charCodeAt(at) === hash) return undefined;
    const value = flowList && this.text.charCodeAt(at) === openBracket
      ? this.flowSeq(at, end)
      : this.value(at, end, false);
    if (!this.restIsEmpty(value.next, end)) throw outOfSubset;
    return value.node;
  }

  /** `[a, "b", c]` on one line; a trailing comma is allowed, as in YAML. */
  private flowSeq(open: number, end: number): { node: FastSeq; next: number } {
    const text = this.text;
    const seq = new FastSeq(this.#line, open - this.#lineStart + 1);
    let at = open + 1;
    for (;;) {
      at = this.skipSpaces(at, end);
      if (at >= end) throw outOfSubset;
      if (text.charCodeAt(at) === closeBracket) {
        // `[]` or `[a, b,]`; `[,]` is an error for the full parse to word.
        if (seq.items.length === 0 && text.charCodeAt(at - 1) === comma) throw outOfSubset;
        return { node: seq, next: at + 1 };
      }
      const value = this.value(at, end, true);
      seq.items.push(value.node);
      at = this.skipSpaces(value.next, end);
      const code = text.charCodeAt(at);
      if (code === comma) at++;
      else if (code !== closeBracket) throw outOfSubset;
    }
  }

  /** A quoted or plain scalar starting at `at`; `next` is just after it. */
  private value(at: number, end: number, flow: boolean): { node: FastScalar; next: number } {
    const text = this.text;
    if (isQuote(text.charCodeAt(at))) {
      const close = this.quotedEnd(at, end);
      return { node: this.scalar(text.slice(at + 1, close), at), next: close + 1 };
    }
    let stop = at;
    while (stop < end && isPlainChar(text.charCodeAt(stop))) stop++;
    const next = text.charCodeAt(stop);
    // A plain scalar ends at the line's end, at a space (then only a comment may follow) or,
    // in a flow list, at the comma or bracket; a trailing ":" would make it a mapping key.
    if (
      !(stop === end || next === space || (flow && (next === comma || next === closeBracket))) ||
      text.charCodeAt(stop - 1) === colon
    ) {
      throw outOfSubset;
    }
    // Empty, or a value of another tag: not in the subset.
    const value = resolvePlain(text.slice(at, stop));
    if (value === outOfSubset) throw outOfSubset;
    return { node: this.scalar(value, at), next: stop };
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
    const after = this.skipSpaces(at, end);
    return after === end || (after > at && this.text.charCodeAt(after) === hash);
  }

  private skipSpaces(at: number, end: number): number {
    while (at < end && this.text.charCodeAt(at) === space) at++;
    return at;
  }

  private scalar(value: Value, at: number): FastScalar {
    return new FastScalar(value, this.#line, at - this.#lineStart + 1);
  }
}
