/**
 * Issue 15 item 8: every setting that shapes the rules is a config key too, merged across files,
 * with one rule for a flag against a key (a key overrides a flag's default; an explicit flag that
 * disagrees with a key is an error naming both).
 */
import assert from "node:assert/strict";
import { ConfigError, formatProblem } from "../../lib/base/problems.ts";
import { parseConfigFile } from "../../lib/config/parse.ts";
import { loadConfig, type LoadedConfig } from "../../lib/policy/desired.ts";
import { defaultFlags, flagTable, parseFlags } from "../../lib/settings/flags.ts";
import {
  changedSettings,
  type CommandLine,
  settingKeyNames,
  settingKeys,
} from "../../lib/settings/keys.ts";
import type { ConfigDirContents } from "../../lib/config/parse.ts";

const encoder = new TextEncoder();

function dir(files: Record<string, string>): ConfigDirContents {
  return {
    kind: "files",
    files: Object.entries(files).map(([name, text]) => ({
      path: `/etc/config/${name}`,
      bytes: encoder.encode(text),
    })),
  };
}

function commandLine(...argv: string[]): CommandLine {
  const parsed = parseFlags(argv);
  if (!parsed.ok) assert.fail(parsed.error);
  return parsed.value;
}

function load(files: Record<string, string>, ...argv: string[]): LoadedConfig {
  const line = commandLine(...argv);
  return loadConfig(dir(files), line.flags, line);
}

function rejection(files: Record<string, string>, ...argv: string[]): string[] {
  try {
    load(files, ...argv);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return error.problems.map(formatProblem);
  }
  assert.fail("expected the config to be rejected");
}

Deno.test("every flag that shapes the rules, or says where they live, is a config key", () => {
  // The readiness probe must compute what the agent computes: each of these, given only in
  // args, would make a probe that does not repeat it disagree (issue 15 item 8).
  const ruleShaping = [
    "masqChain",
    "nomasqAllReservedRanges",
    "enableIpv6",
    "randomFully",
    "toPorts",
    "iptablesMode",
    "dataplane",
    "postroutingJump",
    "kubeProxyMasqueradeBit",
  ];
  assert.deepEqual(Object.values(settingKeys).sort(), ruleShaping.sort());
  for (const key of settingKeyNames) {
    assert.ok(
      flagTable.some((def) => def.field === settingKeys[key]),
      `${key} has a flag`,
    );
  }
});

Deno.test("each setting key is read from a file with its position, as the flag parses it", () => {
  const text = [
    "masqChain: MY-MASQ",
    "nomasqAllReservedRanges: true",
    "enableIPv6: true",
    "randomFully: false",
    "toPorts: 1024-29999,32768-65535",
    "iptablesMode: legacy",
    "dataplane: nftables",
    "postroutingJump: insert",
    "",
  ].join("\n");
  const parsed = parseConfigFile("/etc/config/ip-masq-agent", encoder.encode(text), {
    enableIpv6: false,
  });
  if (!parsed.ok) assert.fail(parsed.error.map(formatProblem).join("\n"));
  assert.deepEqual(
    parsed.value.settings?.map((s) => [s.key, s.text, s.at.line]),
    [
      ["masqChain", "MY-MASQ", 1],
      ["nomasqAllReservedRanges", "true", 2],
      ["enableIPv6", "true", 3],
      ["randomFully", "false", 4],
      ["toPorts", "1024-29999,32768-65535", 5],
      ["iptablesMode", "legacy", 6],
      ["dataplane", "nftables", 7],
      ["postroutingJump", "insert", 8],
    ],
  );
  const loaded = load({ "ip-masq-agent": text });
  const settings = loaded.settings!;
  assert.equal(settings.masqChain, "MY-MASQ");
  assert.equal(settings.nomasqAllReservedRanges, true);
  assert.equal(settings.enableIpv6, true);
  assert.equal(settings.randomFully, false);
  assert.deepEqual(settings.toPorts, [{ first: 1024, last: 29999 }, { first: 32768, last: 65535 }]);
  assert.equal(settings.iptablesMode, "legacy");
  assert.equal(settings.dataplane, "nftables");
  assert.equal(settings.postroutingJump, "insert");
});

Deno.test("setting keys match case-insensitively, like every key (enableIpv6 as v1 #86 asked)", () => {
  assert.equal(load({ "ip-masq-agent": "enableipv6: true\n" }).settings?.enableIpv6, true);
  assert.equal(load({ "ip-masq-agent": "enableIpv6: true\n" }).settings?.enableIpv6, true);
});

Deno.test("a bad setting value is a config problem with the file, line and key", () => {
  const cases: [string, RegExp][] = [
    ["masqChain: POSTROUTING\n", /masqChain: invalid value "POSTROUTING"/],
    ["masqChain: [A, B]\n", /masqChain: must be a single value, got a list/],
    ["enableIPv6: maybe\n", /enableIPv6: must be true or false, got "maybe"/],
    ["toPorts: 70000\n", /toPorts: invalid value "70000"/],
    ["dataplane: ebpf\n", /dataplane: invalid value "ebpf": must be "iptables" or "nftables"/],
    ["iptablesMode: nf\n", /iptablesMode: invalid value "nf"/],
    ["postroutingJump: first\n", /postroutingJump: invalid value "first"/],
    ["randomFully: 1\n", /randomFully: must be true or false, got number 1/],
  ];
  for (const [text, expected] of cases) {
    const problems = rejection({ "ip-masq-agent": text });
    assert.equal(problems.length, 1, problems.join("\n"));
    assert.match(problems[0], /^\/etc\/config\/ip-masq-agent:1:\d+: /);
    assert.match(problems[0], expected);
  }
});

