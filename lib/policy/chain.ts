/**
 * Our chain of one family as data, from the effective config and the rule-shaping flags: both
 * renderers and `decide()` work from it.
 *
 * @module
 */

import type { IpAddress } from "../net/address.ts";
import {
  type Cidr,
  compareCidrs,
  contains,
  type Family,
  linkLocalRanges,
  longestContaining,
  parseBuiltInCidr,
} from "../net/cidr.ts";
import type { EffectiveConfig } from "../config/merge.ts";
import { defaultKubeProxyMasqueradeBit, kubeProxyMark } from "../settings/output.ts";
import type { AgentFlags } from "../settings/flags.ts";
import { type PortRange, portRangeSize } from "../settings/ports.ts";
import { builtIn, type Located } from "../base/source.ts";

/** The protocols that get one `--to-ports` rule per range, in upstream v1's order. */
export const toPortsProtocols = ["tcp", "udp", "sctp"] as const;

/** How the final MASQUERADE rules are written. */
export interface MasqueradeOptions {
  /** Already combines `--random-fully` with the probed support of the iptables in use. */
  readonly randomFully: boolean;
  /** Source port ranges, one rule per range and protocol; empty for one plain rule. */
  readonly toPorts: readonly PortRange[];
}

/** Our chain for one family as data: what it exempts and how it masquerades. */
export interface DesiredChain {
  /** The family whose tools program it. */
  readonly family: Family;
  /** The chain's name (`--masq-chain`). */
  readonly chain: string;
  /** Destinations that RETURN: the built-in link-local range (if kept), then config order. */
  readonly exemptions: readonly Located<Cidr>[];
  /** The built-in link-local exemption, when first in `exemptions`: tell it by this, not `at`. */
  readonly linkLocal?: Located<Cidr>;
  /** `masqueradeCIDRs` of the family inside an exemption (the longest prefix decides). */
  readonly masqueradeExceptions?: readonly Located<Cidr>[];
  /** `nonMasqueradeSrcCIDRs` of the family: sources that RETURN before anything else. */
  readonly sourceExemptions?: readonly Located<Cidr>[];
  /** The rules after the exemptions. */
  readonly masquerade: MasqueradeOptions;
  /** `insert` keeps our jump first in POSTROUTING; absent means append, as upstream does. */
  readonly postroutingJump?: AgentFlags["postroutingJump"];
  /** Insert mode: kube-proxy's masquerade mark; such traffic leaves our chain first. */
  readonly kubeProxyMark?: number;
  /** `outputAddress` (`outputAddressIPv6`) of the family: the masquerade rules SNAT to it. */
  readonly outputAddress?: Located<IpAddress>;
  /** `outputInterface`: the masquerade rules match only traffic leaving by it. */
  readonly outputInterface?: Located<string>;
}

/**
 * Whether our exemptions are final (insert mode): they ACCEPT (iptables) or bind the source to
 * itself (nftables), so no later rule of another tool masquerades them.
 */
export function exemptionsAreFinal(desired: DesiredChain): boolean {
  return desired.postroutingJump === "insert";
}

/** The kube-proxy mark our chain leaves alone, in insert mode; undefined in append mode. */
export function kubeProxyMarkOf(desired: DesiredChain): number | undefined {
  if (!exemptionsAreFinal(desired)) return undefined;
  return desired.kubeProxyMark ?? kubeProxyMark(defaultKubeProxyMasqueradeBit);
}

/**
 * The desired chain of `family`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mergeConfigs } from "../config/merge.ts";
 * import { desiredChain } from "./chain.ts";
 *
 * const { config } = mergeConfigs([], { nomasqAllReservedRanges: false }); // the defaults
 * const chain = desiredChain(config, "ipv4", "IP-MASQ-AGENT", { randomFully: true, toPorts: [] });
 * const texts = chain.exemptions.map((cidr) => cidr.value.text);
 * assert.deepEqual(texts, ["169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]);
 * assert.equal(chain.linkLocal, chain.exemptions[0]);
 * ```
 */
export function desiredChain(
  config: EffectiveConfig,
  family: Family,
  chain: string,
  masquerade: MasqueradeOptions,
  options: Partial<Pick<AgentFlags, "postroutingJump" | "kubeProxyMasqueradeBit">> = {},
): DesiredChain {
  const key = family === "ipv4" ? "masqLinkLocal" : "masqLinkLocalIPv6";
  const linkLocal: Located<Cidr> | undefined = config[key].value ? undefined : {
    value: parseBuiltInCidr(linkLocalRanges[family]),
    at: builtIn(`link-local, ${key} is false`),
  };
  const exemptions = [
    ...(linkLocal ? [linkLocal] : []),
    // A configured link-local range would repeat the built-in exemption as a second rule.
    ...config.nonMasqueradeCidrs.filter((cidr) =>
      cidr.value.family === family && cidr.value.text !== linkLocal?.value.text
    ),
  ];
  const around = longestContaining(exemptions.map((cidr) => cidr.value), { orEqual: true });
  // An exception inside no exemption is masqueraded anyway (merge.ts reports it): no rule.
  const exceptions = config.masqueradeCidrs.filter((cidr) =>
    cidr.value.family === family && around(cidr.value) !== undefined
  );
  const sources = config.nonMasqueradeSrcCidrs.filter((cidr) => cidr.value.family === family);
  const outputAddress = family === "ipv4" ? config.outputAddress : config.outputAddressIPv6;
  const bit = options.kubeProxyMasqueradeBit ?? defaultKubeProxyMasqueradeBit;
  // Absent rather than empty, so a config without the newer keys gives the very same value.
  return {
    family,
    chain,
    exemptions,
    ...(linkLocal ? { linkLocal } : {}),
    ...(exceptions.length > 0 ? { masqueradeExceptions: exceptions } : {}),
    ...(sources.length > 0 ? { sourceExemptions: sources } : {}),
    masquerade,
    ...(options.postroutingJump === "insert"
      ? { postroutingJump: "insert" as const, kubeProxyMark: kubeProxyMark(bit) }
      : {}),
    ...(outputAddress ? { outputAddress } : {}),
    ...(config.outputInterface ? { outputInterface: config.outputInterface } : {}),
  };
}

