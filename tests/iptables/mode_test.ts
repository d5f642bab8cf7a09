import assert from "node:assert/strict";
import {
  allIptablesTools,
  decideMode,
  iptablesTools,
  type ModeEvidence,
  parseLegacyDump,
} from "../../lib/iptables/mode.ts";

Deno.test("each backend's own tool names, never the plain (wrapper) names", () => {
  assert.deepEqual(iptablesTools("nft", "ipv4"), {
    main: "iptables-nft",
    restore: "iptables-nft-restore",
    save: "iptables-nft-save",
  });
  assert.deepEqual(iptablesTools("legacy", "ipv6"), {
    main: "ip6tables-legacy",
    restore: "ip6tables-legacy-restore",
    save: "ip6tables-legacy-save",
  });
  assert.deepEqual(allIptablesTools, [
    "iptables-nft",
    "iptables-nft-restore",
    "ip6tables-nft",
    "ip6tables-nft-restore",
    "iptables-legacy",
    "iptables-legacy-restore",
    "iptables-legacy-save",
    "ip6tables-legacy",
    "ip6tables-legacy-restore",
    "ip6tables-legacy-save",
  ]);
});

const none = parseLegacyDump("");
const noHint = parseLegacyDump(
  "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n",
);
const hint = parseLegacyDump("*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n");

Deno.test("a legacy dump tells whether anything is loaded, kubelet's hint, and the rules", () => {
  assert.deepEqual(none, { loaded: false, hint: false, rules: 0, tables: [] });
  assert.deepEqual(noHint, { loaded: true, hint: false, rules: 1, tables: ["nat"] });
  assert.equal(hint.hint, true);
  assert.equal(parseLegacyDump("*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n").hint, true);
  assert.equal(
    parseLegacyDump("*nat\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n").hint,
    false,
    "only the mangle table's chain is kubelet's hint",
  );
});

Deno.test("the detection asks its questions in order and stops at the first answer", () => {
  const noNftHint = { ipv4: false, ipv6: false };
  const cases: [string, ModeEvidence, ReturnType<typeof decideMode>][] = [
    ["nothing known: the nft IPv4 hint first", {}, { kind: "probe-nft-hint", family: "ipv4" }],
    [
      "kubelet's hint in nft IPv4 decides at once",
      { nftHint: { ipv4: true } },
      {
        kind: "decided",
        decision: { mode: "nft", evidence: "kubelet's hint chain in the nft ipv4 mangle table" },
      },
    ],
    ["then the nft IPv6 hint", { nftHint: { ipv4: false } }, {
      kind: "probe-nft-hint",
      family: "ipv6",
    }],
    [
      "the nft IPv6 hint decides",
      { nftHint: { ipv4: false, ipv6: true } },
      {
        kind: "decided",
        decision: { mode: "nft", evidence: "kubelet's hint chain in the nft ipv6 mangle table" },
      },
    ],
    ["then the legacy dump of loaded tables", { nftHint: noNftHint }, {
      kind: "dump-legacy",
      family: "ipv4",
    }],
    [
      "kubelet's hint in the legacy dump decides",
      { nftHint: noNftHint, legacy: { ipv4: hint } },
      {
        kind: "decided",
        decision: {
          mode: "legacy",
          evidence: "kubelet's hint chain in the legacy ipv4 mangle table",
        },
      },
    ],
    ["no legacy IPv4 hint: IPv6 next", { nftHint: noNftHint, legacy: { ipv4: none } }, {
      kind: "dump-legacy",
      family: "ipv6",
    }],
    ["no hint anywhere: count the nft rules", {
      nftHint: noNftHint,
      legacy: { ipv4: none, ipv6: none },
    }, { kind: "count-nft-rules" }],
    [
      "more legacy rules: legacy",
      { nftHint: noNftHint, legacy: { ipv4: noHint, ipv6: none }, nftRules: 0 },
      {
        kind: "decided",
        decision: { mode: "legacy", evidence: "no kubelet hint; 0 nft rules, 1 legacy rules" },
      },
    ],
    [
      "more nft rules: nft",
      { nftHint: noNftHint, legacy: { ipv4: noHint, ipv6: none }, nftRules: 5 },
      {
        kind: "decided",
        decision: { mode: "nft", evidence: "no kubelet hint; 5 nft rules, 1 legacy rules" },
      },
    ],
    [
      "a tie (an empty node): nft, the default",
      { nftHint: noNftHint, legacy: { ipv4: none, ipv6: none }, nftRules: 0 },
      {
        kind: "decided",
        decision: {
          mode: "nft",
          evidence: "no kubelet hint and 0 nft rules, 0 legacy rules: the default",
        },
      },
    ],
  ];
  for (const [what, evidence, expected] of cases) {
    assert.deepEqual(decideMode(evidence), expected, what);
  }
});
