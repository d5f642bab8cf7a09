/**
 * Issue 17's keys and flag, without packets: `outputAddress` /
 * `outputAddressIPv6` and `outputInterface` validated, merged (a conflict
 * names both places), rendered on both dataplanes and read back;
 * `--postrouting-jump=insert`'s kube-proxy mark rule and final exemptions;
 * and what `--explain` says about them.
 */

import assert from "node:assert/strict";
import { parseIpAddress } from "../../lib/net/address.ts";
import { parseConfigFile } from "../../lib/config/parse.ts";
import { ConfigError } from "../../lib/base/problems.ts";
import { decide } from "../../lib/policy/decision.ts";
import { desiredChains, loadConfig } from "../../lib/policy/desired.ts";
import { explain, formatExplanation } from "../../lib/cli/explain.ts";
import { type AgentFlags, defaultFlags, parseFlags } from "../../lib/settings/flags.ts";
import { parseNftTable } from "../../lib/nftables/parse.ts";
import { planNftReconcile } from "../../lib/nftables/plan.ts";
import { nftDesired, renderNftReplace } from "../../lib/nftables/render.ts";
import { parseInterfaceName, parseOutputAddress } from "../../lib/settings/output.ts";
import { chainRuleLines, renderFromEmpty } from "../../lib/iptables/render.ts";
import { parseNatTable, planCleanup, planReconcile } from "../../lib/iptables/plan.ts";
import { FakeNft } from "../support/fake_nft.ts";

const encoder = new TextEncoder();

function load(files: Record<string, string>, flags: Partial<AgentFlags> = {}) {
  const all = { ...defaultFlags, ...flags };
  const loaded = loadConfig({
    kind: "files",
    files: Object.entries(files).map(([name, text]) => ({
      path: `/etc/config/${name}`,
      bytes: encoder.encode(text),
    })),
  }, all);
  return { loaded, chains: desiredChains(loaded.effective, all, { ipv4: true, ipv6: true }) };
}

function problemsOf(files: Record<string, string>, flags: Partial<AgentFlags> = {}): string {
  try {
    load(files, flags);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message;
  }
  assert.fail("the config was accepted");
}

function address(text: string) {
  const parsed = parseIpAddress(text);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
}

Deno.test("outputAddress: one unicast address of the key's family", () => {
  for (const good of ["192.0.2.5", "10.1.2.3", "100.64.0.1"]) {
    assert.ok(parseOutputAddress(good, "ipv4").ok, good);
  }
  assert.ok(parseOutputAddress("2001:db8::5", "ipv6").ok);
  const reasons: [string, "ipv4" | "ipv6", RegExp][] = [
    ["192.0.2.0/24", "ipv4", /is a CIDR/],
    ["2001:db8::5", "ipv4", /IPv6 address; give it as outputAddressIPv6/],
    ["192.0.2.5", "ipv6", /IPv4 address; give it as outputAddress/],
    ["0.0.0.0", "ipv4", /unspecified/],
    ["::", "ipv6", /unspecified/],
    ["0.1.2.3", "ipv4", /this network/],
    ["255.255.255.255", "ipv4", /broadcast/],
    ["224.0.0.1", "ipv4", /multicast/],
    ["ff02::1", "ipv6", /multicast/],
    ["127.0.0.1", "ipv4", /loopback/],
    ["::1", "ipv6", /loopback/],
    ["169.254.1.1", "ipv4", /link-local/],
    ["fe80::1", "ipv6", /link-local/],
    ["192.0.2.05", "ipv4", /invalid address/],
    ["::ffff:192.0.2.5", "ipv6", /invalid address/],
  ];
  for (const [text, family, reason] of reasons) {
    const parsed = parseOutputAddress(text, family);
    assert.ok(!parsed.ok, text);
    assert.match(parsed.error, reason, text);
  }
});