/** One rule of our chain before the final masquerade rules: an exemption's or an exception's. */
export interface OrderedRule {
  /** `return` for an exemption, `masquerade` for a `masqueradeCIDRs` exception. */
  readonly action: "return" | "masquerade";
  /** The destination it matches. */
  readonly cidr: Located<Cidr>;
}

/**
 * The exemptions and exceptions in first-match order for longest-prefix semantics: when one lies
 * inside another with a different action, the inner one comes first; otherwise config order.
 * Not a stable sort by prefix: that would move longer exemptions ahead of unrelated shorter ones
 * and rewrite existing installs' chains on upgrade (tests/policy/chain_test.ts pins this).
 */
export function orderedRules(desired: DesiredChain): OrderedRule[] {
  const exceptions = desired.masqueradeExceptions ?? [];
  const items: OrderedRule[] = [
    ...desired.exemptions.map((cidr) => ({ action: "return" as const, cidr })),
    ...exceptions.map((cidr) => ({ action: "masquerade" as const, cidr })),
  ];
  if (exceptions.length === 0) return items;
  // Each item must precede its containers (open on a stack in sorted order) of another action.
  // An exception equal to the built-in link-local range sorts after it (exemptions are listed
  // first): the exception wins ties.
  const sorted = items.map((_, index) => index).sort((a, b) =>
    compareCidrs(items[a].cidr.value, items[b].cidr.value) || a - b
  );
  const outerOnes: number[][] = items.map(() => []);
  const waitingFor = items.map(() => 0);
  // An item that must precede others takes the earliest place among them, so unrelated RETURNs
  // keep their places; sorted order ranks every item's outer ones before it.
  const rank = items.map((_, index) => index);
  const open: number[] = [];
  for (const index of sorted) {
    while (
      open.length > 0 && !contains(items[open[open.length - 1]].cidr.value, items[index].cidr.value)
    ) open.pop();
    for (const outer of open) {
      if (items[outer].action === items[index].action) continue;
      outerOnes[index].push(outer);
      waitingFor[outer]++;
      rank[index] = Math.min(rank[index], rank[outer]);
    }
    open.push(index);
  }
  // Kahn's topological sort, always taking the ready item of the lowest (rank, position).
  const ready = new MinHeap();
  const key = (index: number) => rank[index] * items.length + index;
  waitingFor.forEach((count, index) => count === 0 && ready.push(key(index)));
  const order: OrderedRule[] = [];
  for (let next = ready.pop(); next !== undefined; next = ready.pop()) {
    const index = next % items.length;
    order.push(items[index]);
    for (const outer of outerOnes[index]) if (--waitingFor[outer] === 0) ready.push(key(outer));
  }
  return order;
}

class MinHeap {
  readonly #items: number[] = [];
  push(value: number): void {
    const items = this.#items;
    items.push(value);
    for (let i = items.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (items[parent] <= items[i]) break;
      [items[parent], items[i]] = [items[i], items[parent]];
      i = parent;
    }
  }
  pop(): number | undefined {
    const items = this.#items;
    const top = items[0];
    const last = items.pop()!;
    if (items.length === 0) return top;
    items[0] = last;
    for (let i = 0, smallest = 0;; i = smallest) {
      for (const child of [2 * i + 1, 2 * i + 2]) {
        if (child < items.length && items[child] < items[smallest]) smallest = child;
      }
      if (smallest === i) return top;
      [items[smallest], items[i]] = [items[i], items[smallest]];
    }
  }
}

/** The numgen modulus and the statistic match's scale: both keep a 31-bit fraction. */
export const probabilityScale = 0x80000000;

/** One `--to-ports` range and how often it is tried. */
export interface ToPortsShare {
  /** The source port range. */
  readonly range: PortRange;
  /** The probability, as a fraction of {@link probabilityScale}; absent for the last range. */
  readonly stored?: number;
}

/**
 * Upstream v1's split: each range but the last is tried with the probability of its share of the
 * ports still left, so every port is equally likely.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toPortsSplit } from "./chain.ts";
 *
 * const split = toPortsSplit([{ first: 1, last: 100 }, { first: 101, last: 200 }]);
 * assert.deepEqual(split.map((share) => share.stored), [0x40000000, undefined]);
 * ```
 */
export function toPortsSplit(ranges: readonly PortRange[]): ToPortsShare[] {
  let remaining = ranges.reduce((total, range) => total + portRangeSize(range), 0);
  return ranges.map((range) => {
    const size = portRangeSize(range);
    const stored = Math.round((size / remaining) * probabilityScale);
    remaining -= size;
    return remaining === 0 ? { range } : { range, stored };
  });
}
