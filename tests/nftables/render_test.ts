/**
 * The nftables dataplane's rendering: golden `nft -f` files (each loaded
 * into a real nft and read back as in sync by tests/root/nft_dataplane_test.ts),
 * the rule text, the normalization of overlapping CIDRs, and the `--to-ports`
 * split with the iptables dataplane's probabilities.
 */

import assert from "node:assert/strict";
import { parseBuiltInCidr } from "../../lib/net/cidr.ts";
import type { ConfigDirContents } from "../../lib/config/directory.ts";
import { type AgentFlags, defaultFlags } from "../../lib/settings/flags.ts";
import { desiredChains, loadConfig } from "../../lib/policy/desired.ts";
import { parsePortRanges } from "../../lib/settings/ports.ts";
import { savedProbability } from "../../lib/iptables/render.ts";
import { type DesiredChain, probabilityScale, toPortsSplit } from "../../lib/policy/chain.ts";
import {
  nftDesired,
  renderNftElementChanges,
  renderNftFromEmpty,
  renderNftRemoval,
  renderNftReplace,
} from "../../lib/nftables/render.ts";
import { cidrInterval, formatInterval } from "../../lib/net/intervals.ts";
import { builtIn } from "../../lib/base/source.ts";
import { nftGoldenCases, overlapping } from "../support/nft_goldens.ts";
import { assertGoldenKeeps, goldenModelExcluded } from "../support/golden_model.ts";

const encoder = new TextEncoder();

function chainsFor(entries: Record<string, string>, overrides: Partial<AgentFlags> = {}) {
  const flags = { ...defaultFlags, ...overrides };
  const contents: ConfigDirContents = Object.keys(entries).length === 0 ? { kind: "missing" } : {
    kind: "files",
    files: Object.entries(entries).map(([name, text]) => ({
      path: `/etc/config/${name}`,
      bytes: encoder.encode(text),
    })),
  };
  return desiredChains(loadConfig(contents, flags).effective, flags, { ipv4: true, ipv6: true });
}

function ports(spec: string) {
  const parsed = parsePortRanges(spec);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
}

function readGolden(name: string): Promise<string> {
  return Deno.readTextFile(new URL(`../golden/${name}`, import.meta.url));
}

for (const golden of nftGoldenCases) {
  Deno.test(`nft rendering matches its golden file: ${golden.name}`, async () => {
    const chains = chainsFor(golden.files, golden.flags);
    assert.deepEqual(
      chains.map((chain) => chain.family).sort(),
      Object.keys(golden.goldens).sort(),
    );
    for (const chain of chains) {
      const name = golden.goldens[chain.family]!;
      const rendered = renderNftFromEmpty(chain);
      if (Deno.env.get("UPDATE_GOLDEN") === "1") {
        await Deno.writeTextFile(new URL(`../golden/${name}`, import.meta.url), rendered);
      }
      assert.equal(rendered, await readGolden(name), name);
    }
  });
}

Deno.test("every nft golden file is used by a rendering test", async () => {
  const used = new Set(nftGoldenCases.flatMap((golden) => Object.values(golden.goldens)));
  const present: string[] = [];
  for await (const entry of Deno.readDir(new URL("../golden/", import.meta.url))) {
    if (entry.name.endsWith(".nft")) present.push(entry.name);
  }
  assert.deepEqual(present.sort(), [...used].sort());
});

Deno.test("every nft golden keeps exactly the destinations its case exempts (a packet model)", async () => {
  for (const name of nftGoldenCases.flatMap((golden) => Object.values(golden.goldens))) {
    if (name in goldenModelExcluded) continue;
    assertGoldenKeeps(name, await readGolden(name));
  }
});

Deno.test("the chain's rules: local, link-local, the set, then masquerade", () => {
  const [v4, v6] = chainsFor({ "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8]\n" }, {
    enableIpv6: true,
  });
  assert.deepEqual(nftDesired(v4).rules, [
    "fib daddr type local return",
    "ip daddr 169.254.0.0/16 return",
    "ip daddr @nonmasq-dst return",
    "masquerade fully-random",
  ]);
  assert.deepEqual(nftDesired(v6).rules, [
    "fib daddr type local return",
    "ip6 daddr fe80::/10 return",
    "ip6 daddr @nonmasq-dst return",
    "masquerade fully-random",
  ]);
});

