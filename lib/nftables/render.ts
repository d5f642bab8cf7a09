/**
 * Our nftables table per family and its `nft -f` text: an interval set of the destinations that
 * keep the pod's source and one nat postrouting chain deciding as the iptables chain does. Rules
 * are kept as `nft list` prints them, so a table read back (parse.ts) compares as text.
 *
 * @module
 */

import { type Cidr, contains, type Family } from "../net/cidr.ts";
import {
  type AddressInterval,
  cidrInterval,
  formatInterval,
  longestPrefixKeep,
  mergeIntervals,
} from "../net/intervals.ts";
import { nftInterfaceName, nftMarkText } from "../settings/output.ts";
import {
  type DesiredChain,
  exemptionsAreFinal,
  kubeProxyMarkOf,
  probabilityScale,
  toPortsProtocols,
  toPortsSplit,
} from "../policy/chain.ts";

/** Our table's name in both families. */
export const nftTableName = "ip-masq-agent";
/** Our one base chain. */
export const nftChainName = "postrouting";
const destinationSet = "nonmasq-dst";
const sourceSet = "nonmasq-src"; // `nonMasqueradeSrcCIDRs`
/** The priority `srcnat` stands for; `nft -j` prints the number. */
export const srcnatPriority = 100;
// With `--postrouting-jump=insert`, our chain runs just before every `srcnat` chain: the first nat
// chain that binds a connection decides, so our identity binding and our masquerade win.
const insertPriority = srcnatPriority - 1;

/** `ip` for IPv4, `ip6` for IPv6: nft's table family. */
export function nftFamily(family: Family): "ip" | "ip6" {
  return family === "ipv4" ? "ip" : "ip6";
}

/** The nft type of a set of addresses of `family`. */
export function nftAddressType(family: Family): string {
  return family === "ipv4" ? "ipv4_addr" : "ipv6_addr";
}

/** `table ip ip-masq-agent`: how commands name our table of `family`. */
export function nftTableSpec(family: Family): string {
  return `table ${nftFamily(family)} ${nftTableName}`;
}

/** One interval set of ours. */
export interface NftSetState {
  /** The set's name. */
  readonly name: string;
  /** Sorted, merged: exactly what the set must hold. */
  readonly elements: readonly AddressInterval[];
}

/** Our table of one family as data: its sets and the chain's rules. */
export interface NftDesired {
  /** The family of the table. */
  readonly family: Family;
  /** The destination set, and the source set when sources are exempt. */
  readonly sets: readonly NftSetState[];
  /** The chain's rules, each as `nft list` prints it. */
  readonly rules: readonly string[];
  /** The chain's priority: `srcnat - 1` with `--postrouting-jump=insert`; absent: srcnat. */
  readonly priority?: number;
}

/**
 * The table that gives `desired`'s masquerade decision for every packet.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mergeConfigs } from "../config/merge.ts";
 * import { desiredChain } from "../policy/chain.ts";
 * import { nftDesired } from "./render.ts";
 *
 * const { config } = mergeConfigs([], { nomasqAllReservedRanges: false }); // the defaults
 * const chain = desiredChain(config, "ipv4", "IP-MASQ-AGENT", { randomFully: true, toPorts: [] });
 * assert.deepEqual(nftDesired(chain).rules, [
 *   "fib daddr type local return",
 *   "ip daddr 169.254.0.0/16 return",
 *   "ip daddr @nonmasq-dst return",
 *   "masquerade fully-random",
 * ]);
 * ```
 */
