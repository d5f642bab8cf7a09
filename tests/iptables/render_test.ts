import assert from "node:assert/strict";
import type { Family } from "../../lib/net/cidr.ts";
import type { ConfigDirContents } from "../../lib/config/directory.ts";
import { type AgentFlags, defaultFlags, parseFlags } from "../../lib/settings/flags.ts";
import { parsePortRanges, type PortRange } from "../../lib/settings/ports.ts";
import type { EffectiveConfig } from "../../lib/config/merge.ts";
import { desiredChains, loadConfig } from "../../lib/policy/desired.ts";
import {
  chainRuleLines,
  iptablesQuote,
  jumpComment,
  jumpRuleLine,
  masqueradeComment,
  renderFromEmpty,
  returnComment,
  savedProbability,
} from "../../lib/iptables/render.ts";
import { type DesiredChain, desiredChain } from "../../lib/policy/chain.ts";
import { upstreamQuotedJumpLine } from "../support/upstream_rules.ts";

import { assertGoldenKeeps, goldenModelExcluded } from "../support/golden_model.ts";

const encoder = new TextEncoder();

/** `--to-ports` as parseFlags hands it out. */
function ports(spec: string): PortRange[] {
  const parsed = parsePortRanges(spec);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
}
const bothSupported: Record<Family, boolean> = { ipv4: true, ipv6: true };

function configDir(entries: Record<string, string>): ConfigDirContents {
  if (Object.keys(entries).length === 0) return { kind: "missing" };
  return {
    kind: "files",
    files: Object.entries(entries).map(([name, text]) => ({
      path: `/etc/config/${name}`,
      bytes: encoder.encode(text),
    })),
  };
}

function effectiveOf(entries: Record<string, string>, flags: AgentFlags): EffectiveConfig {
  return loadConfig(configDir(entries), flags).effective;
}

function chainsFor(
  entries: Record<string, string>,
  overrides: Partial<AgentFlags> = {},
  support: Record<Family, boolean> = bothSupported,
): DesiredChain[] {
  const flags = { ...defaultFlags, ...overrides };
  return desiredChains(effectiveOf(entries, flags), flags, support);
}

function chainFor(
  family: Family,
  entries: Record<string, string>,
  overrides: Partial<AgentFlags> = {},
  support: Record<Family, boolean> = bothSupported,
): DesiredChain {
  const chain = chainsFor(entries, { enableIpv6: family === "ipv6", ...overrides }, support)
    .find((chain) => chain.family === family);
  assert.ok(chain, `no ${family} chain`);
  return chain;
}

function readGolden(name: string): Promise<string> {
  return Deno.readTextFile(new URL(`../golden/${name}`, import.meta.url));
}

const exampleAgent = [
  "# What a cluster operator writes (ConfigMap ip-masq-agent, key ip-masq-agent).",
  "nonMasqueradeCIDRs:",
  "  - 10.244.0.0/16",
  "  - 192.168.0.0/16",
  "masqLinkLocal: false",
  "resyncInterval: 60s",
  "",
].join("\n");

const exampleCloud = [
  "# What a cloud provider reconciles (ConfigMap ip-masq-agent-cloud, key ip-masq-cloud).",
  "nonMasqueradeCIDRs:",
  "  - 10.224.0.0/12",
  "  - 172.16.0.0/12",
  "",
].join("\n");

const dualStack = "nonMasqueradeCIDRs:\n  - 10.244.0.0/16\n  - fd00:10:244::/56\n" +
  "  - 192.168.0.0/16\n  - 2001:db8::/32\n";

const issue17Output =
  "nonMasqueradeCIDRs: [10.0.0.0/8, fd00::/8]\nmasqueradeCIDRs: [10.1.0.0/16]\n" +
  "outputAddress: 192.0.2.5\noutputAddressIPv6: 2001:db8::5\noutputInterface: eth+\n";
const issue17Insert = "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqueradeCIDRs: [10.1.0.0/16]\n" +
  "nonMasqueradeSrcCIDRs: [10.245.0.0/16]\noutputInterface: eth0\n";

interface GoldenCase {
  readonly name: string;
  readonly files: Record<string, string>;
  readonly flags: Partial<AgentFlags>;
  /** Golden file per family rendered for this case. */
  readonly goldens: Partial<Record<Family, string>>;
}

