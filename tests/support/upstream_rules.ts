/**
 * The upstream rule text, spelled once for every test: literal strings, not
 * lib/'s constants, so the tests check lib/ against the contract operators
 * know (kubernetes-sigs/ip-masq-agent and AKS ip-masq-agent-v2) rather than
 * against itself.
 *
 * @module
 */

/** The default `--masq-chain`. */
export const upstreamChain = "IP-MASQ-AGENT";

/** The comment of each non-masquerade RETURN rule. */
export const upstreamReturnComment = "ip-masq-agent: local traffic is not subject to MASQUERADE";

/** The comment of the final MASQUERADE rule (and of the `--to-ports` ones). */
export const upstreamMasqueradeComment =
  "ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)";

/** The comment of our POSTROUTING jump, naming the chain. */
export function upstreamJumpComment(chain: string = upstreamChain): string {
  return `ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination traffic to our custom ${chain} chain`;
}

/** A RETURN rule as iptables-save prints it. */
export function upstreamReturnLine(cidr: string, chain: string = upstreamChain): string {
  return `-A ${chain} -d ${cidr} -m comment --comment "${upstreamReturnComment}" -j RETURN`;
}

/** The final MASQUERADE rule as iptables-save prints it. */
export function upstreamMasqueradeLine(chain: string = upstreamChain, randomFully = true): string {
  return `-A ${chain} -m comment --comment "${upstreamMasqueradeComment}" -j MASQUERADE` +
    (randomFully ? " --random-fully" : "");
}

/** Our POSTROUTING jump as iptables-save prints it. */
export function upstreamJumpLine(chain: string = upstreamChain): string {
  return `-A POSTROUTING -m comment --comment "${upstreamJumpComment(chain)}" ` +
    `-m addrtype ! --dst-type LOCAL -j ${chain}`;
}

/** The jump ip-masq-agent-v2 (and some v1 releases) left: literal quotes inside the comment. */
export function upstreamQuotedJumpLine(chain: string = upstreamChain): string {
  return `-A POSTROUTING -m comment --comment "\\"${upstreamJumpComment(chain)}\\"" ` +
    `-m addrtype ! --dst-type LOCAL -j ${chain}`;
}