Deno.test("a key overrides the flag's default; the flags not given stay as they were", () => {
  const loaded = load({ "ip-masq-agent": "toPorts: 2000-3000\n" }, "--v=2");
  assert.deepEqual(loaded.settings?.toPorts, [{ first: 2000, last: 3000 }]);
  assert.equal(loaded.settings?.verbosity, 2);
  assert.equal(loaded.settings?.masqChain, defaultFlags.masqChain);
  // Without a key, the flag stands.
  assert.equal(load({ "ip-masq-agent": "{}\n" }, "--masq-chain=MINE").settings?.masqChain, "MINE");
});

Deno.test("an explicit flag that agrees with the key is fine; one that disagrees is an error", () => {
  const file = { "ip-masq-agent": "nonMasqueradeCIDRs: []\n\nmasqChain: MY-MASQ\n" };
  assert.equal(load(file, "--masq-chain=MY-MASQ").settings?.masqChain, "MY-MASQ");
  // Even a flag given at its default value counts as given: the operator said it.
  const problems = rejection(file, "--masq-chain=IP-MASQ-AGENT");
  assert.equal(problems.length, 1);
  assert.equal(
    problems[0],
    '/etc/config/ip-masq-agent:3:12: masqChain: is "MY-MASQ" but --masq-chain=IP-MASQ-AGENT on ' +
      "the command line says otherwise: set it in one place (a key overrides a flag's default, " +
      "and a flag given with a key must agree with it)",
  );
  // Equal values compare in command-line form: "1024-65535" and 1024-65535 are one value.
  assert.ok(load({ "ip-masq-agent": "toPorts: '1024-65535'\n" }, "--to-ports=1024-65535"));
  assert.ok(load({ "ip-masq-agent": "randomFully: yes\n" }, "--random-fully=true"));
});

Deno.test("settings merge across files; two different values are an error naming both", () => {
  const merged = load({
    "ip-masq-agent": "masqChain: MY-MASQ\n",
    "ip-masq-agent-reconciled": "toPorts: 1024-65535\nmasqChain: MY-MASQ\n",
  });
  assert.equal(merged.settings?.masqChain, "MY-MASQ");
  assert.deepEqual(merged.settings?.toPorts, [{ first: 1024, last: 65535 }]);
  const problems = rejection({
    "ip-masq-agent": "dataplane: nftables\n",
    "ip-masq-agent-reconciled": "\ndataplane: iptables\n",
  });
  assert.deepEqual(problems, [
    '/etc/config/ip-masq-agent-reconciled:2:12: dataplane: is "iptables" here but "nftables" ' +
    "in /etc/config/ip-masq-agent:1:12: a setting must have one value; remove one of them",
  ]);
});

Deno.test("enableIPv6 in a file allows IPv6 CIDRs in every file; without it they are errors", () => {
  const v6 = { "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8, fd00::/8]\n" };
  const enabled = load({ ...v6, "ip-masq-agent-reconciled": "enableIPv6: true\n" });
  assert.deepEqual(
    enabled.effective.nonMasqueradeCidrs.map((cidr) => cidr.value.text),
    ["10.0.0.0/8", "fd00::/8"],
  );
  assert.equal(enabled.settings?.enableIpv6, true);
  // The flag does it as before.
  assert.equal(load(v6, "--enable-ipv6").settings?.enableIpv6, true);
  // Neither: the same problem as without settings, naming the item.
  assert.deepEqual(rejection(v6), [
    "/etc/config/ip-masq-agent:1:34: nonMasqueradeCIDRs[1]: fd00::/8 is an IPv6 CIDR but IPv6 " +
    "is not enabled: add the --enable-ipv6 flag or enableIPv6: true",
  ]);
  // enableIPv6: false said in a file, and another problem too: both files' problems are listed.
  const problems = rejection({ ...v6, "ip-masq-agent-reconciled": "masqLinkLocal: 3\n" });
  assert.equal(problems.length, 2, problems.join("\n"));
});

Deno.test("nomasqAllReservedRanges as a key chooses the defaults as the flag does", () => {
  const loaded = load({ "ip-masq-agent": "nomasqAllReservedRanges: true\n" });
  assert.equal(loaded.settings?.nomasqAllReservedRanges, true);
});

Deno.test("loadConfig without the command line ignores setting keys (the caller applied them)", () => {
  const loaded = loadConfig(dir({ "ip-masq-agent": "masqChain: MY-MASQ\n" }), defaultFlags);
  assert.equal(loaded.settings, undefined);
});

Deno.test("changedSettings compares in command-line form and ignores flags that are not settings", () => {
  assert.deepEqual(changedSettings(defaultFlags, { ...defaultFlags }), []);
  assert.deepEqual(
    changedSettings(defaultFlags, {
      ...defaultFlags,
      toPorts: [{ first: 1, last: 2 }],
      dataplane: "nftables",
      verbosity: 4,
    }),
    ["toPorts", "dataplane"],
  );
});
