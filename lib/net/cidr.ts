/**
 * CIDR parsing as strict as Go's `net.ParseCIDR` (the original agent), plus alignment; the
 * canonical text is what `iptables-save` prints, so rules compare as strings.
 *
 * @module
 */

import { quoteInput } from "../base/quote.ts";
import { err, ok, type Result } from "../base/result.ts";

/** An address family: iptables for ipv4, ip6tables for ipv6. */
export type Family = "ipv4" | "ipv6";

/** A parsed, aligned prefix. */
export interface Cidr {
  /** Which family's tool the rule belongs to. */
  readonly family: Family;
  /** The network address, host bits zero. */
  readonly address: bigint;
  /** The prefix length, 0 to 32 (IPv4) or 128 (IPv6). */
  readonly prefix: number;
  /** The canonical spelling, as `iptables-save` prints it. */
  readonly text: string;
}

/** The address width of `family`, in bits. */
export function familyBits(family: Family): 32 | 128 {
  return family === "ipv4" ? 32 : 128;
}

/**
 * Parses `input` as Go's `net.ParseCIDR` would, and also rejects what would silently misbehave as
 * a rule: a host part (`10.0.0.1/8`), an IPv4-mapped IPv6 prefix, a zone, whitespace.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCidr } from "./cidr.ts";
 *
 * const parsed = parseCidr("2001:DB8:0::/32");
 * assert.ok(parsed.ok);
 * assert.equal(parsed.value.text, "2001:db8::/32"); // as ip6tables-save prints it
 * assert.ok(parseCidr("10.0.0.0/08").ok); // "/08" is 8, as in Go
 * const misaligned = parseCidr("10.0.0.1/8");
 * assert.ok(!misaligned.ok);
 * assert.equal(misaligned.error, '"10.0.0.1/8" is not aligned: the network is 10.0.0.0/8');
 * ```
 */
export function parseCidr(input: string): Result<Cidr, string> {
  // A fast path for an aligned, canonically spelled IPv4 CIDR (`10.0.0.0/8`): the general path
  // costs ~4.5 µs per CIDR under `--lite-mode`, 0.45 s at 100,000 CIDRs
  // (tests/net/cidr_fast_test.ts requires identical results).
  const match = canonicalIpv4.exec(input);
  if (!match) return parseCidrReference(input);
  // The groups read one by one: no array per CIDR on this path.
  const a = Number(match[1]), b = Number(match[2]), c = Number(match[3]), d = Number(match[4]);
  const prefix = Number(match[5]);
  const address = ((a * 256 + b) * 256 + c) * 256 + d;
  // Out of range or unaligned (host bits set) takes the general path, which words the error.
  if (
    prefix > 32 || a > 255 || b > 255 || c > 255 || d > 255 || address % 2 ** (32 - prefix) !== 0
  ) {
    return parseCidrReference(input);
  }
  return ok({ family: "ipv4", address: BigInt(address), prefix, text: input });
}

const canonicalIpv4 =
  /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\/(0|[1-9]\d?)$/;

/** {@link parseCidr} without its IPv4 fast path, which is tested against it. */
export function parseCidrReference(input: string): Result<Cidr, string> {
  if (input.length === 0) return err("empty CIDR");
  // Never trim: whitespace means a pasted or injected fragment ("10.0.0.0/8 -j ACCEPT").
  if (/\s/.test(input)) return err(`whitespace is not allowed: ${quoteInput(input)}`);

  const slash = input.indexOf("/");
  if (slash < 0) return err(`missing "/" and prefix length in ${quoteInput(input)}`);
  if (input.indexOf("/", slash + 1) >= 0) return err(`more than one "/" in ${quoteInput(input)}`);

  const host = input.slice(0, slash);
  if (host.length === 0) return err(`missing address before "/"`);
  if (host.includes("%")) return err(`zones are not allowed: ${quoteInput(host)}`);
  const parsed = host.includes(":") ? parseIpv6(host) : parseIpv4(host);
  if (!parsed.ok) return parsed;
  const { family, address } = parsed.value;
  const parsedPrefix = parsePrefix(input.slice(slash + 1), family);
  if (!parsedPrefix.ok) return parsedPrefix;
  const prefix = parsedPrefix.value;

  // Go accepts ::ffff:a.b.c.d, but the kernel never hands IPv4-mapped addresses to ip6tables.
  if (family === "ipv6" && address >> 32n === 0xffffn) {
    const v4Prefix = prefix - 96;
    const hint = v4Prefix >= 0
      ? `the IPv4 CIDR ${formatIpv4(address & networkMask(32, v4Prefix))}/${v4Prefix}`
      : "an IPv4 CIDR";
    return err(
      `${quoteInput(input)} is IPv4-mapped and never matches in ip6tables; write ${hint} instead`,
    );
  }

  const network = address & networkMask(familyBits(family), prefix);
  const text = (value: bigint) => `${formatAddress(family, value)}/${prefix}`;
  if (network !== address) {
    return err(`${quoteInput(input)} is not aligned: the network is ${text(network)}`);
  }
  return ok({ family, address, prefix, text: text(address) });
}

