import assert from "node:assert/strict";
import { contains } from "../../lib/net/cidr.ts";
import { type FileConfig, parseConfigFile } from "../../lib/config/parse.ts";
import { formatProblem } from "../../lib/base/problems.ts";
import {
  type EffectiveConfig,
  type Finding,
  mergeConfigs,
  type MergeResult,
  reservedRanges,
  rfc1918Ranges,
} from "../../lib/config/merge.ts";

const encoder = new TextEncoder();

/** Parses `text` as the file `/etc/config/<name>`; IPv6 is enabled so every family can be tested. */
function file(name: string, text: string): FileConfig {
  const path = `/etc/config/${name}`;
  const result = parseConfigFile(path, encoder.encode(text), { enableIpv6: true });
  if (!result.ok) assert.fail(result.error.map(formatProblem).join("\n"));
  return result.value;
}

function merge(...files: FileConfig[]): MergeResult {
  return mergeConfigs(files, { nomasqAllReservedRanges: false });
}

function cidrTexts(config: EffectiveConfig): string[] {
  return config.nonMasqueradeCidrs.map((cidr) => cidr.value.text);
}

function kinds(findings: readonly Finding[]): string[] {
  return findings.map((finding) => finding.kind);
}

function findingOf(findings: readonly Finding[], kind: Finding["kind"]): Finding {
  const found = findings.filter((finding) => finding.kind === kind);
  assert.equal(found.length, 1, `one ${kind} finding expected in ${JSON.stringify(findings)}`);
  return found[0];
}

function assertIncludes(text: string, part: string): void {
  assert.ok(text.includes(part), `expected ${JSON.stringify(text)} to include ${part}`);
}

// ---------------------------------------------------------------------------
// Defaults

Deno.test("with no file the defaults are the RFC 1918 ranges and link-local stays exempt", () => {
  const { config, findings } = mergeConfigs([], { nomasqAllReservedRanges: false });
  assert.deepEqual(config.files, []);
  assert.deepEqual(cidrTexts(config), ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]);
  assert.deepEqual(cidrTexts(config), [...rfc1918Ranges]);
  assert.equal(config.masqLinkLocal.value, false);
  assert.equal(config.masqLinkLocalIPv6.value, false);
  assert.equal(config.resyncInterval, undefined);
  assert.deepEqual(findings, []);
});

Deno.test("with no file and --nomasq-all-reserved-ranges the defaults are every reserved IPv4 range", () => {
  const { config, findings } = mergeConfigs([], { nomasqAllReservedRanges: true });
  assert.deepEqual(cidrTexts(config), [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "240.0.0.0/4",
  ]);
  assert.deepEqual(cidrTexts(config), [...reservedRanges]);
  assert.deepEqual(findings, []);
});

Deno.test("default CIDRs say they are built-in defaults rather than naming a file", () => {
  const plain = mergeConfigs([], { nomasqAllReservedRanges: false }).config;
  const reserved = mergeConfigs([], { nomasqAllReservedRanges: true }).config;
  for (const cidr of plain.nonMasqueradeCidrs) {
    assert.deepEqual(cidr.at, { file: "(default: RFC 1918)" });
  }
  for (const cidr of reserved.nonMasqueradeCidrs) {
    assert.deepEqual(cidr.at, { file: "(default: --nomasq-all-reserved-ranges)" });
  }
  assert.deepEqual(plain.masqLinkLocal.at, { file: "(default)" });
});

Deno.test("a present file replaces the defaults, also with --nomasq-all-reserved-ranges", () => {
  const files = [file("ip-masq-agent", "nonMasqueradeCIDRs:\n  - 10.244.0.0/16\n")];
  for (const nomasqAllReservedRanges of [false, true]) {
    const { config } = mergeConfigs(files, { nomasqAllReservedRanges });
    assert.deepEqual(cidrTexts(config), ["10.244.0.0/16"]);
    assert.deepEqual(config.files, ["/etc/config/ip-masq-agent"]);
  }
});

