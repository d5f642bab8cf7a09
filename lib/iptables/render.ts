/**
 * The desired chain rendered as the exact lines `iptables-save` prints, so the reconcile compares
 * live and desired rules as text and upstream's rule text (comments too) is a golden contract.
 *
 * @module
 */

import { NatTransaction } from "./restore_input.ts";
import type { Cidr } from "../net/cidr.ts";
import { iptablesMarkText } from "../settings/output.ts";
import { formatPortRange } from "../settings/ports.ts";
import {
  type DesiredChain,
  exemptionsAreFinal,
  kubeProxyMarkOf,
  orderedRules,
  probabilityScale,
  toPortsProtocols,
  toPortsSplit,
} from "../policy/chain.ts";

/** Upstream's comment on every RETURN rule, verbatim: part of the rule text contract. */
export const returnComment = "ip-masq-agent: local traffic is not subject to MASQUERADE";
/** Upstream's comment on every MASQUERADE rule, verbatim. */
export const masqueradeComment =
  "ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)";
/** Our comment on a `nonMasqueradeSrcCIDRs` rule, in upstream's words. */
export const sourceExemptionComment =
  "ip-masq-agent: traffic from non-masquerade sources is not subject to MASQUERADE";
/** Our comment on a `masqueradeCIDRs` rule: it must precede the broader RETURN it narrows. */
export const exceptionComment =
  "ip-masq-agent: masquerade exception traffic is subject to MASQUERADE (must be before the RETURN it narrows)";
/** Our comment on insert mode's first rule: kube-proxy's own rule masquerades what it marked. */
export const kubeProxyMarkComment =
  "ip-masq-agent: traffic kube-proxy marked for masquerade is left to kube-proxy";

const ownChainComments = [
  returnComment,
  masqueradeComment,
  sourceExemptionComment,
  exceptionComment,
  kubeProxyMarkComment,
].map((comment) => ` ${commented(comment)} `);

/** Whether a listed rule carries one of our chain comments: cleanup and repair know ours by it. */
export function isOwnChainRule(rule: string): boolean {
  return ownChainComments.some((comment) => rule.includes(comment));
}

/** Upstream's comment on the POSTROUTING jump to `chain`, verbatim. */
export function jumpComment(chain: string): string {
  return `ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination traffic to our custom ${chain} chain`;
}

/**
 * The chain's rules, `-A CHAIN ...`, exactly as `iptables-save` prints them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mergeConfigs } from "../config/merge.ts";
 * import { desiredChain } from "../policy/chain.ts";
 * import { chainRuleLines } from "./render.ts";
 * const { config } = mergeConfigs([], { nomasqAllReservedRanges: false }); // the defaults
 * const chain = desiredChain(config, "ipv4", "IP-MASQ-AGENT", { randomFully: true, toPorts: [] });
 * const lines = chainRuleLines(chain); // 169.254.0.0/16, 10/8, 172.16/12, 192.168/16, MASQUERADE
 * assert.equal(lines.length, 5);
 * assert.equal(lines[4], '-A IP-MASQ-AGENT -m comment --comment "ip-masq-agent: outbound ' +
 *   'traffic is subject to MASQUERADE (must be last in chain)" -j MASQUERADE --random-fully');
 * ```
 */
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
  const markText = mark === undefined ? "" : `${iptablesMarkText(mark)}/${iptablesMarkText(mark)}`;
  return [
    ...(mark === undefined
      ? []
      : [`-A ${chain} -m mark --mark ${markText} ${commented(kubeProxyMarkComment)} -j RETURN`]),
    ...(desired.sourceExemptions ?? []).map((cidr) =>
      `-A ${chain}${match("-s", cidr.value)} ${commented(sourceExemptionComment)} -j ${exempt}`
    ),
    ...orderedRules(desired).flatMap(({ action, cidr }) =>
      action === "return"
        ? [`-A ${chain}${match("-d", cidr.value)} ${commented(returnComment)} -j ${exempt}`]
        : masqueradeRules(desired, match("-d", cidr.value), exceptionComment)
    ),
    ...masqueradeRules(desired, "", masqueradeComment),
  ];
}

/** `-m comment --comment "TEXT"`, as saved. */
function commented(comment: string): string {
  return `-m comment --comment ${iptablesQuote(comment)}`;
}

/** Masquerade rules for `destination`: one per `--to-ports` protocol and range, then the plain one. */
function masqueradeRules(desired: DesiredChain, destination: string, comment: string): string[] {
  const { chain, masquerade } = desired;
  // iptables-save prints -o after -d and before -p.
  const match = destination +
    (desired.outputInterface ? ` -o ${desired.outputInterface.value}` : "");
  // `MASQUERADE [--to-ports P]`, or `SNAT --to-source ADDR[:P]` (IPv6 `[ADDR]:P`).
  const address = desired.outputAddress?.value;
  const host = address?.family === "ipv6" ? `[${address.text}]` : address?.text;
  const target = (ports?: string) =>
    address === undefined
      ? `MASQUERADE${ports === undefined ? "" : ` --to-ports ${ports}`}`
      : `SNAT --to-source ${ports === undefined ? address.text : `${host}:${ports}`}`;
  const randomFully = masquerade.randomFully ? " --random-fully" : "";
  const toPorts = toPortsProtocols.flatMap((protocol) =>
    toPortsSplit(masquerade.toPorts).map(({ range, stored }) => {
      // stored / probabilityScale is exact (a 31-bit fraction), so this prints `stored` itself.
      const statistic = stored === undefined
        ? ""
        : ` -m statistic --mode random --probability ${
          savedProbability(stored / probabilityScale)
        }`;
      return `-A ${chain}${match} -p ${protocol} ${commented(comment)}` +
        `${statistic} -j ${target(formatPortRange(range))}${randomFully}`;
    })
  );
  const last = `-A ${chain}${match} ${commented(comment)} -j ${target()}${randomFully}`;
  return [...toPorts, last];
}

/** The statistic match keeps a 31-bit fraction and prints it with 11 decimals; so do we. */
export function savedProbability(probability: number): string {
  return (Math.round(probability * probabilityScale) / probabilityScale).toFixed(11);
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
  const jump = jumpRuleLine(desired.chain);
  // Never null: a chain always has its final MASQUERADE rule.
  return tx.rule(desired.postroutingJump === "insert" ? insertAtTop(jump) : jump).build()!;
}

/** `-A CHAIN SPEC` as `-I CHAIN 1 SPEC`: the same rule, first in its chain. */
export function insertAtTop(appendLine: string): string {
  return appendLine.replace(/^-A (\S+)/, "-I $1 1");
}