/** A CIDR written in the code (a default, link-local): one that does not parse is a bug. */
export function parseBuiltInCidr(text: string): Cidr {
  const parsed = parseCidr(text);
  if (!parsed.ok) throw new Error(`built-in CIDR ${text} does not parse: ${parsed.error}`);
  return parsed.value;
}

/** Whether every address of `inner` is inside `outer`; false for different families. */
export function contains(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || outer.prefix > inner.prefix) return false;
  // Mask both sides: Cidr is a plain interface, so a hand-built value may be unaligned.
  const mask = networkMask(familyBits(outer.family), outer.prefix);
  return (outer.address & mask) === (inner.address & mask);
}

/**
 * For a CIDR, the longest of `cidrs` containing it (strictly, unless `orEqual`): one lookup per
 * prefix length, since a raised cidrLimit allows tens of thousands of each.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { longestContaining, parseBuiltInCidr as cidr } from "./cidr.ts";
 *
 * const around = longestContaining(["10.0.0.0/8", "10.1.0.0/16"].map(cidr), { orEqual: false });
 * assert.equal(around(cidr("10.1.2.0/24"))?.text, "10.1.0.0/16");
 * assert.equal(around(cidr("10.1.0.0/16"))?.text, "10.0.0.0/8");
 * assert.equal(around(cidr("192.168.0.0/16")), undefined);
 * ```
 */
export function longestContaining(
  cidrs: readonly Cidr[],
  options: { readonly orEqual: boolean },
): (cidr: Cidr) => Cidr | undefined {
  // Per family, the CIDRs of each prefix length by network address: a lookup builds no key and
  // skips the lengths nobody uses.
  const levels: Record<Family, Map<bigint, Cidr>[]> = { ipv4: [], ipv6: [] };
  for (const cidr of cidrs) {
    (levels[cidr.family][cidr.prefix] ??= new Map()).set(cidr.address, cidr);
  }
  return (cidr) => {
    const byPrefix = levels[cidr.family];
    for (let prefix = cidr.prefix - (options.orEqual ? 0 : 1); prefix >= 0; prefix--) {
      const level = byPrefix[prefix];
      if (level === undefined) continue;
      const hostBits = BigInt(familyBits(cidr.family) - prefix);
      const found = level.get((cidr.address >> hostBits) << hostBits);
      if (found) return found;
    }
    return undefined;
  };
}

/** ipv4 before ipv6, then by address, then shorter prefix first. */
export function compareCidrs(a: Cidr, b: Cidr): number {
  if (a.family !== b.family) return a.family === "ipv4" ? -1 : 1;
  if (a.address !== b.address) return a.address < b.address ? -1 : 1;
  return a.prefix - b.prefix;
}

function networkMask(bits: number, prefix: number): bigint {
  return ((1n << BigInt(bits)) - 1n) ^ ((1n << BigInt(bits - prefix)) - 1n);
}

/** Go's dtoi: ASCII digits only, leading zeros allowed ("/08" is 8), no sign. */
function parsePrefix(text: string, family: Family): Result<number, string> {
  if (text.length === 0) return err("prefix length is empty");
  if (!/^[0-9]+$/.test(text)) {
    return err(`prefix length ${quoteInput(text)} must be decimal digits`);
  }
  const max = familyBits(family);
  const digits = text.replace(/^0+(?=.)/, "");
  const value = digits.length > 3 ? Infinity : Number(digits);
  if (value > max) {
    const name = family === "ipv4" ? "IPv4" : "IPv6";
    return err(`prefix length ${quoteInput(digits)} is too large for ${name} (max ${max})`);
  }
  return ok(value);
}

