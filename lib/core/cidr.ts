/**
 * CIDR parsing with Go `net.ParseCIDR` strictness, plus an alignment check.
 *
 * The agent turns these prefixes into iptables rules, so anything Go (the
 * original ip-masq-agent) would reject must be rejected here too, and what we
 * accept must print exactly as `iptables-save` / `ip6tables-save` print it so
 * that rule comparison is a plain string comparison.
 *
 * @module
 */

export type Family = "ipv4" | "ipv6";

/** A parsed, aligned prefix. `text` is the canonical form (what iptables-save prints). */
export interface Cidr {
  readonly family: Family;
  readonly address: bigint;
  readonly prefix: number;
  readonly text: string;
}

export type ParseCidrResult = { ok: true; cidr: Cidr } | { ok: false; reason: string };

type AddressResult = { ok: true; family: Family; address: bigint } | {
  ok: false;
  reason: string;
};

export function familyBits(family: Family): 32 | 128 {
  return family === "ipv4" ? 32 : 128;
}

export function parseCidr(input: string): ParseCidrResult {
  if (input.length === 0) return fail("empty CIDR");
  // Never trim: a value with whitespace is almost certainly a pasted or
  // injected fragment (e.g. "10.0.0.0/8 -j ACCEPT"), not a CIDR.
  if (/\s/.test(input)) return fail(`whitespace is not allowed: ${quote(input)}`);

  const slash = input.indexOf("/");
  if (slash < 0) return fail(`missing "/" and prefix length in ${quote(input)}`);
  if (input.indexOf("/", slash + 1) >= 0) return fail(`more than one "/" in ${quote(input)}`);

  const parsed = parseAddress(input.slice(0, slash));
  if (!parsed.ok) return parsed;
  const { family, address } = parsed;
  const bits = familyBits(family);

  const prefix = parsePrefix(input.slice(slash + 1), family);
  if (typeof prefix === "string") return fail(prefix);

  // Go accepts ::ffff:a.b.c.d, but the kernel never hands IPv4-mapped
  // addresses to ip6tables, so such a rule would silently match nothing.
  if (family === "ipv6" && address >> 32n === 0xffffn) {
    const v4Prefix = prefix - 96;
    const hint = v4Prefix >= 0
      ? `the IPv4 CIDR ${formatIpv4(address & networkMask(32, v4Prefix))}/${v4Prefix}`
      : "an IPv4 CIDR";
    return fail(
      `${quote(input)} is IPv4-mapped and never matches in ip6tables; write ${hint} instead`,
    );
  }

  const network = address & networkMask(bits, prefix);
  if (network !== address) {
    return fail(
      `${quote(input)} is not aligned: the network is ${formatAddress(family, network)}/${prefix}`,
    );
  }

  return {
    ok: true,
    cidr: { family, address, prefix, text: `${formatAddress(family, address)}/${prefix}` },
  };
}

/** A CIDR written in the code (a default, link-local): one that does not parse is a bug. */
export function parseBuiltInCidr(text: string): Cidr {
  const parsed = parseCidr(text);
  if (!parsed.ok) throw new Error(`built-in CIDR ${text} does not parse: ${parsed.reason}`);
  return parsed.cidr;
}

/** true when every address of `inner` is inside `outer` (same family only; different families -> false) */
export function contains(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || outer.prefix > inner.prefix) return false;
  // Mask both sides: Cidr is a plain interface, so a hand-built value may be unaligned.
  const mask = networkMask(familyBits(outer.family), outer.prefix);
  return (outer.address & mask) === (inner.address & mask);
}

/** ipv4 before ipv6, then by address, then shorter prefix first. */
export function compareCidrs(a: Cidr, b: Cidr): number {
  if (a.family !== b.family) return a.family === "ipv4" ? -1 : 1;
  if (a.address !== b.address) return a.address < b.address ? -1 : 1;
  return a.prefix - b.prefix;
}

function fail(reason: string): { ok: false; reason: string } {
  return { ok: false, reason };
}

function networkMask(bits: number, prefix: number): bigint {
  const all = (1n << BigInt(bits)) - 1n;
  return all ^ ((1n << BigInt(bits - prefix)) - 1n);
}

/** Go's dtoi: ASCII digits only, leading zeros allowed ("/08" is 8), no sign. */
function parsePrefix(text: string, family: Family): number | string {
  if (text.length === 0) return "prefix length is empty";
  if (!/^[0-9]+$/.test(text)) return `prefix length ${quote(text)} must be decimal digits`;
  const max = familyBits(family);
  const digits = text.replace(/^0+(?=.)/, "");
  const value = digits.length > 3 ? Infinity : Number(digits);
  if (value > max) {
    const name = family === "ipv4" ? "IPv4" : "IPv6";
    return `prefix length ${quote(digits)} is too large for ${name} (max ${max})`;
  }
  return value;
}

