/**
 * Reading our table back from `nft -j list table`. Anyone with CAP_NET_ADMIN can write into it, so
 * it is untrusted input: anything we did not write differs (and the plan replaces the table), and
 * nothing crashes the parser. Our rule expressions become the text `nft list` prints (render.ts);
 * any other becomes a marker no rule of ours equals.
 *
 * @module
 */

import { type Family, familyBits, parseCidr } from "../net/cidr.ts";
import { type AddressInterval, byStart, cidrInterval } from "../net/intervals.ts";
import { nftFamily, nftTableName } from "./render.ts";
import { nftMarkText } from "../settings/output.ts";
import { quoteInput } from "../base/quote.ts";

/** A set in our table, as read. */
export interface LiveNftSet {
  /** Its name (anything a writer chose; quote it before showing it). */
  readonly name: string;
  /** Its element type, e.g. `ipv4_addr`; a description when not a plain string. */
  readonly type: string;
  /** Its flags, sorted. */
  readonly flags: readonly string[];
  /** The elements, sorted; null when one of them is not a plain address, prefix or range. */
  readonly elements: readonly AddressInterval[] | null;
  /** Properties we never set (timeout, size, comment, ...), by name. */
  readonly extras: readonly string[];
}

/** A chain in our table, as read. */
export interface LiveNftChain {
  /** Its name. */
  readonly name: string;
  /** Base chain properties, undefined for a regular chain. */
  readonly type?: string;
  /** The hook of a base chain (`postrouting`). */
  readonly hook?: string;
  /** Its priority, as a number (`srcnat` is 100). */
  readonly priority?: number;
  /** Its policy (`accept`). */
  readonly policy?: string;
  /** Properties we never set, by name. */
  readonly extras: readonly string[];
  /** Its rules in order, each as the text `nft list` prints for the expressions we write. */
  readonly rules: readonly string[];
}

/** Our table of one family as `nft -j` listed it. */
export interface LiveNftTable {
  /** Every set. */
  readonly sets: readonly LiveNftSet[];
  /** Every chain, in listing order. */
  readonly chains: readonly LiveNftChain[];
  /** Objects of kinds we never create (maps, counters, flowtables, ...), described. */
  readonly others: readonly string[];
}

/** What one read of our table found. */
export type LiveNftRead =
  | { readonly kind: "missing" }
  | { readonly kind: "table"; readonly table: LiveNftTable }
  /** The listing was not what nft prints; the table is replaced. */
  | { readonly kind: "unreadable"; readonly reason: string };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The single key of a `{ "kind": body }` object, or undefined. */
function singleKey(value: unknown): [string, unknown] | undefined {
  const entries = isObject(value) ? Object.entries(value) : [];
  return entries.length === 1 ? entries[0] : undefined;
}

/**
 * Parses the listing of our table of `family`, ignoring other tables; not nft's JSON: `unreadable`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseNftTable } from "./parse.ts";
 *
 * const ours = { family: "ip", table: "ip-masq-agent" };
 * const listing = JSON.stringify({ nftables: [
 *   { table: { family: "ip", name: "ip-masq-agent" } },
 *   { chain: { ...ours, name: "postrouting", type: "nat", hook: "postrouting", prio: 100 } },
 *   { rule: { ...ours, chain: "postrouting", expr: [{ masquerade: { flags: "fully-random" } }] } },
 * ] });
 * const read = parseNftTable(listing, "ipv4");
 * assert.ok(read.kind === "table");
 * assert.deepEqual(read.table.chains[0].rules, ["masquerade fully-random"]);
 * ```
 */
export function parseNftTable(listing: string, family: Family): LiveNftRead {
  let parsed: unknown;
  try {
    parsed = JSON.parse(listing);
  } catch (error) {
    return { kind: "unreadable", reason: `not JSON: ${quoteInput(String(error))}` };
  }
  if (!isObject(parsed) || !Array.isArray(parsed.nftables)) {
    return { kind: "unreadable", reason: "no nftables array" };
  }
  const sets: LiveNftSet[] = [];
  const chains: LiveNftChain[] = [];
  const rulesByChain = new Map<string, string[]>();
  const rulesOf = (chain: unknown) =>
    rulesByChain.getOrInsert(typeof chain === "string" ? chain : "", []);
  const others: string[] = [];
  let tableSeen = false;
  const inOurTable = (body: Record<string, unknown>, key: "table" | "name") =>
    body.family === nftFamily(family) && body[key] === nftTableName;

  for (const entry of parsed.nftables) {
    const [kind, body] = singleKey(entry) ?? [];
    if (kind === undefined) others.push("an entry that is not one object of one kind");
    else if (kind === "metainfo") continue;
    else if (!isObject(body)) others.push(`a ${quoteInput(kind)} entry without properties`);
    else if (kind === "table") tableSeen ||= inOurTable(body, "name");
    else if (!inOurTable(body, "table")) continue; // another table's
    else if (kind === "set") sets.push(readSet(body, family));
    else if (kind === "chain") chains.push({ ...readChain(body), rules: rulesOf(body.name) });
    else if (kind === "rule") rulesOf(body.chain).push(ruleText(body, family));
    else {
      const name = typeof body.name === "string" ? ` ${quoteInput(body.name)}` : "";
      others.push(`${quoteInput(kind)}${name}`);
    }
  }
  if (!tableSeen && sets.length + chains.length + rulesByChain.size === 0) {
    return { kind: "missing" };
  }
  if (!tableSeen) return { kind: "unreadable", reason: "objects of our table, but no table entry" };
  const declared = new Set(chains.map(({ name }) => name));
  for (const name of rulesByChain.keys()) {
    if (!declared.has(name)) others.push(`rules of an undeclared chain ${quoteInput(name)}`);
  }
  return { kind: "table", table: { sets, chains, others } };
}