export function nftDesired(desired: DesiredChain): NftDesired {
  const { family, linkLocal, masquerade, outputInterface } = desired;
  const ip = nftFamily(family);
  const ofFamily = (cidrs: readonly { value: Cidr }[] = []) =>
    cidrs.map((cidr) => cidr.value).filter((cidr) => cidr.family === family);
  const exceptions = ofFamily(desired.masqueradeExceptions);
  // Link-local takes part in the longest-prefix match (decision.ts): an exception inside it
  // masquerades. Only then does it join the set; otherwise it keeps its own rule, as in iptables.
  const ownRule = linkLocal &&
      exceptions.some((cidr) => contains(linkLocal.value, cidr) || contains(cidr, linkLocal.value))
    ? undefined
    : linkLocal;
  const exempt = desired.exemptions.filter((cidr) => cidr !== ownRule).map((c) => c.value);
  const sources = ofFamily(desired.sourceExemptions);

  const sets: NftSetState[] = [];
  const rules: string[] = [];
  // Insert mode: `return` would leave the connection to the next nat chain, which may
  // masquerade it; binding its source to itself decides it here, as no binding would have.
  const final = exemptionsAreFinal(desired);
  const keep = final ? `snat to ${ip} saddr` : "return";
  if (final) {
    // The local check first, as the iptables jump's `! --dst-type LOCAL` comes before the chain.
    const mark = nftMarkText(kubeProxyMarkOf(desired)!);
    rules.push("fib daddr type local return", `meta mark & ${mark} == ${mark} return`);
  }
  if (sources.length > 0) {
    sets.push({ name: sourceSet, elements: mergeIntervals(sources.map(cidrInterval)) });
    rules.push(`${ip} saddr @${sourceSet} ${keep}`);
  }
  if (!final) rules.push("fib daddr type local return");
  if (ownRule) rules.push(`${ip} daddr ${ownRule.value.text} ${keep}`);
  sets.push({ name: destinationSet, elements: longestPrefixKeep(exempt, exceptions) });
  rules.push(`${ip} daddr @${destinationSet} ${keep}`);

  const fullyRandom = masquerade.randomFully ? " fully-random" : "";
  const oif = outputInterface ? `oifname "${nftInterfaceName(outputInterface.value)}" ` : "";
  const address = desired.outputAddress?.value;
  const host = address?.family === "ipv6" ? `[${address.text}]` : address?.text;
  const split = toPortsSplit(masquerade.toPorts);
  for (const protocol of toPortsProtocols) {
    for (const { range, stored } of split) {
      const numgen = stored === undefined
        ? ""
        : ` numgen random mod ${probabilityScale} < ${stored}`;
      const ports = `${range.first}-${range.last}`;
      const action = host === undefined ? `masquerade to :${ports}` : `snat to ${host}:${ports}`;
      rules.push(`${oif}meta l4proto ${protocol}${numgen} ${action}${fullyRandom}`);
    }
  }
  const action = address === undefined ? "masquerade" : `snat to ${address.text}`;
  rules.push(`${oif}${action}${fullyRandom}`);
  return { family, sets, rules, ...(final ? { priority: insertPriority } : {}) };
}

/** The table as one `nft -f` block, one set element a line, the chain as `nft list` prints it. */
function renderNftTable({ family, sets, rules, priority }: NftDesired): string {
  const chainPriority = priority === insertPriority ? "srcnat - 1" : "srcnat";
  return [
    `${nftTableSpec(family)} {`,
    ...sets.flatMap(({ name, elements }) => {
      const lines = elements.map((element) => `\t\t\t${formatInterval(family, element)}`);
      return [
        `\tset ${name} {`,
        `\t\ttype ${nftAddressType(family)}`,
        "\t\tflags interval",
        ...(lines.length > 0 ? ["\t\telements = {", lines.join(",\n"), "\t\t}"] : []),
        "\t}",
      ];
    }),
    `\tchain ${nftChainName} {`,
    `\t\ttype nat hook postrouting priority ${chainPriority}; policy accept;`,
    ...rules.map((rule) => `\t\t${rule}`),
    "\t}",
    "}",
    "",
  ].join("\n");
}

/**
 * One atomic transaction that replaces whatever our table holds (or creates it): declaring an
 * existing table is a no-op, so the delete always finds one.
 */
export function renderNftReplace(desired: NftDesired): string {
  return renderNftRemoval(desired.family) + renderNftTable(desired);
}

/** `nft -f` input that takes a node without our table to `desired` (for --dry-run). */
export function renderNftFromEmpty(desired: DesiredChain): string {
  return renderNftTable(nftDesired(desired));
}

/** Removes our table of `family`, whatever it holds, and only it. */
export function renderNftRemoval(family: Family): string {
  const table = nftTableSpec(family);
  return `${table}\ndelete ${table}\n`;
}

/** The elements to delete and to add to bring one set to its desired elements. */
export interface NftElementChange {
  /** The set's name. */
  readonly set: string;
  /** Live elements not wanted, exactly as they are in the set. */
  readonly remove: readonly AddressInterval[];
  /** Wanted elements not in the set. */
  readonly add: readonly AddressInterval[];
}

/**
 * One transaction that changes only the elements that differ. Deletions come first: an added
 * interval may overlap one that goes, which nft accepts in the same transaction.
 */
export function renderNftElementChanges(
  family: Family,
  changes: readonly NftElementChange[],
): string {
  const prefix = `${nftFamily(family)} ${nftTableName}`;
  const lines = (verb: string, side: "remove" | "add") =>
    changes.filter((change) => change[side].length > 0).map((change) => {
      const elements = change[side].map((element) => formatInterval(family, element));
      return `${verb} element ${prefix} ${change.set} { ${elements.join(", ")} }\n`;
    });
  return [...lines("delete", "remove"), ...lines("add", "add")].join("");
}