Deno.test("a configured link-local CIDR with masqLinkLocal goes into the set, not a rule", () => {
  const [chain] = chainsFor({
    "ip-masq-agent": "nonMasqueradeCIDRs: [169.254.0.0/16]\nmasqLinkLocal: true\n",
  });
  const table = nftDesired(chain);
  assert.ok(!table.rules.some((rule) => rule.includes("169.254")));
  assert.deepEqual(
    table.sets[0].elements.map((element) => formatInterval("ipv4", element)),
    ["169.254.0.0/16"],
  );
});

Deno.test("normalization: nested and duplicate CIDRs vanish, touching ones merge, sorted", () => {
  const [v4, v6] = chainsFor({ "ip-masq-agent": overlapping }, { enableIpv6: true });
  assert.deepEqual(nftDesired(v4).sets[0].elements.map((e) => formatInterval("ipv4", e)), [
    "10.0.0.0/7",
    "192.168.0.0/16",
    "198.51.100.7",
  ]);
  assert.deepEqual(nftDesired(v6).sets[0].elements.map((e) => formatInterval("ipv6", e)), [
    "2001:db8::/32",
    "fc00::/7",
  ]);
});

Deno.test("--to-ports: the same stored 31-bit probabilities as the statistic rules", () => {
  for (const spec of ["1024-29999,32768-65535", "1-1,2-3,4-7,8-65535", "7", "100-200,5"]) {
    const split = toPortsSplit(ports(spec));
    assert.equal(split.at(-1)?.stored, undefined, "the last range is unconditional");
    let remaining = ports(spec).reduce((sum, r) => sum + r.last - r.first + 1, 0);
    for (const { range, stored } of split.slice(0, -1)) {
      const size = range.last - range.first + 1;
      // savedProbability is the iptables rule's text; read back, it is the same fraction.
      assert.equal(
        Math.round(Number(savedProbability(size / remaining)) * probabilityScale),
        stored,
        spec,
      );
      remaining -= size;
    }
  }
});

Deno.test("--to-ports rules: per protocol, numgen before every range but the last", () => {
  const [chain] = chainsFor({}, { toPorts: ports("1024-29999,32768-65535") });
  const stored = Math.round((28976 / (28976 + 32768)) * probabilityScale);
  assert.deepEqual(nftDesired(chain).rules.slice(3), [
    `meta l4proto tcp numgen random mod 2147483648 < ${stored} masquerade to :1024-29999 fully-random`,
    "meta l4proto tcp masquerade to :32768-65535 fully-random",
    `meta l4proto udp numgen random mod 2147483648 < ${stored} masquerade to :1024-29999 fully-random`,
    "meta l4proto udp masquerade to :32768-65535 fully-random",
    `meta l4proto sctp numgen random mod 2147483648 < ${stored} masquerade to :1024-29999 fully-random`,
    "meta l4proto sctp masquerade to :32768-65535 fully-random",
    "masquerade fully-random",
  ]);
});

Deno.test("replace and removal transactions declare the table first, so the delete never fails", () => {
  const [chain] = chainsFor({});
  const replace = renderNftReplace(nftDesired(chain));
  assert.ok(
    replace.startsWith(
      "table ip ip-masq-agent\ndelete table ip ip-masq-agent\ntable ip ip-masq-agent {\n",
    ),
  );
  assert.equal(
    renderNftRemoval("ipv6"),
    "table ip6 ip-masq-agent\ndelete table ip6 ip-masq-agent\n",
  );
});

Deno.test("an element change writes only the elements, deletions first", () => {
  const interval = (text: string) => cidrInterval(parseBuiltInCidr(text));
  assert.equal(
    renderNftElementChanges("ipv4", [{
      set: "nonmasq-dst",
      remove: [interval("10.0.0.0/8")],
      add: [interval("10.0.0.0/7"), interval("1.2.3.4/32")],
    }]),
    "delete element ip ip-masq-agent nonmasq-dst { 10.0.0.0/8 }\n" +
      "add element ip ip-masq-agent nonmasq-dst { 10.0.0.0/7, 1.2.3.4 }\n",
  );
});

