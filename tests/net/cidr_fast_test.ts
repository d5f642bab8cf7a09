/**
 * parseCidr's IPv4 fast path against the general path (parseCidrReference): for generated
 * inputs near the shape it accepts (octets, dots, slashes, leading zeros, host bits, stray
 * characters, IPv6), both must give deep-equal results: the same Cidr, or the same error.
 *
 * @module
 */

import { deepStrictEqual, equal } from "node:assert/strict";
import { parseCidr, parseCidrReference } from "../../lib/net/cidr.ts";
import { propertySeed, Random } from "../support/random.ts";

function same(input: string): void {
  deepStrictEqual(parseCidr(input), parseCidrReference(input), JSON.stringify(input));
}

/** An octet-like piece: mostly valid numbers, sometimes out of range, padded or not a number. */
function piece(random: Random): string {
  switch (random.int(0, 9)) {
    case 0:
      return `0${random.int(0, 255)}`;
    case 1:
      return String(random.int(256, 1000));
    case 2:
      return random.pick(["", "a", "-1", "+1", " 1", "1 ", "0x1", "00", "٣"]);
    default:
      return String(random.pick([0, 255, random.int(0, 255), random.int(0, 9)]));
  }
}

function prefixText(random: Random): string {
  switch (random.int(0, 7)) {
    case 0:
      return random.pick(["", "08", "00", "033", "33", "-1", "1a", "128", " 8"]);
    case 1:
      return `/${random.int(0, 32)}`; // a second slash
    default:
      return String(random.int(0, 32));
  }
}

function dotted(address: number): string {
  return [address >>> 24, (address >>> 16) & 255, (address >>> 8) & 255, address & 255].join(".");
}

/** An aligned network: what real configs hold, so the fast path's own side is well covered. */
function aligned(random: Random): string {
  const prefix = random.int(0, 32);
  const address = random.int(0, 0xffffffff);
  return `${dotted(prefix === 0 ? 0 : (address >>> (32 - prefix)) * 2 ** (32 - prefix))}/${prefix}`;
}

function candidate(random: Random): string {
  if (random.bool(0.4)) return aligned(random);
  const parts = Array.from({ length: random.pick([4, 4, 4, 4, 3, 5, 1]) }, () => piece(random));
  let text = `${parts.join(".")}/${prefixText(random)}`;
  if (random.bool(0.05)) text = text.replace("/", "");
  if (random.bool(0.05)) text = `::ffff:${text}`;
  if (random.bool(0.03)) text = `${text}%eth0`;
  return text;
}

Deno.test("the IPv4 fast path gives the general path's result: fixed cases", () => {
  for (
    const input of [
      "0.0.0.0/0",
      "10.0.0.0/8",
      "255.255.255.255/32",
      "255.255.255.254/31",
      "10.0.0.1/8",
      "10.0.0.0/08",
      "10.0.0.0/0",
      "1.0.0.0/0",
      "010.0.0.0/8",
      "10.0.0.0/33",
      "10.0.0.0/",
      "10.0.0/8",
      "10.0.0.0.0/8",
      "10..0.0/8",
      ".10.0.0/8",
      "10.0.0.0/8/8",
      "10.0.0.256/32",
      "",
      "/8",
      "10.0.0.0",
      "10.0.0.0/8 -j ACCEPT",
      "::/0",
      "2001:db8::/32",
      "::ffff:10.0.0.0/104",
    ]
  ) same(input);
});

Deno.test("the IPv4 fast path gives the general path's result: generated inputs", () => {
  const seed = propertySeed(18);
  const random = new Random(seed);
  let accepted = 0;
  for (let i = 0; i < 20_000; i++) {
    const input = candidate(random);
    same(input);
    if (parseCidrReference(input).ok) accepted++;
  }
  // The generator must reach both sides, or the comparison says little.
  equal(accepted > 2_000 && accepted < 18_000, true, `seed ${seed}: ${accepted} accepted`);
});

Deno.test("the IPv4 fast path gives the general path's result: every prefix of an address", () => {
  const random = new Random(propertySeed(1818));
  for (let i = 0; i < 2_000; i++) {
    const address = random.int(0, 0xffffffff);
    for (let prefix = 0; prefix <= 32; prefix++) {
      const network = prefix === 0 ? 0 : (address >>> (32 - prefix)) * 2 ** (32 - prefix);
      same(`${dotted(network)}/${prefix}`);
      same(`${dotted(address)}/${prefix}`);
    }
  }
});
