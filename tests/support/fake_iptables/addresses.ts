/**
 * Addresses as iptables prints them, written independently of
 * lib/net/cidr.ts so the fake can disagree with it.
 *
 * @module
 */

import type { Family } from "../../../lib/net/cidr.ts";
import { RestoreProblem } from "./restore_problem.ts";

export function normalizeAddress(text: string, family: Family): string {
  const slash = text.indexOf("/");
  const host = slash < 0 ? text : text.slice(0, slash);
  const bits = family === "ipv4" ? 32 : 128;
  const address = family === "ipv4" ? parseIpv4(host) : parseIpv6(host);
  if (address === undefined) throw new RestoreProblem(`host/network \`${host}' not found`);
  const prefixText = slash < 0 ? String(bits) : text.slice(slash + 1);
  const prefix = /^\d+$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= bits)) {
    throw new RestoreProblem(`invalid mask \`${prefixText}' specified`);
  }
  const all = (1n << BigInt(bits)) - 1n;
  const network = address & (all ^ ((1n << BigInt(bits - prefix)) - 1n));
  return `${family === "ipv4" ? formatIpv4(network) : formatIpv6(network)}/${prefix}`;
}

function parseIpv4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((part) => /^\d{1,3}$/.test(part))) return undefined;
  if (parts.some((part) => Number(part) > 255)) return undefined;
  return parts.reduce((sum, part) => (sum << 8n) | BigInt(part), 0n);
}

function formatIpv4(address: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((address >> shift) & 0xffn)).join(".");
}

function parseIpv6(text: string): bigint | undefined {
  // A dotted IPv4 tail (`::ffff:1.2.3.4`) stands for the last two groups, as inet_pton reads it.
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const v4 = parseIpv4(dotted[2]);
    if (v4 === undefined) return undefined;
    const hex = `${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
    return parseIpv6(`${dotted[1]}${hex}`);
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (half: string) => (half === "" ? [] : half.split(":"));
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  if (!all.every((group) => /^[0-9a-fA-F]{1,4}$/.test(group))) return undefined;
  return all.reduce((sum, group) => (sum << 16n) | BigInt(`0x${group}`), 0n);
}

/** inet_ntop: lowercase, the longest run of two or more zero groups (the first on a tie) as `::`. */
function formatIpv6(address: bigint): string {
  const groups = Array.from(
    { length: 8 },
    (_, index) => Number((address >> BigInt(16 * (7 - index))) & 0xffffn),
  );
  let best = { start: -1, length: 0 };
  for (let start = 0; start < 8;) {
    let length = 0;
    while (start + length < 8 && groups[start + length] === 0) length++;
    if (length > best.length) best = { start, length };
    start += Math.max(length, 1);
  }
  // glibc's inet_ntop prints IPv4-compatible (`::a.b.c.d`: six zero groups, then two not both
  // zero... the seventh non-zero) and IPv4-mapped (`::ffff:a.b.c.d`) addresses with a dotted
  // tail; `::2` stays `::2` (checked against iptables 1.8.9).
  const v4 = () => formatIpv4(address & 0xffffffffn);
  if (best.start === 0 && best.length === 6) return `::${v4()}`;
  if (best.start === 0 && best.length === 5 && groups[5] === 0xffff) return `::ffff:${v4()}`;
  const hex = groups.map((group) => group.toString(16));
  if (best.length < 2) return hex.join(":");
  const head = hex.slice(0, best.start).join(":");
  const tail = hex.slice(best.start + best.length).join(":");
  return `${head}::${tail}`;
}
