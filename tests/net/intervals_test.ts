/**
 * Interval arithmetic behind the nft set: merging, subtracting and the
 * longest-prefix painting, checked against a brute force over a small
 * address space, and the element spelling nft uses.
 */

import assert from "node:assert/strict";
import { parseBuiltInCidr } from "../../lib/net/cidr.ts";
import {
  cidrInterval,
  formatInterval,
  intervalsContain,
  longestPrefixKeep,
  mergeIntervals,
} from "../../lib/net/intervals.ts";

/** CIDRs inside 10.0.0.0/24, so 256 addresses can be checked one by one. */
function smallCidrs(seed: number, count: number) {
  let state = seed;
  const next = () => (state = (state * 1103515245 + 12345) % 2147483648) / 2147483648;
  return Array.from({ length: count }, () => {
    const prefix = 24 + Math.floor(next() * 9);
    const size = 2 ** (32 - prefix);
    const offset = Math.floor(next() * (256 / size)) * size;
    return parseBuiltInCidr(`10.0.0.${offset}/${prefix}`);
  });
}

Deno.test("longest-prefix keep equals a brute force over every address, random lists", () => {
  for (let seed = 1; seed <= 300; seed++) {
    const keep = smallCidrs(seed, 1 + (seed % 6));
    const masquerade = smallCidrs(seed * 7919, seed % 4);
    const intervals = longestPrefixKeep(keep, masquerade);
    for (let i = 1; i < intervals.length; i++) {
      assert.ok(intervals[i].start > intervals[i - 1].end + 1n, "merged and sorted");
    }
    for (let host = 0; host < 256; host++) {
      const address = 0x0a000000n + BigInt(host);
      const containing = [
        ...keep.map((cidr) => ({ cidr, keeps: true })),
        ...masquerade.map((cidr) => ({ cidr, keeps: false })),
      ].filter(({ cidr }) => intervalsContain([cidrInterval(cidr)], address));
      const best = Math.max(-1, ...containing.map(({ cidr }) => cidr.prefix));
      const deciding = containing.filter(({ cidr }) => cidr.prefix === best);
      const want = deciding.length > 0 && deciding.every(({ keeps }) => keeps);
      assert.equal(intervalsContain(intervals, address), want, `seed ${seed}, host ${host}`);
    }
  }
});

Deno.test("merging drops nested and duplicate intervals and joins touching ones", () => {
  const merged = mergeIntervals(
    ["10.0.0.0/8", "10.1.0.0/16", "11.0.0.0/8", "10.0.0.0/8", "13.0.0.0/8"].map((text) =>
      cidrInterval(parseBuiltInCidr(text))
    ),
  );
  assert.deepEqual(merged.map((interval) => formatInterval("ipv4", interval)), [
    "10.0.0.0/7",
    "13.0.0.0/8",
  ]);
});

Deno.test("elements are spelled as nft lists them: address, prefix or range", () => {
  const v6 = (text: string) => cidrInterval(parseBuiltInCidr(text));
  assert.equal(formatInterval("ipv6", v6("2001:db8::1/128")), "2001:db8::1");
  assert.equal(formatInterval("ipv6", v6("::/0")), "::/0");
  assert.equal(
    formatInterval("ipv4", { start: 0x0a000000n, end: 0x0a0000ffn + 256n }),
    "10.0.0.0/23",
  );
  assert.equal(
    formatInterval("ipv4", { start: 0x0a000001n, end: 0x0a000002n }),
    "10.0.0.1-10.0.0.2",
  );
});
