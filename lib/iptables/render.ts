/**
 * The desired nat state for one address family, as data, and its rendering
 * as the exact rule lines `iptables-save` prints. Rendering in the saved,
 * canonical form lets the reconcile compare live and desired rules as text
 * and makes the upstream rule text (comments included) a golden contract.
 *
 * @module
 */

import type { IpAddress } from "../net/address.ts";
import { NatTransaction } from "./restore_input.ts";
import { type Cidr, compareCidrs, contains, type Family, parseBuiltInCidr } from "../net/cidr.ts";
import { type EffectiveConfig, linkLocalRanges } from "../config/merge.ts";
import {
  defaultKubeProxyMasqueradeBit,
  iptablesMarkText,
  kubeProxyMark,
} from "../config/output.ts";
import { formatPortRange, type PortRange, portRangeSize } from "../policy/ports.ts";
import { builtIn, type Located } from "../base/source.ts";

/** Upstream's comment on every RETURN rule, verbatim: part of the rule text contract. */
export const returnComment = "ip-masq-agent: local traffic is not subject to MASQUERADE";
/** Upstream's comment on every MASQUERADE rule, verbatim. */
export const masqueradeComment =
  "ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)";
/**
 * Our comment on a `nonMasqueradeSrcCIDRs` rule, in upstream's words. Rules carrying one of our
 * comments are ours: cleanup and stale-chain removal recognise them by it (ruleset.ts).
 */
export const sourceExemptionComment =
  "ip-masq-agent: traffic from non-masquerade sources is not subject to MASQUERADE";
/** Our comment on a `masqueradeCIDRs` rule: it must precede the broader RETURN it narrows. */
export const exceptionComment =
  "ip-masq-agent: masquerade exception traffic is subject to MASQUERADE (must be before the RETURN it narrows)";
/**
 * Our comment on the first rule of the chain with `--postrouting-jump=insert`: traffic kube-proxy
 * marked for masquerade leaves our chain (RETURN), so that kube-proxy's own rule masquerades it.
 */
export const kubeProxyMarkComment =
  "ip-masq-agent: traffic kube-proxy marked for masquerade is left to kube-proxy";
/** The protocols that get one `--to-ports` rule per range, in upstream v1's order. */
export const toPortsProtocols = ["tcp", "udp", "sctp"] as const;

/** Upstream's comment on the POSTROUTING jump to `chain`, verbatim. */
export function jumpComment(chain: string): string {
  return `ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination traffic to our custom ${chain} chain`;
}

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
  /** Destinations that RETURN before MASQUERADE, in configuration order, with where each came from. */
  readonly exemptions: readonly Located<Cidr>[];
  /**
   * `masqueradeCIDRs` of the family that lie inside an exemption, in configuration order:
   * masqueraded although a shorter exemption holds them. Absent or empty: none. The longest
   * prefix of exemptions and exceptions decides (`decide` in decision.ts says how).
   */
  readonly masqueradeExceptions?: readonly Located<Cidr>[];
  /** `nonMasqueradeSrcCIDRs` of the family: sources that RETURN before anything else. */
  readonly sourceExemptions?: readonly Located<Cidr>[];
  /** The rules after the exemptions. */
  readonly masquerade: MasqueradeOptions;
  /**
   * `--postrouting-jump`: `insert` keeps our jump first in POSTROUTING (moving it back when
   * another tool inserts before it); absent or `append` adds it at the end, as upstream does.
   */
  readonly postroutingJump?: PostroutingJump;
  /**
   * With `--postrouting-jump=insert`: the fwmark bit kube-proxy sets on traffic it masquerades
   * itself (`--kube-proxy-masquerade-bit`, 0x4000 by default); such traffic leaves our chain
   * first. Absent in append mode.
   */
  readonly kubeProxyMark?: number;
  /** `outputAddress` (`outputAddressIPv6`) of the family: the masquerade rules SNAT to it. */
  readonly outputAddress?: Located<IpAddress>;
  /** `outputInterface`: the masquerade rules match only traffic leaving by it. */
  readonly outputInterface?: Located<string>;
}

/**
 * Whether our exemptions are final: with `--postrouting-jump=insert` they ACCEPT (iptables: the
 * nat POSTROUTING walk ends there) or bind the source to itself (nftables), so no later rule of
 * another tool masquerades them; traffic kube-proxy marked leaves our chain first.
 */
export function exemptionsAreFinal(desired: DesiredChain): boolean {
  return desired.postroutingJump === "insert";
}

/** The kube-proxy mark our chain leaves alone, in insert mode; undefined in append mode. */
export function kubeProxyMarkOf(desired: DesiredChain): number | undefined {
  if (!exemptionsAreFinal(desired)) return undefined;
  return desired.kubeProxyMark ?? kubeProxyMark(defaultKubeProxyMasqueradeBit);
}