function parseAddress(text: string): AddressResult {
  if (text.length === 0) return fail(`missing address before "/"`);
  if (text.includes("%")) return fail(`zones are not allowed: ${quote(text)}`);
  return text.includes(":") ? parseIpv6(text) : parseIpv4(text);
}

function parseIpv4(text: string): AddressResult {
  const parts = text.split(".");
  if (parts.length === 1) return fail(`${quote(text)} is not an IPv4 or IPv6 address`);
  if (parts.length !== 4) {
    return fail(`IPv4 address ${quote(text)} has ${parts.length} parts, want 4`);
  }
  let address = 0n;
  for (const part of parts) {
    const octet = parseOctet(part);
    if (typeof octet === "string") return fail(octet);
    address = (address << 8n) | BigInt(octet);
  }
  return { ok: true, family: "ipv4", address };
}

function parseOctet(part: string): number | string {
  if (part.length === 0) return "IPv4 address has an empty octet";
  if (!/^[0-9]+$/.test(part)) return `octet ${quote(part)} is not a decimal number`;
  // Leading zeros are rejected because other tools read them as octal.
  if (part.length > 1 && part[0] === "0") return `octet ${quote(part)} has a leading zero`;
  if (part.length > 3 || Number(part) > 255) return `octet ${quote(part)} is greater than 255`;
  return Number(part);
}

function parseIpv6(text: string): AddressResult {
  // ":::" would otherwise split into an empty group next to "::".
  if (text.includes(":::")) return fail(`too many colons in ${quote(text)}`);
  const ellipsis = text.indexOf("::");
  if (ellipsis >= 0 && text.indexOf("::", ellipsis + 1) >= 0) {
    return fail(`more than one "::" in ${quote(text)}`);
  }

  const head = ellipsis < 0 ? text : text.slice(0, ellipsis);
  const tail = ellipsis < 0 ? "" : text.slice(ellipsis + 2);
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === "" ? [] : tail.split(":");
  const lastIndex = headGroups.length + tailGroups.length - 1;

  const values: number[][] = [];
  for (const [i, group] of [...headGroups, ...tailGroups].entries()) {
    if (group.includes(".")) {
      // Only the final 32 bits may be written as dotted IPv4.
      if (i !== lastIndex || text.endsWith("::")) {
        return fail(`embedded IPv4 must be at the end of ${quote(text)}`);
      }
      const v4 = parseIpv4(group);
      if (!v4.ok) return v4;
      values.push([Number(v4.address >> 16n), Number(v4.address & 0xffffn)]);
      continue;
    }
    const value = parseHexGroup(group, text);
    if (typeof value === "string") return fail(value);
    values.push([value]);
  }

  const headWords = values.slice(0, headGroups.length).flat();
  const tailWords = values.slice(headGroups.length).flat();
  const count = headWords.length + tailWords.length;
  if (ellipsis < 0 && count !== 8) {
    return fail(`IPv6 address ${quote(text)} has ${count} groups, want 8`);
  }
  if (ellipsis >= 0 && count > 7) {
    return fail(`"::" must stand for at least one zero group in ${quote(text)}`);
  }

  const words = [...headWords, ...new Array<number>(8 - count).fill(0), ...tailWords];
  let address = 0n;
  for (const word of words) address = (address << 16n) | BigInt(word);
  return { ok: true, family: "ipv6", address };
}

function parseHexGroup(group: string, text: string): number | string {
  if (group.length === 0) return `empty group in ${quote(text)}`;
  if (!/^[0-9a-fA-F]+$/.test(group)) return `group ${quote(group)} is not hexadecimal`;
  if (group.length > 4) return `group ${quote(group)} has more than 4 hex digits`;
  return parseInt(group, 16);
}

function formatAddress(family: Family, address: bigint): string {
  return family === "ipv4" ? formatIpv4(address) : formatIpv6(address);
}

function formatIpv4(address: bigint): string {
  const n = Number(address);
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join(".");
}

/** RFC 5952, matching Go's net.IP.String() for non-mapped addresses. */
function formatIpv6(address: bigint): string {
  const words: number[] = [];
  for (let i = 7; i >= 0; i--) words.push(Number((address >> BigInt(i * 16)) & 0xffffn));

  // Longest run of two or more zero groups; the first one wins a tie.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
  }

  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(":");
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLength))}`;
}

/** Quotes user input for a reason: escaped so control characters stay visible, and bounded. */
function quote(text: string): string {
  const limit = 64;
  let out = "";
  for (let i = 0; i < Math.min(text.length, limit); i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 || c === 0x5c) out += `\\${text[i]}`;
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x09) out += "\\t";
    else if (c === 0x0d) out += "\\r";
    else if (c >= 0x20 && c < 0x7f) out += text[i];
    else out += `\\u{${c.toString(16)}}`;
  }
  return `"${out}${text.length > limit ? "…" : ""}"`;
}