Deno.test("issue 12's fields, when a DesiredChain carries them, render as longest-prefix intervals and a source set", () => {
  const located = (text: string) => ({ value: parseBuiltInCidr(text), at: builtIn("test") });
  const chain = {
    family: "ipv4",
    chain: "IP-MASQ-AGENT",
    exemptions: [located("10.0.0.0/8"), located("10.1.2.0/24")],
    masqueradeExceptions: [located("10.1.0.0/16")],
    sourceExemptions: [located("10.244.0.0/16")],
    masquerade: { randomFully: true, toPorts: [] },
  } as DesiredChain;
  const table = nftDesired(chain);
  assert.deepEqual(table.rules.slice(0, 1), ["ip saddr @nonmasq-src return"]);
  const sets = Object.fromEntries(
    table.sets.map((set) => [set.name, set.elements.map((e) => formatInterval("ipv4", e))]),
  );
  assert.deepEqual(sets, {
    "nonmasq-src": ["10.244.0.0/16"],
    "nonmasq-dst": ["10.0.0.0/16", "10.1.2.0/24", "10.2.0.0-10.255.255.255"],
  });
});

Deno.test("with issue 12's exceptions and source exemptions, the nft table decides as decision.ts does", async () => {
  const { decide } = await import("../../lib/policy/decision.ts");
  const { nftDecision } = await import("../support/netfilter_eval.ts");
  const { formatAddress } = await import("../../lib/net/cidr.ts");
  let state = 12345;
  const next = () => (state = (state * 1103515245 + 12345) % 2147483648) / 2147483648;
  /** CIDRs around 10.0.0.0/16 and link-local, so lists nest often. */
  const randomCidr = () => {
    const base = next() < 0.3 ? 0xa9fe0000 : 0x0a000000; // 169.254.0.0 or 10.0.0.0
    const prefix = 8 + Math.floor(next() * 25);
    const size = 2 ** (32 - prefix);
    const address = Math.floor((base + Math.floor(next() * 65536)) / size) * size;
    return located(`${formatAddress("ipv4", BigInt(address))}/${prefix}`);
  };
  const located = (text: string) => ({ value: parseBuiltInCidr(text), at: { file: "f", line: 1 } });
  for (let n = 0; n < 300; n++) {
    const linkLocal = next() < 0.7
      ? {
        value: parseBuiltInCidr("169.254.0.0/16"),
        at: builtIn("link-local, masqLinkLocal is false"),
      }
      : undefined;
    const chain = {
      family: "ipv4",
      chain: "IP-MASQ-AGENT",
      ...(linkLocal ? { linkLocal } : {}),
      exemptions: [
        ...(linkLocal ? [linkLocal] : []),
        ...Array.from({ length: Math.floor(next() * 5) }, randomCidr),
      ],
      masqueradeExceptions: Array.from({ length: Math.floor(next() * 4) }, randomCidr),
      sourceExemptions: Array.from({ length: Math.floor(next() * 2) }, randomCidr),
      masquerade: { randomFully: true, toPorts: [] },
    } as DesiredChain;
    const nft = renderNftFromEmpty(chain);
    const edges = [...chain.exemptions, ...chain.masqueradeExceptions!].flatMap(({ value }) => {
      const size = 1n << BigInt(32 - value.prefix);
      return [value.address - 1n, value.address, value.address + size - 1n, value.address + size];
    }).filter((address) => address >= 0n && address < 1n << 32n);
    for (const destination of edges) {
      for (const source of [undefined, ...edges.slice(0, 4)]) {
        const text = (address: bigint) => formatAddress("ipv4", address);
        const want = decide(chain, {
          destination: { family: "ipv4", address: destination, text: text(destination) },
          source: source === undefined
            ? undefined
            : { family: "ipv4", address: source, text: text(source) },
        }).verdict;
        const got = nftDecision(nft, {
          family: "ipv4",
          destination,
          source,
          protocol: "tcp",
          local: false,
        }).kind;
        assert.equal(
          got === "keep" ? "keep source" : "masquerade",
          want,
          `case ${n}: ${text(destination)} from ${
            source === undefined ? "?" : text(source)
          }\n${nft}`,
        );
      }
    }
  }
});
