/**
 * Drift as a read-only mode says it. The dataplanes describe each difference
 * from the agent's side, as it is about to fix it ("...; replacing it",
 * "removing IP-MASQ-AGENT"), which is what the agent's log needs. `--check`
 * and `--explain` write nothing: they say what differs and what the agent
 * would do, with the same facts.
 *
 * @module
 */

const actions: readonly [pattern: RegExp, replacement: string][] = [
  // "table ip ip-masq-agent differs (...); replacing it"
  [/; replacing it$/, "; the agent would replace it"],
  [/; rewriting it$/, "; the agent would rewrite it"],
  [/; moving it to first place$/, "; the agent would move it to first place"],
  // A chain of ours under another name, found by a reconcile plan (iptables/plan.ts).
  [
    /^(.*?)removing (\S+), left by an earlier --masq-chain( \(jump only: [^)]*\))?$/,
    "$1$2 is reached by a jump of ours but is not --masq-chain: left by an earlier " +
    "--masq-chain, or managed by another ip-masq-agent on this node; the agent removes it " +
    "once$3 and leaves it alone if it comes back",
  ],
  // Leftovers a removal would delete: "iptables (nft): removing IP-MASQ-AGENT".
  [/^(.*?)removing (.+)$/, "$1$2 is left over; the agent would remove it"],
];

/**
 * The drift message `message` reworded for a mode that writes nothing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readOnlyWording } from "./drift_wording.ts";
 *
 * assert.equal(
 *   readOnlyWording("iptables (nft): removing IP-MASQ-AGENT"),
 *   "iptables (nft): IP-MASQ-AGENT is left over; the agent would remove it",
 * );
 * assert.equal(
 *   readOnlyWording("table ip ip-masq-agent differs (1 rule); replacing it"),
 *   "table ip ip-masq-agent differs (1 rule); the agent would replace it",
 * );
 * assert.equal(readOnlyWording("POSTROUTING has no jump to X"), "POSTROUTING has no jump to X");
 * ```
 */
export function readOnlyWording(message: string): string {
  for (const [pattern, replacement] of actions) {
    if (pattern.test(message)) return message.replace(pattern, replacement);
  }
  return message;
}