Deno.test("outputInterface: the kernel's name rules and iptables' + wildcard", () => {
  for (const good of ["eth0", "eth+", "ens5f1", "cali+", "a", "x".repeat(15), "vlan.100"]) {
    assert.deepEqual(parseInterfaceName(good), { ok: true, value: good }, good);
  }
  const reasons: [string, RegExp][] = [
    ["", /empty/],
    ["x".repeat(16), /at most 15/],
    [".", /not a valid interface name/],
    ["..", /not a valid interface name/],
    ["+", /matches every interface/],
    ["eth0/1", /whitespace, "\/" or ":"/],
    ["eth 0", /whitespace/],
    ["eth0:1", /":"/],
    ["e+th", /wildcard only as the last character/],
    ['eth"0', /cannot carry/],
    ["eth*", /cannot carry/],
    ["-eth0", /cannot carry/],
    ["ethé", /cannot carry/],
  ];
  for (const [text, reason] of reasons) {
    const parsed = parseInterfaceName(text);
    assert.ok(!parsed.ok, text);
    assert.match(parsed.error, reason, text);
  }
});

Deno.test("the keys parse with their positions; wrong types and IPv6 without the flag fail", () => {
  const text = "outputAddress: 192.0.2.5\noutputInterface: eth+\n";
  const parsed = parseConfigFile("/etc/config/ip-masq-agent", encoder.encode(text), {
    enableIpv6: false,
  });
  assert.ok(parsed.ok);
  assert.equal(parsed.value.outputAddress?.value.text, "192.0.2.5");
  assert.deepEqual(parsed.value.outputAddress?.at, {
    file: "/etc/config/ip-masq-agent",
    line: 1,
    column: 16,
  });
  assert.deepEqual(parsed.value.outputInterface?.value, "eth+");
  // A file without the keys parses to the same value as before (no undefined fields).
  const plain = parseConfigFile("f", encoder.encode("masqLinkLocal: true\n"), {
    enableIpv6: false,
  });
  assert.ok(plain.ok);
  assert.ok(!("outputAddress" in plain.value) && !("outputInterface" in plain.value));

  const bad = parseConfigFile(
    "f",
    encoder.encode(
      "outputAddress: 192.0.2.0/24\noutputAddressIPv6: 2001:db8::5\noutputInterface: 7\n",
    ),
    { enableIpv6: false },
  );
  assert.ok(!bad.ok);
  assert.deepEqual(bad.error.map((problem) => [problem.at.line, problem.key]), [
    [1, "outputAddress"],
    [2, "outputAddressIPv6"],
    [3, "outputInterface"],
  ]);
  assert.match(bad.error[1].message, /add the --enable-ipv6 flag/);
  assert.match(bad.error[2].message, /must be an interface name string/);
});

Deno.test("merge: the same value in several files is fine, two values are an error naming both", () => {
  const same = load({
    "ip-masq-a": "outputAddress: 192.0.2.5\n",
    "ip-masq-b": "outputAddress: 192.0.2.5\noutputInterface: eth0\n",
  });
  assert.equal(same.loaded.effective.outputAddress?.at.file, "/etc/config/ip-masq-a");
  assert.equal(same.loaded.effective.outputInterface?.value, "eth0");

  const message = problemsOf({
    "ip-masq-a": "nonMasqueradeCIDRs: [10.0.0.0/8]\noutputAddress: 192.0.2.5\n" +
      "outputInterface: eth0\n",
    "ip-masq-b": "\noutputAddress: 192.0.2.6\noutputInterface: eth1\n",
  });
  assert.match(
    message,
    /ip-masq-b:2:16: outputAddress: outputAddress is 192\.0\.2\.6 here but 192\.0\.2\.5 at \/etc\/config\/ip-masq-a:2:16/,
  );
  assert.match(
    message,
    /ip-masq-b:3:18: outputInterface: outputInterface is eth1 here but eth0 at \/etc\/config\/ip-masq-a:3:18/,
  );
  const six = problemsOf({
    "ip-masq-a": "outputAddressIPv6: 2001:db8::5\n",
    "ip-masq-b": "outputAddressIPv6: '2001:db8::6'\n",
  }, { enableIpv6: true });
  assert.match(six, /outputAddressIPv6 is 2001:db8::6 here but 2001:db8::5 at/);
});

Deno.test("a conflict leaves the live rules alone: the config is rejected before any plan", () => {
  // The reconcile plans only from a loaded config; a ConfigError means no plan and no write.
  assert.throws(
    () => load({ "ip-masq-a": "outputInterface: eth0\n", "ip-masq-b": "outputInterface: eth1\n" }),
    ConfigError,
  );
});