function extrasOf(body: Record<string, unknown>, known: readonly string[]): string[] {
  return Object.keys(body).filter((key) => !known.includes(key)).sort();
}

function readSet(body: Record<string, unknown>, family: Family): LiveNftSet {
  const flags = Array.isArray(body.flags)
    ? body.flags.map((flag) => (typeof flag === "string" ? flag : "?")).sort()
    : typeof body.flags === "string"
    ? [body.flags]
    : [];
  const { elem = [] } = body; // only an absent `elem` is an empty set
  const elements = Array.isArray(elem) ? elem.map((item) => readAddressValue(item, family)) : null;
  return {
    name: typeof body.name === "string" ? body.name : "",
    type: typeof body.type === "string" ? body.type : "(not a plain type)",
    flags,
    elements: elements?.every((element) => element !== undefined) ? elements.sort(byStart) : null,
    extras: extrasOf(body, ["family", "name", "table", "type", "handle", "flags", "elem"]),
  };
}

/** An address (`"10.0.0.1"`), `{prefix: {addr, len}}` or `{range: [a, b]}` of `family`. */
function readAddressValue(value: unknown, family: Family): AddressInterval | undefined {
  if (typeof value === "string") return readPrefix(value, family);
  const [kind, body] = singleKey(value) ?? [];
  // parseCidr rejects a length that is not an integer from 0 to the family's bits.
  if (kind === "prefix" && isObject(body) && typeof body.len === "number") {
    return readPrefix(body.addr, family, body.len);
  }
  if (kind !== "range" || !Array.isArray(body) || body.length !== 2) return undefined;
  const [first, last] = body.map((end) => readPrefix(end, family));
  if (!first || !last || first.start > last.start) return undefined;
  return { start: first.start, end: last.start };
}

function readPrefix(address: unknown, family: Family, len: number = familyBits(family)) {
  // Bounded before parsing: a hostile element may be megabytes long.
  if (typeof address !== "string" || address.length > 64) return undefined;
  const parsed = parseCidr(`${address}/${len}`);
  if (!parsed.ok || parsed.value.family !== family) return undefined;
  return cidrInterval(parsed.value);
}

function readChain(body: Record<string, unknown>): Omit<LiveNftChain, "rules"> {
  const text = (value: unknown) => (typeof value === "string" ? value : undefined);
  return {
    name: text(body.name) ?? "",
    type: text(body.type),
    hook: text(body.hook),
    priority: typeof body.prio === "number" ? body.prio : undefined,
    policy: text(body.policy),
    extras: extrasOf(body, ["family", "table", "name", "handle", "type", "hook", "prio", "policy"]),
  };
}

/** A rule as the text of the expressions we write; `<...>` marks anything else. */
function ruleText(body: Record<string, unknown>, family: Family): string {
  const words: string[] = [];
  if (!Array.isArray(body.expr)) words.push("<a rule without expressions>");
  else for (const expression of body.expr) words.push(expressionText(expression, family));
  if (body.comment !== undefined) words.push(`comment ${quoteInput(String(body.comment))}`);
  return words.join(" ");
}

function expressionText(expression: unknown, family: Family): string {
  const [kind, body] = singleKey(expression) ?? [];
  if (kind === undefined) return "<?>";
  if (kind === "return") return body === null ? "return" : "<return>";
  if (kind === "match") return matchText(body, family) ?? "<match>";
  if (kind === "masquerade") return masqueradeText(body) ?? "<masquerade>";
  if (kind === "snat") return snatText(body, family) ?? "<snat>";
  return `<${quoteInput(kind.slice(0, 32))}>`;
}

