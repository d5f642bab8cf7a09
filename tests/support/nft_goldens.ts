/**
 * The configs behind the golden `nft -f` files in tests/golden/: the
 * rendering test compares against them, the root test loads each into nft.
 *
 * @module
 */

import type { Family } from "../../lib/net/cidr.ts";
import type { AgentFlags } from "../../lib/settings/flags.ts";
import { parsePortRanges } from "../../lib/settings/ports.ts";

function ports(spec: string) {
  const parsed = parsePortRanges(spec);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
}

export interface NftGoldenCase {
  readonly name: string;
  readonly files: Record<string, string>;
  readonly flags: Partial<AgentFlags>;
  readonly goldens: Partial<Record<Family, string>>;
}

export const overlapping =
  "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - 10.1.0.0/16\n  - 10.0.0.0/8\n" +
  "  - 11.0.0.0/8\n  - 192.168.1.0/24\n  - 192.168.0.0/16\n  - 198.51.100.7/32\n" +
  "  - 2001:db8::/32\n  - 2001:db8:1::/48\n  - fd00::/8\n  - fc00::/8\n";

/** Shared with the root test that loads every golden into nft. */
export const nftGoldenCases: NftGoldenCase[] = [
  {
    name: "no config file: the RFC 1918 defaults, fully-random",
    files: {},
    flags: {},
    goldens: { ipv4: "nft-default-ipv4.nft" },
  },
  {
    name: "overlapping, duplicate and adjacent CIDRs become merged intervals",
    files: { "ip-masq-agent": overlapping },
    flags: { enableIpv6: true, randomFully: false },
    goldens: { ipv4: "nft-overlapping-ipv4.nft", ipv6: "nft-overlapping-ipv6.nft" },
  },
  {
    name: "masqLinkLocal and an empty list: no link-local rule, an empty set",
    files: { "ip-masq-agent": "nonMasqueradeCIDRs: []\nmasqLinkLocal: true\n" },
    flags: {},
    goldens: { ipv4: "nft-masq-link-local-ipv4.nft" },
  },
  {
    name: "--to-ports 1024-29999,32768-65535,7 with fully-random",
    files: {},
    flags: { toPorts: ports("1024-29999,32768-65535,7") },
    goldens: { ipv4: "nft-to-ports-ipv4.nft" },
  },
  {
    name: "0.0.0.0/0 and ::/0: the whole family in the set",
    files: {
      "ip-masq-agent": "nonMasqueradeCIDRs: [0.0.0.0/0, '::/0']\nmasqLinkLocalIPv6: true\n",
    },
    flags: { enableIpv6: true },
    goldens: { ipv4: "nft-everything-ipv4.nft", ipv6: "nft-everything-ipv6.nft" },
  },
  {
    name: "outputAddress, outputAddressIPv6 and outputInterface eth+ with --to-ports (issue 17)",
    files: {
      "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8, fd00::/8]\n" +
        "outputAddress: 192.0.2.5\noutputAddressIPv6: 2001:db8::5\noutputInterface: eth+\n",
    },
    flags: { enableIpv6: true, toPorts: ports("20000-29999,40000") },
    goldens: { ipv4: "nft-output-ipv4.nft", ipv6: "nft-output-ipv6.nft" },
  },
  {
    name:
      "--postrouting-jump=insert: srcnat - 1, the kube-proxy mark, identity bindings (issue 17)",
    files: {
      "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8, fd00::/8]\n" +
        "nonMasqueradeSrcCIDRs: [10.245.0.0/16]\n",
    },
    flags: { enableIpv6: true, postroutingJump: "insert", kubeProxyMasqueradeBit: 15 },
    goldens: { ipv4: "nft-insert-ipv4.nft", ipv6: "nft-insert-ipv6.nft" },
  },
];
