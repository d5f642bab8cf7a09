/**
 * The nodes the agent is measured on: an empty nat table, or the kube-proxy
 * table of bench/kube_proxy_table.ts loaded into the bench's own namespace.
 *
 * @module
 */

import type { Backend } from "../lab/host.ts";
import type { NetNs } from "../lab/netns.ts";
import { fmt, progress } from "./harness.ts";
import { type KubeProxyTable, kubeProxyTable } from "./kube_proxy_table.ts";

export type NodeKind = "empty" | "kube-proxy";

let cached: KubeProxyTable | undefined;

/** The generated table for `services` service ports (generated once per run). */
export function kubeProxyNode(services: number): KubeProxyTable {
  if (cached?.services !== services) cached = kubeProxyTable({ services });
  return cached;
}

export function describeNode(kind: NodeKind, table: KubeProxyTable): string {
  return kind === "empty"
    ? "empty nat table"
    : `kube-proxy nat table: ${fmt(table.natRules)} rules in ${fmt(table.natChains)} chains, ` +
      `${fmt(table.services)} services`;
}

/**
 * Loads the table with one `iptables-<backend>-restore` (flushing only the
 * tables it names, in this namespace), then checks the nat rule count.
 */
export async function loadKubeProxyTable(
  ns: NetNs,
  bin: string,
  backend: Backend,
  table: KubeProxyTable,
): Promise<void> {
  const startedAt = performance.now();
  await ns.exec([`${bin}/iptables-${backend}-restore`], { stdin: table.restoreInput, check: true });
  const loadedMs = performance.now() - startedAt;
  const save = await ns.exec([`${bin}/iptables-${backend}-save`, "-t", "nat"], { check: true });
  const rules = save.stdout.split("\n").filter((line) => line.startsWith("-A ")).length;
  if (rules !== table.natRules) {
    throw new Error(`loaded ${rules} nat rules, generated ${table.natRules}`);
  }
  progress(`   loaded ${fmt(rules)} nat rules (${backend}) in ${fmt(loadedMs)} ms`);
}
