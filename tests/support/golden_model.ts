/**
 * An oracle for the golden files that does not come from lib/'s renderer:
 * for each golden, the destinations that must keep their source, written
 * here by hand from the case's input (the operator's CIDRs, upstream's
 * defaults and reserved ranges, the link-local exemption unless
 * masqLinkLocal), and a check that the golden text, evaluated by the packet
 * model of netfilter_eval.ts, keeps exactly those (probed at each range's
 * edges, just outside them, and at public addresses). A golden regenerated
 * from a broken renderer (UPDATE_GOLDEN=1) fails here.
 *
 * @module
 */

import assert from "node:assert/strict";
import { parseCidr } from "../../lib/net/cidr.ts";
import { iptablesDecision, nftDecision } from "./netfilter_eval.ts";

const rfc1918 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];
const linkLocal = "169.254.0.0/16";
/** v1's --nomasq-all-reserved-ranges list, besides RFC 1918. */
const reserved = [
  "100.64.0.0/10",
  "192.0.0.0/24",
  "192.0.2.0/24",
  "192.88.99.0/24",
  "198.18.0.0/15",
  "198.51.100.0/24",
  "203.0.113.0/24",
  "240.0.0.0/4",
];

/** Per golden file: its family and the CIDRs whose destinations keep the pod's source. */
export const goldenKeeps: Record<string, { family: "ipv4" | "ipv6"; keep: string[] }> = {
  "default-ipv4.rules": { family: "ipv4", keep: [linkLocal, ...rfc1918] },
  "custom-chain-ipv4.rules": { family: "ipv4", keep: [linkLocal, ...rfc1918] },
  "reserved-ranges-ipv4.rules": { family: "ipv4", keep: [linkLocal, ...rfc1918, ...reserved] },
  "custom-ipv4.rules": {
    family: "ipv4",
    keep: [linkLocal, "10.244.0.0/16", "192.168.0.0/16", "10.224.0.0/12", "172.16.0.0/12"],
  },
  "masq-link-local-ipv4.rules": { family: "ipv4", keep: ["10.0.0.0/8"] },
  "dual-stack-ipv4.rules": { family: "ipv4", keep: [linkLocal, "10.244.0.0/16", "192.168.0.0/16"] },
  "dual-stack-ipv6.rules": {
    family: "ipv6",
    keep: ["fe80::/10", "fd00:10:244::/56", "2001:db8::/32"],
  },
  "ipv6-masq-link-local-ipv4.rules": { family: "ipv4", keep: [linkLocal] },
  "ipv6-masq-link-local-ipv6.rules": { family: "ipv6", keep: ["fd00::/8"] },
  "to-ports-ipv4.rules": { family: "ipv4", keep: [linkLocal, ...rfc1918] },
  "to-ports-random-fully-ipv4.rules": { family: "ipv4", keep: [linkLocal, ...rfc1918] },
  "nft-default-ipv4.nft": { family: "ipv4", keep: [linkLocal, ...rfc1918] },
  "nft-to-ports-ipv4.nft": { family: "ipv4", keep: [linkLocal, ...rfc1918] },
  "nft-masq-link-local-ipv4.nft": { family: "ipv4", keep: [] },
  "nft-everything-ipv4.nft": { family: "ipv4", keep: ["0.0.0.0/0"] },
  "nft-everything-ipv6.nft": { family: "ipv6", keep: ["::/0"] },
  "nft-overlapping-ipv4.nft": {
    family: "ipv4",
    keep: [
      linkLocal,
      "10.0.0.0/8",
      "10.1.0.0/16",
      "11.0.0.0/8",
      "192.168.1.0/24",
      "192.168.0.0/16",
      "198.51.100.7/32",
    ],
  },
  "nft-overlapping-ipv6.nft": {
    family: "ipv6",
    keep: ["fe80::/10", "2001:db8::/32", "2001:db8:1::/48", "fd00::/8", "fc00::/8"],
  },
};

/**
 * Goldens this destination-range model cannot express, each with what checks them instead:
 * issue 17's SNAT targets, interface matches, kube-proxy marks and ACCEPT exemptions are outside
 * netfilter_eval.ts's model; the real-packet tests (tests/root/e2e_issue17_test.ts) and the
 * decide() property test (tests/policy/decision_property_test.ts) cover them.
 */
export const goldenModelExcluded: Record<string, string> = {
  "output-ipv4.rules": "SNAT --to-source, -o eth+ and a masqueradeCIDRs hole (issue 17)",
  "output-ipv6.rules": "SNAT --to-source and -o eth+ (issue 17)",
  "insert-ipv4.rules": "insert mode: the kube-proxy mark and ACCEPT exemptions (issue 17)",
  "nft-output-ipv4.nft": "snat to an address and oifname (issue 17)",
  "nft-output-ipv6.nft": "snat to an address and oifname (issue 17)",
  "nft-insert-ipv4.nft": "identity bindings and the kube-proxy mark (issue 17)",
  "nft-insert-ipv6.nft": "identity bindings and the kube-proxy mark (issue 17)",
};

function range(text: string): { start: bigint; end: bigint } {
  const parsed = parseCidr(text);
  if (!parsed.ok) throw new Error(parsed.error);
  const bits = parsed.value.family === "ipv4" ? 32 : 128;
  const size = 1n << BigInt(bits - parsed.value.prefix);
  return { start: parsed.value.address, end: parsed.value.address + size - 1n };
}

const publicAddresses = {
  ipv4: ["8.8.8.8", "1.1.1.1", "0.0.0.1", "255.255.255.254"],
  ipv6: ["2001:4860::8888", "2606:4700::1111", "::2", "ffff::1"],
};

/**
 * Asserts that `golden` (a .rules or .nft file's text) keeps the source for
 * exactly the destinations of `keep`, at every probe.
 */
export function assertGoldenKeeps(name: string, golden: string): void {
  const expected = goldenKeeps[name];
  assert.ok(expected, `${name}: no hand-written expectation in tests/support/golden_model.ts`);
  const { family, keep } = expected;
  const bits = family === "ipv4" ? 32 : 128;
  const max = (1n << BigInt(bits)) - 1n;
  const ranges = keep.map(range);
  const kept = (address: bigint) => ranges.some((r) => r.start <= address && address <= r.end);
  const probes = new Set<bigint>();
  for (const r of ranges) {
    for (const address of [r.start, r.end, (r.start + r.end) / 2n, r.start - 1n, r.end + 1n]) {
      if (address >= 0n && address <= max) probes.add(address);
    }
  }
  for (const text of publicAddresses[family]) probes.add(range(`${text}/${bits}`).start);
  const decide = (destination: bigint) => {
    const packet = { family, destination, protocol: "tcp" as const, local: false };
    if (name.endsWith(".nft")) return nftDecision(golden, packet).kind;
    const chainLines = golden.split("\n").filter((line) =>
      line.startsWith("-A ") && !line.startsWith("-A POSTROUTING ")
    );
    return iptablesDecision(chainLines, packet).kind;
  };
  for (const destination of probes) {
    assert.equal(
      decide(destination),
      kept(destination) ? "keep" : "masquerade",
      `${name}: destination ${destination.toString(16)} (${family})`,
    );
  }
}
