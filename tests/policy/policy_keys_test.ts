/**
 * Issue 12's config keys and jump position, unit by unit: validating and
 * merging `masqueradeCIDRs` and `nonMasqueradeSrcCIDRs`, their findings and
 * the contradiction error, rendering them in longest-prefix order with our
 * comments, cleanup recognising those rules, and `--postrouting-jump=insert`
 * planning.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type FileConfig, parseConfigFile } from "../../lib/config/parse.ts";
import { ConfigError, formatProblem } from "../../lib/base/problems.ts";
import { desiredChains, loadConfig } from "../../lib/policy/desired.ts";
import { defaultFlags } from "../../lib/settings/flags.ts";
import { mergeConfigs, type MergeResult } from "../../lib/config/merge.ts";
import {
  chainRuleLines,
  exceptionComment,
  jumpRuleLine,
  renderFromEmpty,
  returnComment,
  sourceExemptionComment,
} from "../../lib/iptables/render.ts";
import { type DesiredChain, desiredChain, orderedRules } from "../../lib/policy/chain.ts";
import { parseNatTable, planCleanup, planReconcile } from "../../lib/iptables/plan.ts";

const encoder = new TextEncoder();

function parse(text: string, enableIpv6 = true, path = "/etc/config/ip-masq-agent") {
  return parseConfigFile(path, encoder.encode(text), { enableIpv6 });
}

function file(name: string, text: string): FileConfig {
  const result = parse(text, true, `/etc/config/${name}`);
  if (!result.ok) assert.fail(result.error.map(formatProblem).join("\n"));
  return result.value;
}

function merge(...files: FileConfig[]): MergeResult {
  return mergeConfigs(files, { nomasqAllReservedRanges: false });
}

function problems(text: string, enableIpv6 = true): string[] {
  const result = parse(text, enableIpv6);
  assert.ok(!result.ok, `expected a rejection of:\n${text}`);
  return result.error.map(formatProblem);
}

function chainOf(text: string, family: "ipv4" | "ipv6" = "ipv4", toPorts = defaultFlags.toPorts) {
  const { config, problems } = merge(file("ip-masq-agent", text));
  assert.deepEqual(problems, []);
  return desiredChain(config, family, "IP-MASQ-AGENT", { randomFully: true, toPorts });
}

const ret = (cidr: string) =>
  `-A IP-MASQ-AGENT -d ${cidr} -m comment --comment "${returnComment}" -j RETURN`;
const exception = (cidr: string) =>
  `-A IP-MASQ-AGENT -d ${cidr} -m comment --comment "${exceptionComment}" -j MASQUERADE --random-fully`;
const source = (cidr: string) =>
  `-A IP-MASQ-AGENT -s ${cidr} -m comment --comment "${sourceExemptionComment}" -j RETURN`;
const last = '-A IP-MASQ-AGENT -m comment --comment "ip-masq-agent: outbound traffic is subject ' +
  'to MASQUERADE (must be last in chain)" -j MASQUERADE --random-fully';

// ---------------------------------------------------------------------------
// Validation

Deno.test("masqueradeCIDRs and nonMasqueradeSrcCIDRs parse with their lines, in file order", () => {
  const parsed = file(
    "ip-masq-agent",
    "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqueradeCIDRs:\n  - 10.1.0.0/16\n  - 2001:DB8::/32\n" +
      "nonMasqueradeSrcCIDRs: [10.244.0.0/16]\n",
  );
  assert.deepEqual(parsed.masqueradeCidrs.map((cidr) => cidr.value.text), [
    "10.1.0.0/16",
    "2001:db8::/32",
  ]);
  assert.deepEqual(parsed.masqueradeCidrs[0].at, {
    file: "/etc/config/ip-masq-agent",
    line: 3,
    column: 5,
  });
  assert.deepEqual(parsed.nonMasqueradeSrcCidrs.map((cidr) => cidr.at.line), [5]);
});

Deno.test("files without the new keys parse to empty lists", () => {
  const parsed = file("ip-masq-agent", "nonMasqueradeCIDRs: [10.0.0.0/8]\n");
  assert.deepEqual(parsed.masqueradeCidrs, []);
  assert.deepEqual(parsed.nonMasqueradeSrcCidrs, []);
});

Deno.test("the new keys are validated as strictly as nonMasqueradeCIDRs, naming the key", () => {
  const cases: [string, RegExp][] = [
    ["masqueradeCIDRs: [10.0.0.1/8]\n", /:1:\d+: masqueradeCIDRs\[0\]: .*not aligned/],
    ["nonMasqueradeSrcCIDRs: [010.0.0.0/8]\n", /nonMasqueradeSrcCIDRs\[0\]: .*leading zero/],
    ["masqueradeCIDRs: 10.0.0.0/8\n", /masqueradeCIDRs: must be a list of CIDR strings/],
    ["nonMasqueradeSrcCIDRs:\n  -\n", /nonMasqueradeSrcCIDRs\[0\]: empty list item/],
    ['masqueradeCIDRs: ["10.0.0.0/8 -j ACCEPT"]\n', /whitespace is not allowed/],
    ["masqueradeCIDRs: [::ffff:10.0.0.0/104]\n", /IPv4-mapped/],
    ["nonMasqueradeSrcCIDRs: [fe80::/10%eth0]\n", /zones are not allowed|decimal digits/],
    ["masqueradeCIDRs: [1]\n", /must be a CIDR string, got number 1/],
    ["masqueradeCIDRs: []\nmasqueradecidrs: []\n", /masqueradeCIDRs: key appears twice/],
  ];
  for (const [text, pattern] of cases) {
    const found = problems(text);
    assert.ok(found.some((line) => pattern.test(line)), `${text}: ${found.join("\n")}`);
  }
});

Deno.test("IPv6 in the new keys needs --enable-ipv6", () => {
  for (const key of ["masqueradeCIDRs", "nonMasqueradeSrcCIDRs"]) {
    const found = problems(`${key}: [fd00::/8]\n`, false);
    assert.match(found[0], new RegExp(`${key}\\[0\\]: fd00::/8 is an IPv6 CIDR .*--enable-ipv6`));
  }
});

Deno.test("a typo of a new key suggests it", () => {
  assert.match(problems("masqueradeCIDR: []\n")[0], /did you mean "masqueradeCIDRs"\?/);
  assert.match(problems("nonMasqueradeSrcCIDR: []\n")[0], /did you mean "nonMasqueradeSrcCIDRs"\?/);
});

Deno.test("every list counts toward cidrLimit; one list keeps the old message", () => {
  assert.match(
    problems("cidrLimit: 2\nnonMasqueradeCIDRs: [10.0.0.0/8, 11.0.0.0/8, 12.0.0.0/8]\n")[0],
    /:2:1: nonMasqueradeCIDRs: has 3 CIDRs but cidrLimit is 2 \(line 1\)$/,
  );
  assert.match(
    problems(
      "cidrLimit: 3\nnonMasqueradeCIDRs: [10.0.0.0/8, 11.0.0.0/8]\nmasqueradeCIDRs: [10.1.0.0/16]\n" +
        "nonMasqueradeSrcCIDRs: [10.244.0.0/16]\n",
    )[0],
    /nonMasqueradeCIDRs: has 4 CIDRs in nonMasqueradeCIDRs \(2\), masqueradeCIDRs \(1\), nonMasqueradeSrcCIDRs \(1\) but cidrLimit is 3/,
  );
  assert.match(
    problems(`masqueradeCIDRs: [${Array.from({ length: 65 }, (_, i) => `10.${i}.0.0/16`)}]\n`)[0],
    /masqueradeCIDRs: has 65 CIDRs but the default cidrLimit is 64/,
  );
  assert.ok(
    parse("cidrLimit: 2\nmasqueradeCIDRs: [10.1.0.0/16]\nnonMasqueradeCIDRs: [10.0.0.0/8]\n").ok,
  );
});

// ---------------------------------------------------------------------------
// Merging

Deno.test("the new keys merge as nonMasqueradeCIDRs does: union, first occurrence keeps its place", () => {
  const { config, problems } = merge(
    file(
      "ip-masq-a",
      "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqueradeCIDRs: [10.2.0.0/16, 10.1.0.0/16]\n" +
        "nonMasqueradeSrcCIDRs: [10.244.0.0/16]\n",
    ),
    file(
      "ip-masq-b",
      "masqueradeCIDRs: [10.3.0.0/16, 10.2.0.0/16]\n" +
        "nonMasqueradeSrcCIDRs: [10.245.0.0/16, 10.244.0.0/16]\n",
    ),
  );
  assert.deepEqual(problems, []);
  assert.deepEqual(config.masqueradeCidrs.map((cidr) => cidr.value.text), [
    "10.2.0.0/16",
    "10.1.0.0/16",
    "10.3.0.0/16",
  ]);
  assert.equal(config.masqueradeCidrs[0].at.file, "/etc/config/ip-masq-a");
  assert.deepEqual(config.nonMasqueradeSrcCidrs.map((cidr) => cidr.value.text), [
    "10.244.0.0/16",
    "10.245.0.0/16",
  ]);
});

Deno.test("no file: the new lists are empty and the defaults render exactly as before", () => {
  const { config } = mergeConfigs([], { nomasqAllReservedRanges: false });
  assert.deepEqual(config.masqueradeCidrs, []);
  assert.deepEqual(config.nonMasqueradeSrcCidrs, []);
  const chain = desiredChain(config, "ipv4", "IP-MASQ-AGENT", { randomFully: true, toPorts: [] });
  // Issue 16 adds `linkLocal` (the built-in exemption as a field); issue 12's lists stay absent.
  assert.deepEqual(Object.keys(chain).sort(), [
    "chain",
    "exemptions",
    "family",
    "linkLocal",
    "masquerade",
  ]);
});

Deno.test("a masqueradeCIDRs entry equal to a nonMasqueradeCIDRs entry is an error naming both", () => {
  const { problems } = merge(
    file("ip-masq-a", "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - 10.1.0.0/16\n"),
    file("ip-masq-b", "# comment\nmasqueradeCIDRs: [10.1.0.0/16]\n"),
  );
  assert.equal(problems.length, 1);
  assert.equal(
    formatProblem(problems[0]),
    "/etc/config/ip-masq-b:2:19: masqueradeCIDRs: 10.1.0.0/16 is also listed in " +
      "nonMasqueradeCIDRs at /etc/config/ip-masq-a:3:5: a destination cannot be both " +
      "masqueraded and not; remove one of them",
  );
  // Through loadConfig it is a ConfigError, as every other config problem.
  assert.throws(
    () =>
      loadConfig({
        kind: "files",
        files: [{
          path: "/etc/config/ip-masq-agent",
          bytes: encoder.encode(
            "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqueradeCIDRs: [10.0.0.0/8]\n",
          ),
        }],
      }, { ...defaultFlags }),
    (error) =>
      error instanceof ConfigError && /also listed in nonMasqueradeCIDRs/.test(error.message),
  );
});

Deno.test("an exception inside no non-masquerade range is a finding: it has no effect", () => {
  const { findings } = merge(
    file(
      "ip-masq-agent",
      "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqueradeCIDRs:\n  - 10.1.0.0/16\n" +
        "  - 192.168.1.0/24\n  - 169.254.169.254/32\n",
    ),
  );
  assert.deepEqual(findings.map((finding) => finding.kind), ["ineffective-exception"]);
  assert.match(
    findings[0].message,
    /^masqueradeCIDRs 192\.168\.1\.0\/24 at \/etc\/config\/ip-masq-agent:4:5 lies inside no non-masquerade range and has no effect/,
  );
  // With masqLinkLocal, link-local is masqueraded anyway: the metadata exception does nothing.
  const linkLocal = merge(
    file("ip-masq-agent", "masqLinkLocal: true\nmasqueradeCIDRs: [169.254.169.254/32]\n"),
  );
  assert.ok(linkLocal.findings.some((finding) => finding.kind === "ineffective-exception"));
});

Deno.test("a RETURN inside an exception inside a RETURN is not reported as having no effect", () => {
  const { findings } = merge(
    file(
      "ip-masq-agent",
      "nonMasqueradeCIDRs: [10.0.0.0/8, 10.1.2.0/24, 10.9.0.0/16]\n" +
        "masqueradeCIDRs: [10.1.0.0/16]\n",
    ),
  );
  assert.deepEqual(findings.map((finding) => finding.message.split(" ")[0]), ["10.9.0.0/16"]);
});

Deno.test("source exemptions: /0 and contained ones are findings", () => {
  const { findings } = merge(
    file("ip-masq-agent", "nonMasqueradeSrcCIDRs: [10.244.0.0/16, 10.244.1.0/24, 0.0.0.0/0]\n"),
  );
  assert.deepEqual(findings.map((finding) => finding.kind).sort(), [
    "contained-cidr",
    "contained-cidr",
    "masquerade-nothing",
  ]);
});

// ---------------------------------------------------------------------------
// Rendering

Deno.test("source exemptions come first, then exceptions before the RETURN they narrow", () => {
  const chain = chainOf(
    "nonMasqueradeCIDRs: [10.0.0.0/8, 192.168.0.0/16]\nmasqueradeCIDRs: [10.1.0.0/16]\n" +
      "nonMasqueradeSrcCIDRs: [10.244.0.0/16, 0.0.0.0/0]\n",
  );
  assert.deepEqual(chainRuleLines(chain), [
    source("10.244.0.0/16"),
    // iptables-save prints no match on every source; neither do we.
    `-A IP-MASQ-AGENT -m comment --comment "${sourceExemptionComment}" -j RETURN`,
    ret("169.254.0.0/16"),
    exception("10.1.0.0/16"),
    ret("10.0.0.0/8"),
    ret("192.168.0.0/16"),
    last,
  ]);
});

Deno.test("nesting at any depth: each rule precedes the broader one of the other action", () => {
  const chain = chainOf(
    "nonMasqueradeCIDRs: [10.0.0.0/8, 10.1.2.0/24, 10.1.2.128/25, 172.16.0.0/12]\n" +
      "masqueradeCIDRs: [10.1.2.192/26, 10.1.0.0/16, 10.1.2.130/32]\n",
  );
  assert.deepEqual(orderedRules(chain).map((rule) => `${rule.action} ${rule.cidr.value.text}`), [
    "return 169.254.0.0/16",
    "masquerade 10.1.2.192/26",
    "masquerade 10.1.2.130/32",
    // Both RETURN: their order between themselves does not matter, configuration order wins.
    "return 10.1.2.0/24",
    "return 10.1.2.128/25",
    "masquerade 10.1.0.0/16",
    "return 10.0.0.0/8",
    "return 172.16.0.0/12",
  ]);
});

Deno.test("an exception of the metadata address inside link-local masquerades it, before the link-local RETURN", () => {
  const chain = chainOf(
    "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqueradeCIDRs: [169.254.169.254/32]\n",
  );
  assert.deepEqual(chainRuleLines(chain).slice(0, 2), [
    exception("169.254.169.254/32"),
    ret("169.254.0.0/16"),
  ]);
});

Deno.test("an exception equal to the built-in link-local range wins the tie", () => {
  const chain = chainOf("nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqueradeCIDRs: [169.254.0.0/16]\n");
  assert.deepEqual(chainRuleLines(chain).slice(0, 2), [
    exception("169.254.0.0/16"),
    ret("169.254.0.0/16"),
  ]);
});

Deno.test("exceptions of another family or outside every RETURN render no rule", () => {
  const chain = chainOf(
    "nonMasqueradeCIDRs: [10.0.0.0/8, fd00::/8]\nmasqueradeCIDRs: [192.168.1.0/24, fd00:1::/32]\n" +
      "nonMasqueradeSrcCIDRs: [fd00:244::/32]\n",
  );
  assert.equal(chain.masqueradeExceptions, undefined);
  assert.equal(chain.sourceExemptions, undefined);
  const v6 = chainOf(
    "nonMasqueradeCIDRs: [10.0.0.0/8, fd00::/8]\nmasqueradeCIDRs: [fd00:1::/32]\n",
    "ipv6",
  );
  assert.deepEqual(v6.masqueradeExceptions?.map((cidr) => cidr.value.text), ["fd00:1::/32"]);
});

Deno.test("with --to-ports an exception masquerades exactly as the last rules do", () => {
  const toPorts = [{ first: 1024, last: 2047 }, { first: 4096, last: 5119 }];
  const lines = chainRuleLines(chainOf(
    "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqueradeCIDRs: [10.1.0.0/16]\n",
    "ipv4",
    toPorts,
  ));
  const exceptionLines = lines.filter((line) => line.includes(exceptionComment));
  const lastLines = lines.filter((line) => line.includes("(must be last in chain)"));
  assert.equal(exceptionLines.length, 7);
  assert.deepEqual(
    exceptionLines.map((line) =>
      line.replace(" -d 10.1.0.0/16", "").replace(exceptionComment, "(must be last in chain)")
    ),
    lastLines.map((line) =>
      line.replace(
        "ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)",
        "(must be last in chain)",
      )
    ),
  );
  assert.match(exceptionLines[0], /^-A IP-MASQ-AGENT -d 10\.1\.0\.0\/16 -p tcp -m comment /);
});

Deno.test("cleanup and stale-chain removal recognise the new rules as ours", () => {
  const chain = chainOf(
    "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqueradeCIDRs: [10.1.0.0/16]\n" +
      "nonMasqueradeSrcCIDRs: [10.244.0.0/16]\n",
  );
  const live = parseNatTable(renderFromEmpty(chain));
  assert.match(planCleanup("IP-MASQ-AGENT", live).payload ?? "", /^-X IP-MASQ-AGENT$/m);
  // The same chain under an old --masq-chain name is removed as stale, chain and all.
  const renamed = parseNatTable(renderFromEmpty({ ...chain, chain: "OLD-CHAIN" }));
  const plan = planReconcile({ ...chain }, renamed);
  assert.match(plan.payload ?? "", /^-X OLD-CHAIN$/m);
});

Deno.test("configs without the new keys render byte-identically to the plain rendering", () => {
  const flags = { ...defaultFlags, enableIpv6: true };
  const { config } = merge(
    file("ip-masq-agent", "nonMasqueradeCIDRs: [10.0.0.0/8, 10.1.0.0/16, fd00::/8]\n"),
  );
  for (const chain of desiredChains(config, flags, { ipv4: true, ipv6: true })) {
    assert.deepEqual(orderedRules(chain).map((rule) => rule.cidr), chain.exemptions);
    assert.ok(!renderFromEmpty(chain).includes("-I "));
  }
});

// ---------------------------------------------------------------------------
// --postrouting-jump=insert

const insertChain: DesiredChain = {
  ...chainOf("nonMasqueradeCIDRs: [10.0.0.0/8]\n"),
  postroutingJump: "insert",
};
const jump = jumpRuleLine("IP-MASQ-AGENT");
const foreign = "-A POSTROUTING -s 10.244.0.0/16 -j MASQUERADE";

function liveWith(postrouting: readonly string[], chain: DesiredChain = insertChain) {
  return parseNatTable(
    [
      "-P POSTROUTING ACCEPT",
      ...postrouting,
      "-N IP-MASQ-AGENT",
      ...chainRuleLines(chain),
    ].join("\n"),
  );
}

Deno.test("insert: a missing jump is inserted at the top", () => {
  const plan = planReconcile(insertChain, liveWith([foreign]));
  assert.deepEqual(plan.drift.map((drift) => drift.kind), ["jump-missing"]);
  assert.equal(
    plan.payload,
    `*nat\n-I POSTROUTING 1${jump.slice("-A POSTROUTING".length)}\nCOMMIT\n`,
  );
  assert.match(renderFromEmpty(insertChain), /^-I POSTROUTING 1 -m comment /m);
});

Deno.test("insert: a jump that is no longer first is moved to first place in one transaction", () => {
  const plan = planReconcile(insertChain, liveWith([foreign, jump]));
  assert.deepEqual(plan.drift.map((drift) => drift.kind), ["jump-not-first"]);
  assert.match(plan.drift[0].message, /is rule 2, not first \(--postrouting-jump=insert\)/);
  assert.equal(
    plan.payload,
    `*nat\n-D ${jump.slice(3)}\n-I POSTROUTING 1${jump.slice("-A POSTROUTING".length)}\nCOMMIT\n`,
  );
});

Deno.test("insert: first and alone is in sync; foreign rules after it are left alone", () => {
  assert.equal(planReconcile(insertChain, liveWith([jump, foreign])).payload, null);
});

Deno.test("insert: duplicates, even spelled like the kept jump, leave exactly one jump, first", () => {
  const plan = planReconcile(insertChain, liveWith([jump, foreign, jump]));
  assert.deepEqual(plan.drift.map((drift) => drift.kind), ["jump-duplicate"]);
  const lines = plan.payload!.split("\n");
  assert.equal(lines.filter((line) => line.startsWith("-D POSTROUTING")).length, 2);
  assert.equal(lines.filter((line) => line.startsWith("-I POSTROUTING 1 ")).length, 1);
  assert.ok(
    !lines.some((line) => line.includes("-s 10.244.0.0/16")),
    "the foreign rule is not touched",
  );
});

Deno.test("append (the default) leaves a jump where it is, as upstream", () => {
  const appended = { ...insertChain, postroutingJump: undefined };
  assert.equal(planReconcile(appended, liveWith([foreign, jump], appended)).payload, null);
  assert.equal(
    planReconcile(appended, liveWith([foreign], appended)).payload,
    `*nat\n${jump}\nCOMMIT\n`,
  );
});