// Every golden file was checked once against what `iptables-save` and `ip6tables-save`
// print after restoring it, for both the nft and the legacy backend.
const goldenCases: GoldenCase[] = [
  {
    name: "no config file: the RFC 1918 defaults, random-fully on",
    files: {},
    flags: {},
    goldens: { ipv4: "default-ipv4.rules" },
  },
  {
    name: "no config file with --nomasq-all-reserved-ranges",
    files: {},
    flags: { nomasqAllReservedRanges: true },
    goldens: { ipv4: "reserved-ranges-ipv4.rules" },
  },
  {
    name: "a custom config of two files, without --random-fully",
    files: { "ip-masq-agent": exampleAgent, "ip-masq-cloud": exampleCloud },
    flags: { randomFully: false },
    goldens: { ipv4: "custom-ipv4.rules" },
  },
  {
    name: "masqLinkLocal true drops the link-local exemption",
    files: { "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqLinkLocal: true\n" },
    flags: {},
    goldens: { ipv4: "masq-link-local-ipv4.rules" },
  },
  {
    name: "a dual-stack config splits CIDRs by family",
    files: { "ip-masq-agent": dualStack },
    flags: { enableIpv6: true },
    goldens: { ipv4: "dual-stack-ipv4.rules", ipv6: "dual-stack-ipv6.rules" },
  },
  {
    name: "masqLinkLocalIPv6 true drops fe80::/10 but not 169.254.0.0/16",
    files: { "ip-masq-agent": "nonMasqueradeCIDRs: [fd00::/8]\nmasqLinkLocalIPv6: true\n" },
    flags: { enableIpv6: true },
    goldens: {
      ipv4: "ipv6-masq-link-local-ipv4.rules",
      ipv6: "ipv6-masq-link-local-ipv6.rules",
    },
  },
  {
    name: "--to-ports 1024-29999,32768-65535 with --random-fully",
    files: {},
    flags: { toPorts: ports("1024-29999,32768-65535") },
    goldens: { ipv4: "to-ports-random-fully-ipv4.rules" },
  },
  {
    name: "--to-ports 1024-29999,32768-65535 without --random-fully",
    files: {},
    flags: { toPorts: ports("1024-29999,32768-65535"), randomFully: false },
    goldens: { ipv4: "to-ports-ipv4.rules" },
  },
  {
    name: "a custom --masq-chain names the chain, the jump and its comment",
    files: {},
    flags: { masqChain: "MY-MASQ-CHAIN" },
    goldens: { ipv4: "custom-chain-ipv4.rules" },
  },
  {
    name: "outputAddress, outputAddressIPv6 and outputInterface with --to-ports (issue 17)",
    files: { "ip-masq-agent": issue17Output },
    flags: { enableIpv6: true, toPorts: ports("20000-29999,40000") },
    goldens: { ipv4: "output-ipv4.rules", ipv6: "output-ipv6.rules" },
  },
  {
    name: "--postrouting-jump=insert: the kube-proxy mark first, exemptions ACCEPT (issue 17)",
    files: { "ip-masq-agent": issue17Insert },
    flags: { postroutingJump: "insert" },
    goldens: { ipv4: "insert-ipv4.rules" },
  },
];

for (const golden of goldenCases) {
  Deno.test(`rendering matches its golden file: ${golden.name}`, async () => {
    const chains = chainsFor(golden.files, golden.flags);
    assert.deepEqual(
      chains.map((chain) => chain.family).sort(),
      Object.keys(golden.goldens).sort(),
      "one golden per enabled family",
    );
    for (const chain of chains) {
      const name = golden.goldens[chain.family]!;
      assert.equal(renderFromEmpty(chain), await readGolden(name), name);
    }
  });
}

Deno.test("every golden file is used by a rendering test", async () => {
  const used = new Set(goldenCases.flatMap((golden) => Object.values(golden.goldens)));
  const present: string[] = [];
  for await (const entry of Deno.readDir(new URL("../golden/", import.meta.url))) {
    if (entry.name.endsWith(".rules")) present.push(entry.name);
  }
  assert.deepEqual(present.sort(), [...used].sort());
});