Deno.test("outputAddress per family: SNAT in the family that has one, MASQUERADE in the other", () => {
  const { chains } = load({ "ip-masq-agent": "outputAddress: 192.0.2.5\n" }, {
    enableIpv6: true,
  });
  const [v4, v6] = chains;
  assert.equal(
    chainRuleLines(v4).at(-1),
    '-A IP-MASQ-AGENT -m comment --comment "ip-masq-agent: outbound traffic is subject to ' +
      'MASQUERADE (must be last in chain)" -j SNAT --to-source 192.0.2.5 --random-fully',
  );
  assert.match(chainRuleLines(v6).at(-1)!, / -j MASQUERADE --random-fully$/);
  assert.deepEqual(nftDesired(v4).rules.at(-1), "snat to 192.0.2.5 fully-random");
  assert.deepEqual(nftDesired(v6).rules.at(-1), "masquerade fully-random");
});

Deno.test("append mode without the new keys renders exactly as before (no mark rule, RETURN)", () => {
  const { chains } = load({ "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8]\n" });
  const lines = chainRuleLines(chains[0]);
  assert.ok(lines.every((line) => !/ -j ACCEPT| -m mark | -o | SNAT/.test(line)), lines.join("\n"));
  assert.ok(!("kubeProxyMark" in chains[0]));
});

Deno.test("insert mode: --kube-proxy-masquerade-bit sets the first rule's mark", () => {
  const parsed = parseFlags(["--postrouting-jump=insert", "--kube-proxy-masquerade-bit=31"]);
  assert.ok(parsed.ok);
  const { chains } = load({ "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8]\n" }, {
    postroutingJump: "insert",
    kubeProxyMasqueradeBit: parsed.value.flags.kubeProxyMasqueradeBit,
  });
  assert.equal(
    chainRuleLines(chains[0])[0],
    "-A IP-MASQ-AGENT -m mark --mark 0x80000000/0x80000000 -m comment --comment " +
      '"ip-masq-agent: traffic kube-proxy marked for masquerade is left to kube-proxy" -j RETURN',
  );
  assert.equal(nftDesired(chains[0]).rules[1], "meta mark & 0x80000000 == 0x80000000 return");
  assert.ok(!parseFlags(["--kube-proxy-masquerade-bit=32"]).ok);
});

Deno.test("every shape reads back in sync (iptables text, fake nft JSON) and cleans up", () => {
  const configs: [Record<string, string>, Partial<AgentFlags>][] = [
    [{
      "ip-masq-agent":
        "nonMasqueradeCIDRs: [10.0.0.0/8, fd00::/8]\nmasqueradeCIDRs: [10.1.0.0/16]\n" +
        "outputAddress: 192.0.2.5\noutputAddressIPv6: 2001:db8::5\noutputInterface: eth+\n",
    }, {
      enableIpv6: true,
      toPorts: [{ first: 20000, last: 29999 }, { first: 40000, last: 40000 }],
    }],
    [{
      "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8, fd00::/8]\nnonMasqueradeSrcCIDRs: " +
        "[10.245.0.0/16, 'fd00:245::/64']\noutputInterface: eth0\n",
    }, { enableIpv6: true, postroutingJump: "insert" }],
  ];
  for (const [files, flags] of configs) {
    for (const chain of load(files, flags).chains) {
      const live = parseNatTable(
        renderFromEmpty(chain).replace("-I POSTROUTING 1 ", "-A POSTROUTING "),
      );
      assert.equal(planReconcile(chain, live).payload, null, chainRuleLines(chain).join("\n"));
      assert.match(planCleanup(chain.chain, live).payload ?? "", /^-X IP-MASQ-AGENT$/m);
      const table = nftDesired(chain);
      const fake = new FakeNft();
      fake.external(renderNftReplace(table));
      assert.deepEqual(
        planNftReconcile(table, parseNftTable(fake.list(chain.family)!, chain.family)),
        { drift: [], payload: null },
      );
    }
  }
});

