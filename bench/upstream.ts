/**
 * The figures issue 9 quotes, which this machine cannot reproduce: the Go
 * agents (v1 = kubernetes-sigs/ip-masq-agent v2.9.1, v2 = Azure/ip-masq-agent-v2)
 * were built from source in the harness, and there is no source
 * access here. "before" is what the issue measured for this agent. Every row
 * that shows one of these says it is quoted, never measured here.
 *
 * @module
 */

/** One figure per column; "—" where the issue gives none. */
export interface Quoted {
  readonly v1: string;
  readonly v2: string;
  readonly before: string;
}

const none: Quoted = { v1: "—", v2: "—", before: "—" };

export const quoted = {
  none,
  emptyTable: {
    nft: { v1: "—", v2: "4 ms / 11 ms / 9 MiB", before: "8 ms / 5 ms / 53 MiB" },
    legacy: none,
  },
  kubeProxyAgentCpu: {
    nft: { v1: "—", v2: "4 ms", before: "600 ms" },
    legacy: { v1: "—", v2: "2 ms", before: "545 ms" },
  },
  kubeProxyToolsCpu: {
    nft: { v1: "—", v2: "107 ms", before: "5,200 ms" },
    legacy: { v1: "—", v2: "758 ms", before: "311 ms" },
  },
  kubeProxyRss: {
    nft: { v1: "—", v2: "9 MiB", before: "161 MiB" },
    legacy: { v1: "—", v2: "9 MiB", before: "127 MiB" },
  },
  probe: {
    nft: { v1: "—", v2: "—", before: "4.6 s wall" },
    legacy: none,
  },
  probePeak: {
    nft: { v1: "—", v2: "—", before: "153 MiB" },
    legacy: none,
  },
  resync10k: {
    v1: "98 ms (528 ms with tools)",
    v2: "855 ms with tools",
    before: "1,305 ms (1,443 ms with tools)",
  },
  apply10k: { v1: "498 ms", v2: "868 ms", before: "1,878 ms" },
  rss4: { v1: "9.9 MiB", v2: "9.8 MiB", before: "52.9 MiB" },
  rss10k: { v1: "14.5 MiB", v2: "14.7 MiB", before: "77.5 MiB" },
  firstRules: { v1: "38 ms", v2: "37 ms", before: "194 ms" },
  floor: { v1: "—", v2: "—", before: "34.8 MiB" },
  /** Issue 3: upstream reads its config on the resync timer only. */
  configChange: { v1: "up to 60 s (30 s average)", v2: "up to 60 s (30 s average)", before: "—" },
} as const;