Deno.test("a file with only a boolean keeps the default CIDRs (v1, issue 15)", () => {
  const { config, findings } = merge(file("ip-masq-agent", "masqLinkLocal: true\n"));
  assert.deepEqual(cidrTexts(config), ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]);
  assert.equal(config.defaultNonMasqueradeCidrs, true);
  assert.equal(config.masqLinkLocal.value, true);
  assert.deepEqual(kinds(findings), []);
});

Deno.test("the defaults stand until some file names nonMasqueradeCIDRs, even as []", () => {
  const reserved = mergeConfigs([file("ip-masq-agent", "")], { nomasqAllReservedRanges: true });
  assert.equal(reserved.config.nonMasqueradeCidrs.length, 11, "all reserved ranges kept");
  // null is "not set", as Go's JSON decoding leaves the field untouched.
  for (
    const text of ["", "nonMasqueradeCIDRs:\n", "nonMasqueradeCIDRs: null\n", "cidrLimit: 5\n"]
  ) {
    const { config } = merge(file("ip-masq-agent", text));
    assert.deepEqual(cidrTexts(config), ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"], text);
  }
  const named = merge(
    file("ip-masq-a", "masqLinkLocal: true\n"),
    file("ip-masq-b", "nonMasqueradeCIDRs: [10.244.0.0/16]\n"),
  );
  assert.deepEqual(cidrTexts(named.config), ["10.244.0.0/16"], "the union replaces the defaults");
  assert.equal(named.config.defaultNonMasqueradeCidrs, undefined);
  const empty = merge(file("ip-masq-a", "nonMasqueradeCIDRs: []\n"), file("ip-masq-b", ""));
  assert.deepEqual(cidrTexts(empty.config), [], "[] replaces them with nothing");
  assert.deepEqual(kinds(empty.findings), ["masquerade-everything"]);
});

// ---------------------------------------------------------------------------
// CIDRs

Deno.test("CIDRs are the union of all files in file order, and the first occurrence wins", () => {
  const { config, findings } = merge(
    file("ip-masq-a", "nonMasqueradeCIDRs:\n  - 10.244.0.0/16\n  - 192.168.0.0/16\n"),
    file("ip-masq-b", "nonMasqueradeCIDRs:\n  - 192.168.0.0/16\n  - 100.64.0.0/10\n"),
    file("ip-masq-c", '{"nonMasqueradeCIDRs": ["100.64.0.0/10", "10.244.0.0/16", "fd00::/8"]}'),
  );
  assert.deepEqual(cidrTexts(config), [
    "10.244.0.0/16",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fd00::/8",
  ]);
  assert.deepEqual(config.nonMasqueradeCidrs.map((cidr) => cidr.at), [
    { file: "/etc/config/ip-masq-a", line: 2, column: 5 },
    { file: "/etc/config/ip-masq-a", line: 3, column: 5 },
    { file: "/etc/config/ip-masq-b", line: 3, column: 5 },
    { file: "/etc/config/ip-masq-c", line: 1, column: 59 },
  ]);
  assert.deepEqual(config.files, [
    "/etc/config/ip-masq-a",
    "/etc/config/ip-masq-b",
    "/etc/config/ip-masq-c",
  ]);
  assert.deepEqual(findings, []);
});

Deno.test("a CIDR listed twice in one file appears once", () => {
  const { config } = merge(
    file("ip-masq-agent", "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - 10.0.0.0/8\n"),
  );
  assert.deepEqual(cidrTexts(config), ["10.0.0.0/8"]);
  assert.equal(config.nonMasqueradeCidrs[0].at.line, 2);
});

Deno.test("spellings of the same IPv6 CIDR are one CIDR after canonicalisation", () => {
  const { config } = merge(
    file("ip-masq-a", "nonMasqueradeCIDRs:\n  - FD00::/8\n"),
    file("ip-masq-b", "nonMasqueradeCIDRs:\n  - fd00:0::/8\n"),
  );
  assert.deepEqual(cidrTexts(config), ["fd00::/8"]);
});

Deno.test("merging is deterministic: the same files give the same result", () => {
  const files = [
    file("ip-masq-a", "nonMasqueradeCIDRs: [10.0.0.0/8, 172.16.0.0/12]\nmasqLinkLocal: no\n"),
    file("ip-masq-b", "nonMasqueradeCIDRs: [172.16.0.0/12, 192.168.0.0/16]\nmasqLinkLocal: yes\n"),
  ];
  assert.deepEqual(merge(...files), merge(...files));
});

// ---------------------------------------------------------------------------
// Booleans

Deno.test("booleans are ORed across files", () => {
  type Setting = "true" | "false" | undefined;
  const cases: [Setting, Setting, boolean][] = [
    [undefined, undefined, false],
    ["false", undefined, false],
    [undefined, "false", false],
    ["false", "false", false],
    ["true", undefined, true],
    [undefined, "true", true],
    ["true", "true", true],
    ["true", "false", true],
    ["false", "true", true],
  ];
  const text = (key: string, value: Setting) =>
    value === undefined ? "nonMasqueradeCIDRs: [10.0.0.0/8]\n" : `${key}: ${value}\n`;
  for (const [a, b, want] of cases) {
    for (const key of ["masqLinkLocal", "masqLinkLocalIPv6"] as const) {
      const { config } = merge(file("ip-masq-a", text(key, a)), file("ip-masq-b", text(key, b)));
      assert.equal(config[key].value, want, `${key}: ${a} OR ${b}`);
    }
  }
});

Deno.test("a boolean set differently in two files is a finding naming both files and the winner", () => {
  for (const [first, second] of [["false", "true"], ["true", "false"]]) {
    const { config, findings } = merge(
      file("ip-masq-agent", `nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqLinkLocal: ${first}\n`),
      file("ip-masq-cloud", `masqLinkLocal: ${second}\n`),
    );
    assert.equal(config.masqLinkLocal.value, true);
    const trueFile = first === "true" ? "ip-masq-agent" : "ip-masq-cloud";
    assert.equal(config.masqLinkLocal.at.file, `/etc/config/${trueFile}`);
    const finding = findingOf(findings, "conflicting-boolean");
    assertIncludes(finding.message, "masqLinkLocal is true in");
    assertIncludes(finding.message, "/etc/config/ip-masq-agent:2:16");
    assertIncludes(finding.message, "/etc/config/ip-masq-cloud:1:16");
    assertIncludes(finding.message, "true wins");
  }
});

Deno.test("a conflicting masqLinkLocalIPv6 is reported on its own", () => {
  const { findings } = merge(
    file("ip-masq-a", "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqLinkLocalIPv6: true\n"),
    file("ip-masq-b", "masqLinkLocal: true\nmasqLinkLocalIPv6: false\n"),
  );
  const finding = findingOf(findings, "conflicting-boolean");
  assertIncludes(finding.message, "masqLinkLocalIPv6 is true in /etc/config/ip-masq-a:2:20");
  assertIncludes(finding.message, "and false in /etc/config/ip-masq-b:2:20");
});

Deno.test("the same boolean set the same way in several files is no finding", () => {
  for (const value of ["true", "false"]) {
    const { findings } = merge(
      file("ip-masq-a", `nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqLinkLocal: ${value}\n`),
      file("ip-masq-b", `masqLinkLocal: ${value}\n`),
      file("ip-masq-c", "nonMasqueradeCIDRs: [172.16.0.0/12]\n"),
    );
    assert.deepEqual(findings, [], value);
  }
});

// ---------------------------------------------------------------------------
// resyncInterval

Deno.test("resyncInterval is unset unless a file sets it", () => {
  const { config } = merge(file("ip-masq-a", "nonMasqueradeCIDRs: [10.0.0.0/8]\n"));
  assert.equal(config.resyncInterval, undefined);
});

Deno.test("the shortest resyncInterval wins, and a disagreement is reported", () => {
  const { config, findings } = merge(
    file("ip-masq-a", "nonMasqueradeCIDRs: [10.0.0.0/8]\nresyncInterval: 2m\n"),
    file("ip-masq-b", "resyncInterval: 30s\n"),
  );
  assert.equal(config.resyncInterval?.value, 30_000);
  assert.equal(config.resyncInterval?.at.file, "/etc/config/ip-masq-b");
  const finding = findingOf(findings, "conflicting-resync-interval");
  assertIncludes(finding.message, "/etc/config/ip-masq-b:1:17");
  assertIncludes(finding.message, "/etc/config/ip-masq-a:2:17");
  assertIncludes(finding.message, "(30s) wins");
});

Deno.test("the same resyncInterval in two spellings is no finding", () => {
  const { config, findings } = merge(
    file("ip-masq-a", "nonMasqueradeCIDRs: [10.0.0.0/8]\nresyncInterval: 1m30s\n"),
    file("ip-masq-b", "resyncInterval: 90s\n"),
  );
  assert.equal(config.resyncInterval?.value, 90_000);
  assert.deepEqual(findings, []);
});

// ---------------------------------------------------------------------------
// Findings about CIDRs

Deno.test("a CIDR inside another is a finding naming both CIDRs and where each came from", () => {
  const { config, findings } = merge(
    file("ip-masq-a", "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n"),
    file("ip-masq-b", "nonMasqueradeCIDRs:\n  - 192.168.0.0/16\n  - 10.244.0.0/16\n"),
  );
  assert.deepEqual(cidrTexts(config), ["10.0.0.0/8", "192.168.0.0/16", "10.244.0.0/16"]);
  const finding = findingOf(findings, "contained-cidr");
  assert.equal(
    finding.message,
    "10.244.0.0/16 at /etc/config/ip-masq-b:3:5 is inside 10.0.0.0/8 at " +
      "/etc/config/ip-masq-a:2:5 and has no effect",
  );
});

Deno.test("a CIDR listed before the range that contains it is reported too", () => {
  const { findings } = merge(
    file("ip-masq-a", "nonMasqueradeCIDRs:\n  - 10.1.2.0/24\n  - 10.1.0.0/16\n  - 10.0.0.0/8\n"),
  );
  assert.deepEqual(kinds(findings), ["contained-cidr", "contained-cidr"]);
  assertIncludes(findings[0].message, "10.1.2.0/24 at /etc/config/ip-masq-a:2:5 is inside");
  assertIncludes(findings[1].message, "10.1.0.0/16 at /etc/config/ip-masq-a:3:5 is inside");
});

Deno.test("IPv4 and IPv6 CIDRs never contain each other", () => {
  const { findings } = merge(
    file("ip-masq-a", "nonMasqueradeCIDRs:\n  - 0.0.0.0/1\n  - ::/1\n  - 10.0.0.0/8\n"),
  );
  const contained = findings.filter((finding) => finding.kind === "contained-cidr");
  assert.equal(contained.length, 1);
  assertIncludes(contained[0].message, "10.0.0.0/8");
  assertIncludes(contained[0].message, "inside 0.0.0.0/1");
});

Deno.test("0.0.0.0/0 is a finding: no IPv4 traffic would be masqueraded", () => {
  const { findings } = merge(file("ip-masq-a", "nonMasqueradeCIDRs:\n  - 0.0.0.0/0\n"));
  assert.deepEqual(kinds(findings), ["masquerade-nothing"]);
  assert.equal(
    findings[0].message,
    "0.0.0.0/0 at /etc/config/ip-masq-a:2:5 exempts every destination: " +
      "no ipv4 traffic will be masqueraded",
  );
});

Deno.test("::/0 is a finding: no IPv6 traffic would be masqueraded", () => {
  const { findings } = merge(file("ip-masq-a", "nonMasqueradeCIDRs:\n  - ::/0\n"));
  const finding = findingOf(findings, "masquerade-nothing");
  assertIncludes(finding.message, "::/0 at /etc/config/ip-masq-a:2:5 exempts every destination");
  assertIncludes(finding.message, "no ipv6 traffic will be masqueraded");
});

Deno.test("0.0.0.0/0 next to other CIDRs also reports them as having no effect", () => {
  const { findings } = merge(
    file("ip-masq-a", "nonMasqueradeCIDRs:\n  - 0.0.0.0/0\n  - 10.0.0.0/8\n"),
  );
  assert.deepEqual(kinds(findings), ["masquerade-nothing", "contained-cidr"]);
});

Deno.test("an empty effective list named by a file is a finding", () => {
  const cases = [
    [file("ip-masq-agent", "nonMasqueradeCIDRs: []\n")],
    [file("ip-masq-a", "masqLinkLocal: true\n"), file("ip-masq-b", "nonMasqueradeCIDRs: []\n")],
  ];
  for (const files of cases) {
    const { config, findings } = merge(...files);
    assert.deepEqual(cidrTexts(config), []);
    const finding = findingOf(findings, "masquerade-everything");
    assertIncludes(finding.message, "nonMasqueradeCIDRs is set but lists no CIDR");
    assertIncludes(finding.message, "the defaults apply only while no file names");
  }
});

Deno.test("a clean config has no findings", () => {
  const { findings } = merge(
    file("ip-masq-agent", "nonMasqueradeCIDRs:\n  - 10.244.0.0/16\n  - 192.168.0.0/16\n"),
    file("ip-masq-cloud", "nonMasqueradeCIDRs:\n  - 10.224.0.0/12\n  - 172.16.0.0/12\n"),
  );
  assert.deepEqual(findings, []);
});

Deno.test("each contained CIDR names the containing CIDR listed first, whatever the order", () => {
  // Nested and disjoint ranges of both families in a scrambled order.
  const texts = [
    "10.1.2.0/24",
    "172.16.0.0/12",
    "10.1.0.0/16",
    "fd00:1::/32",
    "10.0.0.0/8",
    "10.1.2.128/25",
    "192.168.1.0/24",
    "fd00::/8",
    "10.2.0.0/16",
    "0.0.0.0/1",
    "172.20.0.0/16",
    "fd00:1:2::/48",
    "11.0.0.0/8",
  ];
  const lines = texts.map((text) => `  - ${text}\n`).join("");
  const { config, findings } = merge(file("ip-masq-a", `nonMasqueradeCIDRs:\n${lines}`));
  const cidrs = config.nonMasqueradeCidrs;
  // The definition: the first CIDR in list order that contains it.
  const want = cidrs.flatMap((cidr) => {
    const outer = cidrs.find((other) => other !== cidr && contains(other.value, cidr.value));
    return outer ? [`${cidr.value.text} is inside ${outer.value.text}`] : [];
  });
  const got = findings.filter((finding) => finding.kind === "contained-cidr").map((finding) =>
    finding.message.replace(/^(\S+) at \S+ is inside (\S+) at .*$/, "$1 is inside $2")
  );
  assert.deepEqual(got, want);
  assert.deepEqual(got, [
    "10.1.2.0/24 is inside 10.1.0.0/16",
    "10.1.0.0/16 is inside 10.0.0.0/8",
    "fd00:1::/32 is inside fd00::/8",
    "10.0.0.0/8 is inside 0.0.0.0/1",
    "10.1.2.128/25 is inside 10.1.2.0/24",
    "10.2.0.0/16 is inside 10.0.0.0/8",
    "172.20.0.0/16 is inside 172.16.0.0/12",
    "fd00:1:2::/48 is inside fd00:1::/32",
    "11.0.0.0/8 is inside 0.0.0.0/1",
  ]);
});

Deno.test("findings for tens of thousands of CIDRs stay fast", () => {
  // A raised cidrLimit allows this many; comparing every pair used to stall the agent for minutes.
  const count = 30_000;
  const lines = Array.from(
    { length: count },
    (_, i) => `  - 10.${(i >> 8) & 255}.${i & 255}.${i % 7 === 0 ? "0/24" : "128/25"}\n`,
  ).join("");
  const big = file("ip-masq-a", `cidrLimit: 100000\nnonMasqueradeCIDRs:\n${lines}`);
  const started = performance.now();
  const { config, findings } = merge(big, file("ip-masq-b", "nonMasqueradeCIDRs: [10.0.0.0/8]\n"));
  const elapsed = performance.now() - started;
  assert.equal(config.nonMasqueradeCidrs.length, count + 1);
  assert.equal(findings.filter((finding) => finding.kind === "contained-cidr").length, count);
  assert.ok(elapsed < 5_000, `merging ${count} CIDRs took ${Math.round(elapsed)} ms`);
});