Deno.test("every golden file keeps exactly the destinations its case exempts (a packet model)", async () => {
  for (const name of goldenCases.flatMap((golden) => Object.values(golden.goldens))) {
    if (name in goldenModelExcluded) continue;
    assertGoldenKeeps(name, await readGolden(name));
  }
});

Deno.test("the rendered rule text is exactly the upstream text", () => {
  const chain = chainFor("ipv4", { "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8]\n" });
  assert.deepEqual(chainRuleLines(chain), [
    '-A IP-MASQ-AGENT -d 169.254.0.0/16 -m comment --comment "ip-masq-agent: local traffic is not subject to MASQUERADE" -j RETURN',
    '-A IP-MASQ-AGENT -d 10.0.0.0/8 -m comment --comment "ip-masq-agent: local traffic is not subject to MASQUERADE" -j RETURN',
    '-A IP-MASQ-AGENT -m comment --comment "ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)" -j MASQUERADE --random-fully',
  ]);
  assert.equal(
    jumpRuleLine("IP-MASQ-AGENT"),
    '-A POSTROUTING -m comment --comment "ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination traffic to our custom IP-MASQ-AGENT chain" -m addrtype ! --dst-type LOCAL -j IP-MASQ-AGENT',
  );
});

Deno.test("the quoted jump spelling of v2 carries escaped literal quotes in its comment", () => {
  assert.equal(
    upstreamQuotedJumpLine("IP-MASQ-AGENT"),
    '-A POSTROUTING -m comment --comment "\\"ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination traffic to our custom IP-MASQ-AGENT chain\\"" -m addrtype ! --dst-type LOCAL -j IP-MASQ-AGENT',
  );
});

Deno.test("the comments are the upstream strings", () => {
  assert.equal(returnComment, "ip-masq-agent: local traffic is not subject to MASQUERADE");
  assert.equal(
    masqueradeComment,
    "ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)",
  );
  assert.equal(
    jumpComment("X"),
    "ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination traffic to our custom X chain",
  );
});

Deno.test("quoting follows iptables-save: double quotes with quote and backslash escaped", () => {
  const cases: [string, string][] = [
    ["plain text", '"plain text"'],
    ['say "hi"', '"say \\"hi\\""'],
    ["back\\slash", '"back\\\\slash"'],
    ["", '""'],
  ];
  for (const [text, want] of cases) assert.equal(iptablesQuote(text), want, text);
});

Deno.test("the link-local exemption comes first and says why it is there", () => {
  const v4 = chainFor("ipv4", { "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8]\n" });
  assert.equal(v4.exemptions[0].value.text, "169.254.0.0/16");
  assert.deepEqual(v4.exemptions[0].at, { file: "(link-local, masqLinkLocal is false)" });
  const v6 = chainFor("ipv6", { "ip-masq-agent": "nonMasqueradeCIDRs: [fd00::/8]\n" });
  assert.equal(v6.exemptions[0].value.text, "fe80::/10");
  assert.deepEqual(v6.exemptions[0].at, { file: "(link-local, masqLinkLocalIPv6 is false)" });
});

Deno.test("exemptions keep the merged order and the file and line of each CIDR", () => {
  const chain = chainFor("ipv4", { "ip-masq-agent": exampleAgent, "ip-masq-cloud": exampleCloud });
  assert.deepEqual(
    chain.exemptions.map((cidr) => [cidr.value.text, cidr.at.file, cidr.at.line]),
    [
      ["169.254.0.0/16", "(link-local, masqLinkLocal is false)", undefined],
      ["10.244.0.0/16", "/etc/config/ip-masq-agent", 3],
      ["192.168.0.0/16", "/etc/config/ip-masq-agent", 4],
      ["10.224.0.0/12", "/etc/config/ip-masq-cloud", 3],
      ["172.16.0.0/12", "/etc/config/ip-masq-cloud", 4],
    ],
  );
});

Deno.test("each family's chain holds only that family's CIDRs", () => {
  const [v4, v6] = chainsFor({ "ip-masq-agent": dualStack }, { enableIpv6: true });
  assert.equal(v4.family, "ipv4");
  assert.equal(v6.family, "ipv6");
  assert.deepEqual(v4.exemptions.map((cidr) => cidr.value.text), [
    "169.254.0.0/16",
    "10.244.0.0/16",
    "192.168.0.0/16",
  ]);
  assert.deepEqual(v6.exemptions.map((cidr) => cidr.value.text), [
    "fe80::/10",
    "fd00:10:244::/56",
    "2001:db8::/32",
  ]);
});