/** Where our POSTROUTING jump goes (`--postrouting-jump`). */
export type PostroutingJump = "append" | "insert";

const linkLocal = linkLocalRanges;

/**
 * The desired chain of `family`: the link-local exemption unless
 * `masqLinkLocal` (`masqLinkLocalIPv6`) is set, then every configured CIDR
 * of the family in configuration order, then the masquerade rules.
 * {@link chainRuleLines} renders it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mergeConfigs } from "../config/merge.ts";
 * import { chainRuleLines, desiredChain } from "./render.ts";
 *
 * const { config } = mergeConfigs([], { nomasqAllReservedRanges: false }); // the defaults
 * const chain = desiredChain(config, "ipv4", "IP-MASQ-AGENT", { randomFully: true, toPorts: [] });
 * const comment = '-m comment --comment "ip-masq-agent: local traffic is not subject to ' +
 *   'MASQUERADE"';
 * assert.deepEqual(chainRuleLines(chain), [
 *   `-A IP-MASQ-AGENT -d 169.254.0.0/16 ${comment} -j RETURN`,
 *   `-A IP-MASQ-AGENT -d 10.0.0.0/8 ${comment} -j RETURN`,
 *   `-A IP-MASQ-AGENT -d 172.16.0.0/12 ${comment} -j RETURN`,
 *   `-A IP-MASQ-AGENT -d 192.168.0.0/16 ${comment} -j RETURN`,
 *   '-A IP-MASQ-AGENT -m comment --comment "ip-masq-agent: outbound traffic is subject to ' +
 *   'MASQUERADE (must be last in chain)" -j MASQUERADE --random-fully',
 * ]);
 * ```
 */
export function desiredChain(
  config: EffectiveConfig,
  family: Family,
  chain: string,
  masquerade: MasqueradeOptions,
  options: {
    readonly postroutingJump?: PostroutingJump;
    /** `--kube-proxy-masquerade-bit`; used in insert mode only. */
    readonly kubeProxyMasqueradeBit?: number;
  } = {},
): DesiredChain {
  const masqueradesLinkLocal = family === "ipv4"
    ? config.masqLinkLocal.value
    : config.masqLinkLocalIPv6.value;
  const linkLocalExemption: Located<Cidr>[] = masqueradesLinkLocal ? [] : [{
    value: parseBuiltInCidr(linkLocal[family]),
    at: builtIn(
      `link-local, ${family === "ipv4" ? "masqLinkLocal" : "masqLinkLocalIPv6"} is false`,
    ),
  }];
  const exemptions = [
    ...linkLocalExemption,
    // A configured link-local range would repeat the built-in exemption as a second rule.
    ...config.nonMasqueradeCidrs.filter((cidr) =>
      cidr.value.family === family &&
      !linkLocalExemption.some((builtin) => builtin.value.text === cidr.value.text)
    ),
  ];
  const inExemption = containedIn(exemptions.map((cidr) => cidr.value));
  // An exception inside no exemption is masqueraded anyway (merge.ts reports it): no rule.
  const exceptions = (config.masqueradeCidrs ?? []).filter((cidr) =>
    cidr.value.family === family && inExemption(cidr.value)
  );
  const sources = (config.nonMasqueradeSrcCidrs ?? []).filter((cidr) =>
    cidr.value.family === family
  );
  const outputAddress = family === "ipv4" ? config.outputAddress : config.outputAddressIPv6;
  const insert = options.postroutingJump === "insert";
  // Absent rather than empty, so a config without the new keys gives the very same value.
  return {
    family,
    chain,
    exemptions,
    ...(exceptions.length > 0 ? { masqueradeExceptions: exceptions } : {}),
    ...(sources.length > 0 ? { sourceExemptions: sources } : {}),
    masquerade,
    ...(insert ? { postroutingJump: "insert" as const } : {}),
    ...(insert
      ? {
        kubeProxyMark: kubeProxyMark(
          options.kubeProxyMasqueradeBit ?? defaultKubeProxyMasqueradeBit,
        ),
      }
      : {}),
    ...(outputAddress ? { outputAddress } : {}),
    ...(config.outputInterface ? { outputInterface: config.outputInterface } : {}),
  };
}

/**
 * Whether a CIDR lies inside (or equals) one of `ranges`: one lookup per prefix length, since a
 * raised cidrLimit allows tens of thousands of each.
 */
function containedIn(ranges: readonly Cidr[]): (cidr: Cidr) => boolean {
  const byPrefix = new Map<number, Set<bigint>>();
  for (const range of ranges) {
    const set = byPrefix.get(range.prefix) ?? new Set();
    set.add(range.address);
    byPrefix.set(range.prefix, set);
  }
  return (cidr) => {
    for (const [prefix, networks] of byPrefix) {
      if (prefix > cidr.prefix) continue;
      const hostBits = BigInt((cidr.family === "ipv4" ? 32 : 128) - prefix);
      if (networks.has((cidr.address >> hostBits) << hostBits)) return true;
    }
    return false;
  };
}

