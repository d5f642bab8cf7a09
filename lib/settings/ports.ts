/**
 * The `--to-ports` value: source port ranges MASQUERADE may pick from, as upstream v1 accepts
 * them (`1024-29999,32768-65535`, single ports allowed).
 *
 * @module
 */

import { quoteInput } from "../base/quote.ts";
import { err, ok, type Result } from "../base/result.ts";

/** Source ports `first` to `last`, both included; a single port has `first === last`. */
export interface PortRange {
  /** 1 to 65535. */
  readonly first: number;
  /** At least `first`, at most 65535. */
  readonly last: number;
}

/**
 * Parses the flag value, keeping the given order; empty means "no port restriction". Ranges must
 * not overlap, and ports are decimal without leading zeros.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parsePortRanges } from "./ports.ts";
 *
 * const value = [{ first: 80, last: 80 }, { first: 32768, last: 65535 }];
 * assert.deepEqual(parsePortRanges("80,32768-65535"), { ok: true, value });
 * assert.deepEqual(parsePortRanges("8,7-9"), { ok: false, error: "ports 7-9 and 8 overlap" });
 * ```
 */
export function parsePortRanges(spec: string): Result<PortRange[], string> {
  if (spec === "") return ok([]);
  const ranges: (PortRange & { text: string })[] = [];
  const want = "want a comma-separated list of N or N-M";
  for (const item of spec.split(",")) {
    if (!/^[0-9]+(-[0-9]+)?$/.test(item)) {
      return err(`${quoteInput(item)} is not a port or port range (${want})`);
    }
    for (const digits of item.split("-")) {
      // iptables parses ports with base auto-detection, so "010" would silently mean 8.
      if (digits.length > 1 && digits[0] === "0") {
        return err(`port ${quoteInput(digits)} must not have a leading zero`);
      }
      const port = Number(digits);
      if (port < 1 || port > 65535) return err(`port ${digits} is out of range 1-65535`);
    }
    const [first, last = first] = item.split("-").map(Number);
    if (first > last) return err(`port range ${item} has its start above its end`);
    ranges.push({ first, last, text: item });
  }
  const sorted = ranges.toSorted((a, b) => a.first - b.first);
  const clash = sorted.findIndex((range, i) => i > 0 && range.first <= sorted[i - 1].last);
  if (clash > 0) return err(`ports ${sorted[clash - 1].text} and ${sorted[clash].text} overlap`);
  return ok(ranges.map(({ first, last }) => ({ first, last })));
}

/** How many ports the range holds. */
export function portRangeSize(range: PortRange): number {
  return range.last - range.first + 1;
}

/** The range as iptables prints it: `N-M`, or a bare `N` for a single port. */
export function formatPortRange(range: PortRange): string {
  return range.first === range.last ? `${range.first}` : `${range.first}-${range.last}`;
}