Deno.test("only the IPv4 chain is desired unless --enable-ipv6 is set", () => {
  assert.deepEqual(chainsFor({}).map((chain) => chain.family), ["ipv4"]);
  assert.deepEqual(chainsFor({}, { enableIpv6: true }).map((chain) => chain.family), [
    "ipv4",
    "ipv6",
  ]);
});

Deno.test("an IPv6 chain with no IPv6 CIDRs still exempts link-local and masquerades the rest", () => {
  const chain = chainFor("ipv6", {});
  assert.deepEqual(chainRuleLines(chain), [
    `-A IP-MASQ-AGENT -d fe80::/10 -m comment --comment ${iptablesQuote(returnComment)} -j RETURN`,
    `-A IP-MASQ-AGENT -m comment --comment ${
      iptablesQuote(masqueradeComment)
    } -j MASQUERADE --random-fully`,
  ]);
});

Deno.test("an empty effective list with masqLinkLocal leaves only the MASQUERADE rule", () => {
  const chain = chainFor("ipv4", {
    "ip-masq-agent": "nonMasqueradeCIDRs: []\nmasqLinkLocal: true\n",
  });
  assert.deepEqual(chainRuleLines(chain), [
    `-A IP-MASQ-AGENT -m comment --comment ${
      iptablesQuote(masqueradeComment)
    } -j MASQUERADE --random-fully`,
  ]);
});

Deno.test("--random-fully is added only when the flag is on and the iptables in use supports it", () => {
  const cases: [flag: boolean, supported: boolean, want: boolean][] = [
    [true, true, true],
    [true, false, false],
    [false, true, false],
    [false, false, false],
  ];
  for (const [flag, supported, want] of cases) {
    const chain = chainFor("ipv4", {}, { randomFully: flag, toPorts: ports("1024-65535") }, {
      ipv4: supported,
      ipv6: true,
    });
    assert.equal(chain.masquerade.randomFully, want, `flag ${flag}, supported ${supported}`);
    const masqueradeLines = chainRuleLines(chain).filter((line) => line.includes("-j MASQUERADE"));
    assert.equal(masqueradeLines.length, 4);
    for (const line of masqueradeLines) {
      assert.equal(line.endsWith(" --random-fully"), want, line);
    }
  }
});

Deno.test("--random-fully support is judged per family", () => {
  const [v4, v6] = chainsFor({}, { enableIpv6: true }, { ipv4: true, ipv6: false });
  assert.equal(v4.masquerade.randomFully, true);
  assert.equal(v6.masquerade.randomFully, false);
});

Deno.test("MASQUERADE rules always come after every RETURN rule", () => {
  const lines = chainRuleLines(
    chainFor("ipv4", { "ip-masq-agent": exampleAgent }, {
      toPorts: ports("1024-29999,32768-65535"),
    }),
  );
  const lastReturn = lines.findLastIndex((line) => line.endsWith("-j RETURN"));
  const firstMasquerade = lines.findIndex((line) => line.includes("-j MASQUERADE"));
  assert.ok(lastReturn < firstMasquerade);
  assert.equal(
    lines.at(-1),
    `-A IP-MASQ-AGENT -m comment --comment ${
      iptablesQuote(masqueradeComment)
    } -j MASQUERADE --random-fully`,
  );
});

Deno.test("--to-ports writes one rule per range per protocol, tcp then udp then sctp", () => {
  const lines = chainRuleLines(
    chainFor("ipv4", {}, { toPorts: ports("1024-29999,32768-65535"), randomFully: false }),
  ).filter((line) => line.includes("--to-ports"));
  assert.deepEqual(
    lines.map((line) => [/-p (\w+)/.exec(line)?.[1], /--to-ports (\S+)/.exec(line)?.[1]]),
    [
      ["tcp", "1024-29999"],
      ["tcp", "32768-65535"],
      ["udp", "1024-29999"],
      ["udp", "32768-65535"],
      ["sctp", "1024-29999"],
      ["sctp", "32768-65535"],
    ],
  );
});

