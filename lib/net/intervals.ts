/**
 * Address intervals, as an nftables interval set holds them: sorted, merged (overlapping or
 * touching joined), so what `nft` reads back compares equal as numbers.
 *
 * @module
 */

import { type Cidr, type Family, familyBits, formatAddress } from "./cidr.ts";

/** The addresses `start` to `end`, both included, of one family. */
export interface AddressInterval {
  /** The first address. */
  readonly start: bigint;
  /** The last address, at least `start`. */
  readonly end: bigint;
}

/** The addresses a CIDR covers. */
export function cidrInterval(cidr: Cidr): AddressInterval {
  const hostBits = BigInt(familyBits(cidr.family) - cidr.prefix);
  const start = (cidr.address >> hostBits) << hostBits;
  return { start, end: start + (1n << hostBits) - 1n };
}

/**
 * Sorted, non-overlapping, non-touching intervals covering exactly the addresses of `intervals`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mergeIntervals } from "./intervals.ts";
 *
 * const merged = mergeIntervals([{ start: 5n, end: 9n }, { start: 0n, end: 4n }]);
 * assert.deepEqual(merged, [{ start: 0n, end: 9n }]);
 * ```
 */
export function mergeIntervals(intervals: readonly AddressInterval[]): AddressInterval[] {
  const merged: { start: bigint; end: bigint }[] = [];
  for (const { start, end } of [...intervals].sort(byStart)) {
    const last = merged.at(-1);
    if (!last || start > last.end + 1n) merged.push({ start, end });
    else if (end > last.end) last.end = end;
  }
  return merged;
}

/** Orders intervals by their first address. */
export function byStart(a: AddressInterval, b: AddressInterval): number {
  return a.start < b.start ? -1 : a.start > b.start ? 1 : 0;
}

/**
 * The destinations that keep their source when the most specific CIDR of either list decides
 * (longest-prefix match): `keep` are exempt, `masquerade` are exceptions inside them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseBuiltInCidr as cidr } from "./cidr.ts";
 * import { longestPrefixKeep } from "./intervals.ts";
 *
 * // 10.0.0.0/8 without 10.1.0.0/16, but 10.1.2.0/24 (more specific) keeps its source again.
 * const keep = longestPrefixKeep([cidr("10.0.0.0/8"), cidr("10.1.2.0/24")], [cidr("10.1.0.0/16")]);
 * assert.equal(keep.length, 3);
 * ```
 */
export function longestPrefixKeep(
  keep: readonly Cidr[],
  masquerade: readonly Cidr[],
): AddressInterval[] {
  if (masquerade.length === 0) return mergeIntervals(keep.map(cidrInterval));
  // CIDRs are nested or disjoint: painting from the least to the most specific leaves the most
  // specific answer on every address. On a tie (a config error) masquerading wins: it never
  // leaks a pod IP.
  const painted = [
    ...keep.map((cidr) => ({ cidr, keep: true })),
    ...masquerade.map((cidr) => ({ cidr, keep: false })),
  ].sort((a, b) => a.cidr.prefix - b.cidr.prefix || Number(b.keep) - Number(a.keep));
  return painted.reduce<AddressInterval[]>((result, { cidr, keep }) => {
    const span = cidrInterval(cidr);
    return keep ? mergeIntervals([...result, span]) : outside(result, span);
  }, []);
}

/** What `intervals` hold outside `span`, into one array: it runs per masquerade CIDR. */
function outside(intervals: readonly AddressInterval[], span: AddressInterval): AddressInterval[] {
  const result: AddressInterval[] = [];
  for (const { start, end } of intervals) {
    if (start < span.start) result.push({ start, end: end < span.start ? end : span.start - 1n });
    if (end > span.end) result.push({ start: start > span.end ? start : span.end + 1n, end });
  }
  return result;
}

/** Whether `address` lies in one of `intervals`. */
export function intervalsContain(intervals: readonly AddressInterval[], address: bigint): boolean {
  return intervals.some(({ start, end }) => start <= address && address <= end);
}

/**
 * Equal lists of intervals, element by element. No text is built: a plan compares every element
 * of a set that may hold 100,000, and strings made that 100× slower.
 */
export function sameIntervals(
  a: readonly AddressInterval[],
  b: readonly AddressInterval[],
): boolean {
  return a.length === b.length &&
    a.every(({ start, end }, index) => start === b[index].start && end === b[index].end);
}

/** A set element as nft writes and prints it: `address`, `address/prefix` or `first-last`. */
export function formatInterval(family: Family, interval: AddressInterval): string {
  const start = formatAddress(family, interval.start);
  const size = interval.end - interval.start + 1n;
  if (size === 1n) return start;
  const isPowerOfTwo = (size & (size - 1n)) === 0n;
  if (isPowerOfTwo && interval.start % size === 0n) {
    return `${start}/${familyBits(family) - (size.toString(2).length - 1)}`;
  }
  return `${start}-${formatAddress(family, interval.end)}`;
}