/** One rule of our chain before the final masquerade rules: a RETURN, or an exception's. */
export interface OrderedRule {
  /** `return` for an exemption, `masquerade` for a `masqueradeCIDRs` exception. */
  readonly action: "return" | "masquerade";
  /** The destination it matches, with where it came from. */
  readonly cidr: Located<Cidr>;
}

/**
 * The exemptions and exceptions in the order a first-match chain needs for
 * longest-prefix semantics: whenever one lies inside another and their
 * actions differ, the inner one comes first (at any depth: 10.1.2.0/24
 * RETURN, then 10.1.0.0/16 MASQUERADE, then 10.0.0.0/8 RETURN). Otherwise
 * configuration order is kept, so without exceptions it is exactly the
 * exemptions' order. Then the first matching rule always has the action of
 * the longest matching prefix: a rule matching earlier with the other action
 * would contain the longest match, and so come after it.
 */
export function orderedRules(desired: DesiredChain): OrderedRule[] {
  const items: OrderedRule[] = [
    ...desired.exemptions.map((cidr) => ({ action: "return" as const, cidr })),
    ...(desired.masqueradeExceptions ?? []).map((cidr) => ({
      action: "masquerade" as const,
      cidr,
    })),
  ];
  if (items.length === desired.exemptions.length) return items;
  // Nested ranges are open on a stack in sorted order; each item must precede those of its
  // containers whose action differs. An exception equal to the built-in link-local range
  // sorts after it, and so comes first in the chain: the exception wins the tie.
  const sorted = items.map((_, index) => index).sort((a, b) =>
    compareCidrs(items[a].cidr.value, items[b].cidr.value) ||
    (items[a].action === items[b].action ? 0 : items[a].action === "return" ? -1 : 1)
  );
  const outerOnes: number[][] = items.map(() => []);
  const waitingFor = items.map(() => 0);
  const open: number[] = [];
  for (const index of sorted) {
    while (
      open.length > 0 && !contains(items[open[open.length - 1]].cidr.value, items[index].cidr.value)
    ) open.pop();
    for (const outer of open) {
      if (items[outer].action === items[index].action) continue;
      outerOnes[index].push(outer);
      waitingFor[outer]++;
    }
    open.push(index);
  }
  // An item that must precede others takes the earliest place among them, so a RETURN unrelated
  // to any exception keeps its place relative to the ones around it. Outer ranges have shorter
  // prefixes, so in prefix order every item's outer ones are ranked before it.
  const rank = items.map((_, index) => index);
  const byPrefix = items.map((_, index) => index).sort((a, b) =>
    items[a].cidr.value.prefix - items[b].cidr.value.prefix ||
    (items[a].action === items[b].action ? 0 : items[a].action === "return" ? -1 : 1)
  );
  for (const index of byPrefix) {
    for (const outer of outerOnes[index]) rank[index] = Math.min(rank[index], rank[outer]);
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
    if (items.length === 0) return undefined;
    const top = items[0];
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      for (let i = 0;;) {
        const [left, right] = [2 * i + 1, 2 * i + 2];
        let smallest = i;
        if (left < items.length && items[left] < items[smallest]) smallest = left;
        if (right < items.length && items[right] < items[smallest]) smallest = right;
        if (smallest === i) break;
        [items[smallest], items[i]] = [items[i], items[smallest]];
        i = smallest;
      }
    }
    return top;
  }
}

/** The chain's rules, `-A CHAIN ...`, exactly as `iptables-save` prints them. */
export function chainRuleLines(desired: DesiredChain): string[] {
  const { chain } = desired;
  // iptables-save omits a match on every address (`-d 0.0.0.0/0`, `-s ::/0`); so do we,
  // or a config exempting everything would never compare equal and be rewritten each resync.
  const match = (option: "-s" | "-d", cidr: Cidr) =>
    cidr.prefix === 0 ? "" : ` ${option} ${cidr.text}`;
  // Insert mode: an exemption ACCEPTs, which ends nat POSTROUTING for the packet (RETURN would
  // resume it, and another tool's later MASQUERADE would still take the packet).
  const exempt = exemptionsAreFinal(desired) ? "ACCEPT" : "RETURN";
  const mark = kubeProxyMarkOf(desired);
  const markRule = mark === undefined ? [] : [
    `-A ${chain} -m mark --mark ${iptablesMarkText(mark)}/${iptablesMarkText(mark)} ` +
    `-m comment --comment ${iptablesQuote(kubeProxyMarkComment)} -j RETURN`,
  ];
  const sources = (desired.sourceExemptions ?? []).map((cidr) =>
    `-A ${chain}${match("-s", cidr.value)} ` +
    `-m comment --comment ${iptablesQuote(sourceExemptionComment)} -j ${exempt}`
  );
  const destinations = orderedRules(desired).flatMap(({ action, cidr }) =>
    action === "return"
      ? [
        `-A ${chain}${match("-d", cidr.value)} ` +
        `-m comment --comment ${iptablesQuote(returnComment)} -j ${exempt}`,
      ]
      : masqueradeRules(desired, match("-d", cidr.value), exceptionComment)
  );
  return [
    ...markRule,
    ...sources,
    ...destinations,
    ...masqueradeRules(desired, "", masqueradeComment),
  ];
}