Deno.test("--to-ports probabilities give every port the same chance", () => {
  // Each range but the last gets its share of the ports still left; the last one takes the rest.
  const lines = chainRuleLines(
    chainFor("ipv4", {}, { toPorts: ports("1-100,101-200,201-400,500"), randomFully: false }),
  ).filter((line) => line.includes(" -p tcp "));
  assert.deepEqual(
    lines.map((line) => [
      /--to-ports (\S+)/.exec(line)?.[1],
      /--probability (\S+)/.exec(line)?.[1],
    ]),
    [
      ["1-100", savedProbability(100 / 401)],
      ["101-200", savedProbability(100 / 301)],
      ["201-400", savedProbability(200 / 201)],
      ["500", undefined],
    ],
  );
  // As iptables-save prints them (checked against iptables 1.8.9).
  assert.deepEqual(lines.slice(0, 3).map((line) => /--probability (\S+)/.exec(line)?.[1]), [
    "0.24937655870",
    "0.33222591365",
    "0.99502487574",
  ]);
});

Deno.test("a single --to-ports range needs no statistic match", () => {
  const lines = chainRuleLines(chainFor("ipv4", {}, { toPorts: ports("32768-65535") }));
  assert.equal(
    lines.find((line) => line.includes(" -p udp ")),
    `-A IP-MASQ-AGENT -p udp -m comment --comment ${iptablesQuote(masqueradeComment)} ` +
      "-j MASQUERADE --to-ports 32768-65535 --random-fully",
  );
  assert.ok(!lines.some((line) => line.includes("statistic")));
});

Deno.test("a one-port --to-ports range prints as a bare number, as iptables-save does", () => {
  const lines = chainRuleLines(
    chainFor("ipv4", {}, { toPorts: ports("5000"), randomFully: false }),
  );
  assert.ok(lines.some((line) => line.endsWith("-j MASQUERADE --to-ports 5000")), lines.join("\n"));
});

Deno.test("--to-ports applies to the IPv6 chain too", () => {
  const lines = chainRuleLines(chainFor("ipv6", {}, { toPorts: ports("32768-65535") }));
  assert.equal(lines.filter((line) => line.includes("--to-ports 32768-65535")).length, 3);
});

Deno.test("probabilities are rounded to the statistic match's 31-bit fraction and printed with 11 decimals", () => {
  // Values as iptables 1.8.9 prints them after `-m statistic --probability <p>`.
  const cases: [number, string][] = [
    [0.5, "0.50000000000"],
    [1 / 3, "0.33333333349"],
    [0.25, "0.25000000000"],
    [0.1, "0.10000000009"],
    [0.9, "0.89999999991"],
    [1 / 7, "0.14285714272"],
    [2 / 3, "0.66666666651"],
    [0.999999, "0.99999900023"],
    [0.000001, "0.00000099977"],
    [28976 / 61744, "0.46929256292"],
  ];
  for (const [probability, want] of cases) {
    assert.equal(savedProbability(probability), want, String(probability));
  }
});

Deno.test("an invalid --to-ports never reaches rendering: it does not parse into flags", () => {
  assert.deepEqual(parseFlags(["--to-ports=65535-1024"]), {
    ok: false,
    error: `invalid value "65535-1024" for flag -to-ports: ` +
      "port range 65535-1024 has its start above its end",
  });
});

Deno.test("desiredChain uses the chain name it is given for every rule", () => {
  const effective = effectiveOf({}, defaultFlags);
  const chain = desiredChain(effective, "ipv4", "OTHER", { randomFully: false, toPorts: [] });
  assert.ok(chainRuleLines(chain).every((line) => line.startsWith("-A OTHER ")));
  assert.ok(renderFromEmpty(chain).includes("\n:OTHER - [0:0]\n"));
  assert.ok(renderFromEmpty(chain).includes(" -j OTHER\nCOMMIT\n"));
});

Deno.test("a dry run of an empty table declares the chain, fills it, adds the jump and commits", () => {
  const rendered = renderFromEmpty(chainFor("ipv4", {}));
  const lines = rendered.split("\n");
  assert.equal(lines[0], "*nat");
  assert.equal(lines[1], ":IP-MASQ-AGENT - [0:0]");
  assert.equal(lines.at(-3), jumpRuleLine("IP-MASQ-AGENT"));
  assert.equal(lines.at(-2), "COMMIT");
  assert.equal(lines.at(-1), "", "the text ends with a newline");
});