function parseIpv4(text: string) {
  const parts = text.split(".");
  if (parts.length === 1) return err(`${quoteInput(text)} is not an IPv4 or IPv6 address`);
  if (parts.length !== 4) {
    return err(`IPv4 address ${quoteInput(text)} has ${parts.length} parts, want 4`);
  }
  let address = 0n;
  for (const part of parts) {
    if (part.length === 0) return err("IPv4 address has an empty octet");
    if (!/^[0-9]+$/.test(part)) return err(`octet ${quoteInput(part)} is not a decimal number`);
    // Leading zeros are rejected because other tools read them as octal.
    if (/^0./.test(part)) return err(`octet ${quoteInput(part)} has a leading zero`);
    if (Number(part) > 255) return err(`octet ${quoteInput(part)} is greater than 255`);
    address = (address << 8n) | BigInt(part);
  }
  return ok({ family: "ipv4" as const, address });
}

function parseIpv6(text: string) {
  // ":::" would otherwise split into an empty group next to "::".
  if (text.includes(":::")) return err(`too many colons in ${quoteInput(text)}`);
  const halves = text.split("::");
  if (halves.length > 2) return err(`more than one "::" in ${quoteInput(text)}`);
  const groups = halves.map((half) => (half === "" ? [] : half.split(":")));
  const all = groups.flat();
  const words: [number[], number[]] = [[], []];
  for (const [i, group] of all.entries()) {
    const side = words[i < groups[0].length ? 0 : 1];
    if (group.includes(".")) {
      // Only the final 32 bits may be written as dotted IPv4.
      if (i !== all.length - 1 || text.endsWith("::")) {
        return err(`embedded IPv4 must be at the end of ${quoteInput(text)}`);
      }
      const v4 = parseIpv4(group);
      if (!v4.ok) return v4;
      side.push(Number(v4.value.address >> 16n), Number(v4.value.address & 0xffffn));
      continue;
    }
    if (group.length === 0) return err(`empty group in ${quoteInput(text)}`);
    if (!/^[0-9a-fA-F]+$/.test(group)) return err(`group ${quoteInput(group)} is not hexadecimal`);
    if (group.length > 4) return err(`group ${quoteInput(group)} has more than 4 hex digits`);
    side.push(parseInt(group, 16));
  }
  const count = words[0].length + words[1].length;
  if (halves.length === 1 && count !== 8) {
    return err(`IPv6 address ${quoteInput(text)} has ${count} groups, want 8`);
  }
  if (halves.length === 2 && count > 7) {
    return err(`"::" must stand for at least one zero group in ${quoteInput(text)}`);
  }
  const expanded = [...words[0], ...new Array<number>(8 - count).fill(0), ...words[1]];
  const address = expanded.reduce((value, word) => (value << 16n) | BigInt(word), 0n);
  return ok({ family: "ipv6" as const, address });
}

/** The canonical spelling of an address, as iptables-save and nft print it. */
export function formatAddress(family: Family, address: bigint): string {
  return family === "ipv4" ? formatIpv4(address) : formatIpv6(address);
}

function formatIpv4(address: bigint): string {
  return [24, 16, 8, 0].map((shift) => (Number(address) >>> shift) & 0xff).join(".");
}

/** RFC 5952, matching Go's net.IP.String() for non-mapped addresses. */
function formatIpv6(address: bigint): string {
  const words: number[] = [];
  for (let i = 7; i >= 0; i--) words.push(Number((address >> BigInt(i * 16)) & 0xffffn));
  // Longest run of two or more zero groups (RFC 5952); the first one wins a tie.
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < 8; start++) {
    let end = start;
    while (end < 8 && words[end] === 0) end++;
    if (end - start > bestLength) [bestStart, bestLength] = [start, end - start];
  }
  const hex = (part: number[]) => part.map((word) => word.toString(16)).join(":");
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLength))}`;
}

/** The link-local range of each family: exempt from masquerade unless masqLinkLocal(IPv6). */
export const linkLocalRanges: Readonly<Record<Family, string>> = {
  ipv4: "169.254.0.0/16",
  ipv6: "fe80::/10",
};
