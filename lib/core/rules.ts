/**
 * The desired nat state for one address family, as data, and its rendering
 * as the exact rule lines `iptables-save` prints. Rendering in the saved,
 * canonical form lets the reconcile compare live and desired rules as text
 * and makes the upstream rule text (comments included) a golden contract.
 *
 * @module
 */

import { type Cidr, type Family, parseBuiltInCidr } from "./cidr.ts";
import type { EffectiveConfig } from "./merge.ts";
import { formatPortRange, type PortRange, portRangeSize } from "./ports.ts";
import { builtIn, type Located } from "./source.ts";

export const returnComment = "ip-masq-agent: local traffic is not subject to MASQUERADE";
export const masqueradeComment =
  "ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)";
export const toPortsProtocols = ["tcp", "udp", "sctp"] as const;

export function jumpComment(chain: string): string {
  return `ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination traffic to our custom ${chain} chain`;
}

export interface MasqueradeOptions {
  /** Already combines `--random-fully` with the probed support of the iptables in use. */
  readonly randomFully: boolean;
  readonly toPorts: readonly PortRange[];
}

export interface DesiredChain {
  readonly family: Family;
  readonly chain: string;
  /** Destinations that RETURN before MASQUERADE, in rule order, with where each came from. */
  readonly exemptions: readonly Located<Cidr>[];
  readonly masquerade: MasqueradeOptions;
}

const linkLocal: Readonly<Record<Family, string>> = { ipv4: "169.254.0.0/16", ipv6: "fe80::/10" };

export function desiredChain(
  config: EffectiveConfig,
  family: Family,
  chain: string,
  masquerade: MasqueradeOptions,
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
  return {
    family,
    chain,
    exemptions: [
      ...linkLocalExemption,
      // A configured link-local range would repeat the built-in exemption as a second rule.
      ...config.nonMasqueradeCidrs.filter((cidr) =>
        cidr.value.family === family &&
        !linkLocalExemption.some((builtin) => builtin.value.text === cidr.value.text)
      ),
    ],
    masquerade,
  };
}

/** The chain's rules, `-A CHAIN ...`, exactly as `iptables-save` prints them. */
export function chainRuleLines(desired: DesiredChain): string[] {
  const { chain, masquerade } = desired;
  const randomFully = masquerade.randomFully ? " --random-fully" : "";
  // iptables-save omits a match on every destination (`-d 0.0.0.0/0`, `-d ::/0`); so do we,
  // or a config exempting everything would never compare equal and be rewritten each resync.
  const exemptions = desired.exemptions.map((cidr) =>
    `-A ${chain}${cidr.value.prefix === 0 ? "" : ` -d ${cidr.value.text}`} ` +
    `-m comment --comment ${quote(returnComment)} -j RETURN`
  );
  const toPorts = toPortsProtocols.flatMap((protocol) =>
    toPortsSplit(masquerade.toPorts).map(({ range, probability }) => {
      const statistic = probability === undefined
        ? ""
        : ` -m statistic --mode random --probability ${probability}`;
      return `-A ${chain} -p ${protocol} -m comment --comment ${quote(masqueradeComment)}` +
        `${statistic} -j MASQUERADE --to-ports ${formatPortRange(range)}${randomFully}`;
    })
  );
  const last = `-A ${chain} -m comment --comment ${quote(masqueradeComment)} -j MASQUERADE` +
    randomFully;
  return [...exemptions, ...toPorts, last];
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
  return `-A POSTROUTING -m comment --comment ${quote(jumpComment(chain))} ` +
    `-m addrtype ! --dst-type LOCAL -j ${chain}`;
}

/** The spelling left by ip-masq-agent-v2 and some v1 releases: literal quotes inside the comment. */
export function quotedJumpRuleLine(chain: string): string {
  return `-A POSTROUTING -m comment --comment ${quote(`"${jumpComment(chain)}"`)} ` +
    `-m addrtype ! --dst-type LOCAL -j ${chain}`;
}

/** iptables-save quoting: double quotes, with `"` and `\` escaped. */
export function quote(text: string): string {
  return `"${text.replace(/["\\]/g, (character) => `\\${character}`)}"`;
}

/** `iptables-restore` input that takes an empty nat table to the desired state (for --dry-run). */
export function renderFromEmpty(desired: DesiredChain): string {
  return [
    "*nat",
    `:${desired.chain} - [0:0]`,
    ...chainRuleLines(desired),
    jumpRuleLine(desired.chain),
    "COMMIT",
    "",
  ].join("\n");
}