function matchText(body: unknown, family: Family): string | undefined {
  if (!isObject(body)) return undefined;
  const [kind, what] = singleKey(body.left) ?? [];
  const right = body.right;
  if (body.op === "<" && kind === "numgen" && isObject(what)) {
    const { mode, mod, offset } = what;
    const plain = mode === "random" && (offset === undefined || offset === 0);
    // nft 1.0.6 prints a modulus of 2^31 and above as a signed 32-bit number.
    return plain && Number.isInteger(mod) && Number.isInteger(right)
      ? `numgen random mod ${Number(mod) >>> 0} < ${right}`
      : undefined;
  }
  if (body.op !== "==") return undefined;
  if (kind === "&") return markText(what, right);
  if (!isObject(what)) return undefined;
  if (kind === "fib") {
    const flags = [what.flags].flat();
    const local = what.result === "type" && flags.length === 1 && flags[0] === "daddr";
    return local && right === "local" ? "fib daddr type local" : undefined;
  }
  if (kind === "payload" && what.protocol === nftFamily(family)) {
    const field = what.field === "daddr" || what.field === "saddr";
    const value = addressText(right, family);
    return field && value !== undefined ? `${what.protocol} ${what.field} ${value}` : undefined;
  }
  if (kind !== "meta" || typeof right !== "string") return undefined;
  // outputInterface: only names our config validation admits (nft's `*` wildcard).
  if (what.key === "oifname" && /^[!-~]{1,15}$/.test(right) && !/["'\\/:#]/.test(right)) {
    return `oifname "${right}"`;
  }
  return what.key === "l4proto" && /^[a-z]{1,8}$/.test(right) ? `meta l4proto ${right}` : undefined;
}

/** A set reference `@name` (only plain names), a prefix or a single address. */
function addressText(value: unknown, family: Family): string | undefined {
  if (typeof value === "string" && value.startsWith("@")) {
    return /^@[A-Za-z0-9_.-]{1,64}$/.test(value) ? value : undefined;
  }
  if (!readAddressValue(value, family)) return undefined;
  if (typeof value === "string") return value;
  const [kind, prefix] = singleKey(value) ?? [];
  return kind === "prefix" && isObject(prefix) ? `${prefix.addr}/${prefix.len}` : undefined;
}

/** `meta mark & 0x00004000 == 0x00004000`: the kube-proxy mark check of insert mode. */
function markText(operands: unknown, right: unknown): string | undefined {
  if (!Array.isArray(operands) || operands.length !== 2) return undefined;
  const meta = singleKey(operands[0]);
  if (meta?.[0] !== "meta" || !isObject(meta[1]) || meta[1].key !== "mark") return undefined;
  const [, mask] = operands;
  const valid = (n: unknown): n is number =>
    typeof n === "number" && Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
  if (!valid(mask) || !valid(right)) return undefined;
  return `meta mark & ${nftMarkText(mask)} == ${nftMarkText(right)}`;
}

/** An object with no keys but `known`. */
function onlyKeys(body: unknown, known: readonly string[]): body is Record<string, unknown> {
  return isObject(body) && extrasOf(body, known).length === 0;
}

/**
 * `snat to ip saddr` (insert mode's identity binding) or `snat to ADDR[:FIRST-LAST]`
 * (`outputAddress`; IPv6 with ports in brackets), with `fully-random`.
 */
function snatText(body: unknown, family: Family): string | undefined {
  if (!onlyKeys(body, ["addr", "port", "flags"])) return undefined;
  const addr = singleKey(body.addr);
  if (addr?.[0] === "payload" && isObject(addr[1])) {
    const { protocol, field } = addr[1];
    const identity = protocol === nftFamily(family) && field === "saddr" && body.port === undefined;
    return identity ? withFlags(`snat to ${protocol} saddr`, body.flags) : undefined;
  }
  // A string element is one address: a prefix or range has a `/` or `-`, which parseCidr rejects.
  if (typeof body.addr !== "string" || !readPrefix(body.addr, family)) return undefined;
  const host = family === "ipv6" ? `[${body.addr}]` : body.addr;
  return withPorts(`snat to ${body.addr}`, `snat to ${host}`, body);
}

function masqueradeText(body: unknown): string | undefined {
  if (body === null) return "masquerade";
  if (!onlyKeys(body, ["port", "flags"])) return undefined;
  return withPorts("masquerade", "masquerade to ", body);
}

/** `text`, or `ported:FIRST-LAST` for a port number or `{ range: [FIRST, LAST] }`; then flags. */
function withPorts(text: string, ported: string, { port, flags }: Record<string, unknown>) {
  if (port === undefined) return withFlags(text, flags);
  if (Number.isInteger(port)) return withFlags(`${ported}:${port}-${port}`, flags);
  const [kind, ends] = singleKey(port) ?? [];
  if (kind !== "range" || !Array.isArray(ends) || ends.length !== 2) return undefined;
  return ends.every(Number.isInteger) ? withFlags(`${ported}:${ends.join("-")}`, flags) : undefined;
}

/** ` fully-random` when that is the one flag; undefined for any other flag. */
function withFlags(text: string, flags: unknown): string | undefined {
  if (flags === undefined) return text;
  const list = [flags].flat();
  return list.length === 1 && list[0] === "fully-random" ? `${text} fully-random` : undefined;
}