/**
 * The masquerade rules for the destinations `match` selects: with `--to-ports` one rule per
 * protocol and range, then the plain one, so an exception masquerades exactly as the last
 * rules do.
 */
function masqueradeRules(
  desired: DesiredChain,
  destination: string,
  comment: string,
): string[] {
  const { chain, masquerade } = desired;
  // iptables-save prints -o after -d and before -p.
  const match = destination +
    (desired.outputInterface ? ` -o ${desired.outputInterface.value}` : "");
  const target = (ports?: string) => masqueradeTarget(desired.outputAddress?.value, ports);
  const randomFully = masquerade.randomFully ? " --random-fully" : "";
  const toPorts = toPortsProtocols.flatMap((protocol) =>
    toPortsSplit(masquerade.toPorts).map(({ range, probability }) => {
      const statistic = probability === undefined
        ? ""
        : ` -m statistic --mode random --probability ${probability}`;
      return `-A ${chain}${match} -p ${protocol} -m comment --comment ${iptablesQuote(comment)}` +
        `${statistic} -j ${target(formatPortRange(range))}${randomFully}`;
    })
  );
  const last = `-A ${chain}${match} -m comment --comment ${iptablesQuote(comment)} -j ${target()}` +
    randomFully;
  return [...toPorts, last];
}

/**
 * `MASQUERADE [--to-ports PORTS]`, or with an `outputAddress`
 * `SNAT --to-source ADDR[:PORTS]` (IPv6: `[ADDR]:PORTS`), as iptables-save prints them.
 */
function masqueradeTarget(address: IpAddress | undefined, ports?: string): string {
  if (address === undefined) {
    return `MASQUERADE${ports === undefined ? "" : ` --to-ports ${ports}`}`;
  }
  if (ports === undefined) return `SNAT --to-source ${address.text}`;
  const host = address.family === "ipv6" ? `[${address.text}]` : address.text;
  return `SNAT --to-source ${host}:${ports}`;
}

/**
 * Upstream v1's split: each range but the last is tried with the probability
 * of its share of the ports still left, so every port is equally likely.
 */
function toPortsSplit(ranges: readonly PortRange[]) {
  let remaining = ranges.reduce((total, range) => total + portRangeSize(range), 0);
  return ranges.map((range) => {
    const size = portRangeSize(range);
    const probability = size === remaining ? undefined : savedProbability(size / remaining);
    remaining -= size;
    return { range, probability };
  });
}

/** The statistic match keeps a 31-bit fraction and prints it with 11 decimals; so do we. */
export function savedProbability(probability: number): string {
  const stored = Math.round(probability * 0x80000000);
  return (stored / 0x80000000).toFixed(11);
}

/** Our POSTROUTING jump as `iptables-save` prints it. */
export function jumpRuleLine(chain: string): string {
  return `-A POSTROUTING -m comment --comment ${iptablesQuote(jumpComment(chain))} ` +
    `-m addrtype ! --dst-type LOCAL -j ${chain}`;
}

/**
 * A word as `iptables-save` prints it and `iptables-restore` reads it back: in double quotes,
 * with `"` and `\` escaped. Not for messages: user input there goes through `quoteInput`.
 */
export function iptablesQuote(text: string): string {
  return `"${text.replace(/["\\]/g, (character) => `\\${character}`)}"`;
}

/** `iptables-restore` input that takes an empty nat table to the desired state (for --dry-run). */
export function renderFromEmpty(desired: DesiredChain): string {
  const tx = new NatTransaction().declareChain(desired.chain);
  for (const rule of chainRuleLines(desired)) tx.rule(rule);
  // Never null: a chain always has its final MASQUERADE rule.
  const jump = jumpRuleLine(desired.chain);
  return tx.rule(desired.postroutingJump === "insert" ? insertAtTop(jump) : jump).build()!;
}

/** `-A CHAIN SPEC` as `-I CHAIN 1 SPEC`: the same rule, first in its chain. */
export function insertAtTop(appendLine: string): string {
  const chain = appendLine.split(" ")[1];
  return `-I ${chain} 1${appendLine.slice(`-A ${chain}`.length)}`;
}