Deno.test("switching append to insert rewrites the chain and moves the jump in one transaction", () => {
  const files = { "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8]\n" };
  const [append] = load(files).chains;
  const [insert] = load(files, { postroutingJump: "insert" }).chains;
  const foreign = "-A POSTROUTING -s 10.244.0.0/16 -j MASQUERADE\n";
  const live = parseNatTable(renderFromEmpty(append).replace("*nat\n", `*nat\n${foreign}`));
  const plan = planReconcile(insert, live);
  assert.deepEqual(plan.drift.map((drift) => drift.kind), ["chain-differs", "jump-not-first"]);
  const payload = plan.payload!;
  assert.equal(payload.match(/^COMMIT$/gm)?.length, 1);
  assert.match(payload, /-j ACCEPT\n/);
  assert.match(payload, /^-I POSTROUTING 1 /m);
  // The nftables table changes its priority: the whole table is replaced, atomically.
  const fake = new FakeNft();
  fake.external(renderNftReplace(nftDesired(append)));
  const nftPlan = planNftReconcile(
    nftDesired(insert),
    parseNftTable(fake.list("ipv4")!, "ipv4"),
  );
  assert.match(nftPlan.drift[0].message, /not a nat postrouting chain at priority srcnat - 1/);
  assert.equal(nftPlan.payload, renderNftReplace(nftDesired(insert)));
});

Deno.test("decide: the kube-proxy mark, outputInterface and outputAddress", () => {
  const { chains } = load({
    "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8]\noutputAddress: 192.0.2.5\n" +
      "outputInterface: eth+\n",
  }, { postroutingJump: "insert" });
  const chain = chains[0];
  const to = (destination: string, extra = {}) =>
    decide(chain, { destination: address(destination), ...extra });
  assert.equal(to("10.1.1.1").verdict, "keep source");
  assert.deepEqual(to("10.1.1.1", { kubeProxyMarked: true }).because, {
    kind: "kube-proxy-mark",
    mark: 0x4000,
  });
  assert.equal(to("10.1.1.1", { kubeProxyMarked: true }).verdict, "masquerade");
  const out = to("8.8.8.8");
  assert.equal(out.verdict, "masquerade");
  assert.equal(out.snatTo?.value.text, "192.0.2.5");
  assert.equal(out.onlyVia?.value, "eth+");
  assert.equal(to("8.8.8.8", { outputInterface: "eth1" }).onlyVia, undefined);
  assert.deepEqual(to("8.8.8.8", { outputInterface: "tun0" }).because.kind, "other-interface");
  assert.equal(to("8.8.8.8", { outputInterface: "tun0" }).verdict, "keep source");
});

Deno.test("--explain says which rule decides in insert mode, and the new keys", () => {
  const { loaded, chains } = load({
    "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8]\noutputAddress: 192.0.2.5\n" +
      "outputInterface: eth0\n",
  }, { postroutingJump: "insert" });
  const ask = (destination: string, dataplane: "iptables" | "nftables") =>
    formatExplanation(explain({
      effective: loaded.effective,
      desired: chains,
      destination: address(destination),
      live: { kind: "unavailable", reason: "not read" },
      dataplane,
    }));
  const exempt = ask("10.1.1.1", "iptables");
  assert.match(exempt, /decided by our chain's ACCEPT rule \(--postrouting-jump=insert\)/);
  assert.match(exempt, /mark 0x4000\/0x4000.*leaves our chain by its first rule/);
  assert.match(ask("10.1.1.1", "nftables"), /snat to saddr\) at priority srcnat - 1/);
  const out = ask("8.8.8.8", "iptables");
  assert.match(out, /SNAT to 192\.0\.2\.5 \(outputAddress at \/etc\/config\/ip-masq-agent:2:16\)/);
  assert.match(out, /only when it leaves by eth0 \(outputInterface at .*:3:18\)/);
  assert.match(out, /decided by our chain's last rules/);
});

Deno.test("--explain reads the live insert chain: the mark rule does not make it uncertain", () => {
  const files = { "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8]\n" };
  const { loaded, chains } = load(files, { postroutingJump: "insert" });
  const foreign = "-A POSTROUTING -s 10.244.0.0/16 -j MASQUERADE";
  const table = parseNatTable(
    renderFromEmpty(chains[0]).replace("-I POSTROUTING 1 ", "-A POSTROUTING ") + foreign + "\n",
  );
  const answer = explain({
    effective: loaded.effective,
    desired: chains,
    destination: address("10.1.1.1"),
    source: address("10.244.1.2"),
    live: { kind: "read", backend: "iptables nft", table },
  });
  const live = answer.live;
  assert.ok(live.status === "agrees", JSON.stringify(live));
  assert.match(live.decidedBy, /-d 10\.0\.0\.0\/8 .* -j ACCEPT$/);
});
