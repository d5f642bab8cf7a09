/**
 * The two dataplanes as the lab sees them: how a test or the benchmark reads
 * what the agent programmed, `iptables-save -t nat` or `nft list table`, in
 * a namespace it made.
 *
 * @module
 */

import { type NetNs, saveNat } from "./netns.ts";

export type Dataplane = "iptables" | "nftables";
export const dataplanes: readonly Dataplane[] = ["iptables", "nftables"];

/** `ip` or `ip6`: nft's name of the family. */
export function nftFamilyOf(family: "ipv4" | "ipv6"): "ip" | "ip6" {
  return family === "ipv4" ? "ip" : "ip6";
}

/** `nft list table <family> ip-masq-agent` (text, or `-j` JSON) in `ns`; null when absent. */
export async function listOurNftTable(
  ns: NetNs,
  family: "ipv4" | "ipv6",
  options: { json?: boolean } = {},
): Promise<string | null> {
  const args = ["nft", ...(options.json ? ["-j"] : []), "list", "table", nftFamilyOf(family)];
  const result = await ns.exec([...args, "ip-masq-agent"]);
  if (result.code === 0) return result.stdout;
  if (/No such file or directory/.test(result.stderr)) return null;
  throw new Error(`${args.join(" ")} ip-masq-agent exited ${result.code}: ${result.stderr}`);
}

/** What the dataplane holds of ours: the nat table's save, or our nft table ("" when absent). */
export async function ruleTextOf(
  ns: NetNs,
  binDir: string,
  dataplane: Dataplane,
  family: "ipv4" | "ipv6",
): Promise<string> {
  if (dataplane === "iptables") return await saveNat(ns, binDir, family);
  return (await listOurNftTable(ns, family)) ?? "";
}

/** `nft -f -` in `ns`, as another program would write; throws on failure. */
export async function nftApply(ns: NetNs, payload: string): Promise<void> {
  await ns.exec(["nft", "-f", "-"], { stdin: payload, check: true });
}
