import assert from "node:assert/strict";
import { defaultCidrLimit, type FileConfig, parseConfigFile } from "../../lib/config/parse.ts";
import { ConfigError, type ConfigProblem, formatProblem } from "../../lib/base/problems.ts";
import type { ConfigDirContents } from "../../lib/config/directory.ts";
import { defaultFlags } from "../../lib/settings/flags.ts";
import { rfc1918Ranges } from "../../lib/config/merge.ts";
import { loadConfig } from "../../lib/policy/desired.ts";

const path = "/etc/config/ip-masq-agent";
const encoder = new TextEncoder();

interface Options {
  readonly enableIpv6?: boolean;
  readonly file?: string;
}

function parseText(text: string, options: Options = {}) {
  return parseBytes(encoder.encode(text), options);
}

function parseBytes(bytes: Uint8Array, options: Options = {}) {
  return parseConfigFile(options.file ?? path, bytes, { enableIpv6: options.enableIpv6 ?? false });
}

function accepted(text: string, options: Options = {}): FileConfig {
  const result = parseText(text, options);
  if (!result.ok) {
    assert.fail(
      `expected ${JSON.stringify(text)} to be accepted, got:\n` +
        result.error.map(formatProblem).join("\n"),
    );
  }
  return result.value;
}

function rejected(text: string, options: Options = {}): ConfigProblem[] {
  return rejectedBytes(encoder.encode(text), options);
}

function rejectedBytes(bytes: Uint8Array, options: Options = {}): ConfigProblem[] {
  const result = parseBytes(bytes, options);
  if (result.ok) {
    assert.fail(`expected ${JSON.stringify(new TextDecoder().decode(bytes))} to be rejected`);
  }
  assert.ok(result.error.length > 0, "a rejection carries at least one problem");
  return result.error;
}

/** The one problem of a rejected file. */
function onlyProblem(text: string, options: Options = {}): ConfigProblem {
  const problems = rejected(text, options);
  assert.equal(problems.length, 1, problems.map(formatProblem).join("\n"));
  return problems[0];
}

function cidrTexts(config: FileConfig): string[] {
  return config.nonMasqueradeCidrs.map((cidr) => cidr.value.text);
}

function assertIncludes(text: string, part: string, context = ""): void {
  assert.ok(text.includes(part), `${context}expected ${JSON.stringify(text)} to include ${part}`);
}

function files(entries: Record<string, string>): ConfigDirContents {
  return {
    kind: "files",
    files: Object.entries(entries).map(([name, text]) => ({
      path: `/etc/config/${name}`,
      bytes: encoder.encode(text),
    })),
  };
}

function cidrLines(count: number, start = 0): string {
  return Array.from({ length: count }, (_, i) => `  - 10.${start + i}.0.0/16\n`).join("");
}

// ---------------------------------------------------------------------------
// Reading valid files

Deno.test("a single YAML file with every key is read completely", () => {
  const config = accepted(
    [
      "nonMasqueradeCIDRs:",
      "  - 172.16.0.0/12",
      "  - 10.0.0.0/8",
      "masqLinkLocal: true",
      "masqLinkLocalIPv6: false",
      "cidrLimit: 10",
      "resyncInterval: 5s",
      "",
    ].join("\n"),
  );
  assert.equal(config.file, path);
  assert.deepEqual(cidrTexts(config), ["172.16.0.0/12", "10.0.0.0/8"]);
  assert.equal(config.masqLinkLocal?.value, true);
  assert.equal(config.masqLinkLocalIPv6?.value, false);
  assert.equal(config.cidrLimit, 10);
  assert.equal(config.resyncInterval?.value, 5000);
});

Deno.test("a single JSON file with every key is read completely", () => {
  const config = accepted(
    [
      "{",
      '  "nonMasqueradeCIDRs": ["172.16.0.0/12", "10.0.0.0/8"],',
      '  "masqLinkLocal": true,',
      '  "masqLinkLocalIPv6": true,',
      '  "cidrLimit": 5,',
      '  "resyncInterval": "5m"',
      "}",
      "",
    ].join("\n"),
  );
  assert.deepEqual(cidrTexts(config), ["172.16.0.0/12", "10.0.0.0/8"]);
  assert.equal(config.masqLinkLocal?.value, true);
  assert.equal(config.masqLinkLocalIPv6?.value, true);
  assert.equal(config.cidrLimit, 5);
  assert.equal(config.resyncInterval?.value, 300_000);
});

Deno.test("a file with only some keys leaves the others unset", () => {
  const cases: [string, string, Partial<Record<string, unknown>>][] = [
    ["YAML, just nonMasqueradeCIDRs", "nonMasqueradeCIDRs:\n  - 192.168.0.0/16\n", {
      cidrs: ["192.168.0.0/16"],
    }],
    ["YAML, just masqLinkLocal", "masqLinkLocal: true\n", { masqLinkLocal: true }],
    ["YAML, just masqLinkLocalIPv6", "masqLinkLocalIPv6: true\n", { masqLinkLocalIPv6: true }],
    ["YAML, just cidrLimit", "cidrLimit: 3\n", { cidrLimit: 3 }],
    ["YAML, just resyncInterval", "resyncInterval: 5m\n", { resyncInterval: 300_000 }],
    ["JSON, just nonMasqueradeCIDRs", '{\n\t"nonMasqueradeCIDRs": ["192.168.0.0/16"]\n}\n', {
      cidrs: ["192.168.0.0/16"],
    }],
    ["JSON, just masqLinkLocal", '{\n\t"masqLinkLocal": true\n}\n', { masqLinkLocal: true }],
    ["JSON, just resyncInterval", '{\n\t"resyncInterval": "5m"\n}\n', {
      resyncInterval: 300_000,
    }],
  ];
  for (const [name, text, want] of cases) {
    const config = accepted(text);
    assert.deepEqual(cidrTexts(config), want.cidrs ?? [], name);
    assert.equal(config.masqLinkLocal?.value, want.masqLinkLocal, name);
    assert.equal(config.masqLinkLocalIPv6?.value, want.masqLinkLocalIPv6, name);
    assert.equal(config.cidrLimit, want.cidrLimit ?? defaultCidrLimit, name);
    assert.equal(config.resyncInterval?.value, want.resyncInterval, name);
  }
});

Deno.test("every CIDR and boolean remembers the file, line and column it came from", () => {
  const config = accepted(
    "# ConfigMap key ip-masq-agent\nnonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - 172.16.0.0/12\n" +
      "masqLinkLocal: true\nresyncInterval: 30s\n",
  );
  assert.deepEqual(config.nonMasqueradeCidrs.map((cidr) => cidr.at), [
    { file: path, line: 3, column: 5 },
    { file: path, line: 4, column: 5 },
  ]);
  assert.deepEqual(config.masqLinkLocal?.at, { file: path, line: 5, column: 16 });
  assert.deepEqual(config.resyncInterval?.at, { file: path, line: 6, column: 17 });
});

Deno.test("an empty file is accepted as a present file with no keys", () => {
  for (const text of ["", "\n", "# only a comment\n", "null\n", "~\n", "{}\n", "---\n"]) {
    const config = accepted(text);
    assert.deepEqual(cidrTexts(config), [], JSON.stringify(text));
    assert.equal(config.masqLinkLocal, undefined, JSON.stringify(text));
    assert.equal(config.masqLinkLocalIPv6, undefined, JSON.stringify(text));
    assert.equal(config.cidrLimit, defaultCidrLimit, JSON.stringify(text));
    assert.equal(config.resyncInterval, undefined, JSON.stringify(text));
  }
});

Deno.test("a null or empty nonMasqueradeCIDRs list is as good as an absent key", () => {
  for (
    const text of [
      "nonMasqueradeCIDRs:\n",
      "nonMasqueradeCIDRs: []\n",
      '{"nonMasqueradeCIDRs": null}',
    ]
  ) {
    assert.deepEqual(cidrTexts(accepted(text)), [], JSON.stringify(text));
  }
});

Deno.test("a CIDR is stored in the canonical form iptables-save prints", () => {
  const config = accepted("nonMasqueradeCIDRs:\n  - FC00:0::/7\n  - 2001:DB8::/32\n", {
    enableIpv6: true,
  });
  assert.deepEqual(cidrTexts(config), ["fc00::/7", "2001:db8::/32"]);
});

Deno.test("a CIDR listed twice in one file is kept for the merge to deduplicate", () => {
  const config = accepted("nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - 10.0.0.0/8\n");
  assert.deepEqual(cidrTexts(config), ["10.0.0.0/8", "10.0.0.0/8"]);
});

Deno.test("YAML anchors and aliases resolve to the values they name", () => {
  const config = accepted("masqLinkLocal: &on true\nmasqLinkLocalIPv6: *on\n");
  assert.equal(config.masqLinkLocal?.value, true);
  assert.equal(config.masqLinkLocalIPv6?.value, true);
});

Deno.test("Windows line endings are read like Unix ones", () => {
  const config = accepted("nonMasqueradeCIDRs:\r\n  - 10.0.0.0/8\r\nmasqLinkLocal: true\r\n");
  assert.deepEqual(cidrTexts(config), ["10.0.0.0/8"]);
  assert.deepEqual(config.masqLinkLocal?.at, { file: path, line: 3, column: 16 });
});

// ---------------------------------------------------------------------------
// Keys

Deno.test("keys match case-insensitively as Go's JSON decoding does", () => {
  const cases: [string, (config: FileConfig) => unknown, unknown][] = [
    ["nonmasqueradecidrs:\n  - 10.0.0.0/8\n", cidrTexts, ["10.0.0.0/8"]],
    ["NONMASQUERADECIDRS:\n  - 10.0.0.0/8\n", cidrTexts, ["10.0.0.0/8"]],
    ['{"NonMasqueradeCidrs": ["10.0.0.0/8"]}', cidrTexts, ["10.0.0.0/8"]],
    ["masqlinklocal: true\n", (config) => config.masqLinkLocal?.value, true],
    ["MasqLinkLocalIpv6: true\n", (config) => config.masqLinkLocalIPv6?.value, true],
    ["CIDRLIMIT: 7\n", (config) => config.cidrLimit, 7],
    ["resyncinterval: 10s\n", (config) => config.resyncInterval?.value, 10_000],
  ];
  for (const [text, read, want] of cases) {
    assert.deepEqual(read(accepted(text)), want, JSON.stringify(text));
  }
});

Deno.test("an unknown key is an error naming the key, with the closest known key as a suggestion", () => {
  const cases: [string, string][] = [
    ["nonMasqueradeCIDR", "nonMasqueradeCIDRs"],
    ["nonMasqueradeCidr", "nonMasqueradeCIDRs"],
    ["nonMasqueradeCIRDs", "nonMasqueradeCIDRs"],
    ["masqLinkLocalIP6", "masqLinkLocalIPv6"],
    ["masqLinkLokal", "masqLinkLocal"],
    ["cidrLimits", "cidrLimit"],
    ["resyncIntervall", "resyncInterval"],
  ];
  for (const [key, suggestion] of cases) {
    const problem = onlyProblem(`masqLinkLocal: false\n${key}: []\n`);
    assert.equal(problem.key, key);
    assert.deepEqual(problem.at, { file: path, line: 2, column: 1 });
    assertIncludes(problem.message, "unknown key", `${key}: `);
    assertIncludes(problem.message, `did you mean "${suggestion}"?`, `${key}: `);
  }
});

Deno.test("an unknown key far from every known key gets no suggestion but the list of known keys", () => {
  const problem = onlyProblem("foo: bar\n");
  assert.equal(problem.key, "foo");
  assert.equal(problem.at.line, 1);
  assert.ok(!problem.message.includes("did you mean"), problem.message);
  assertIncludes(
    problem.message,
    "known keys: nonMasqueradeCIDRs, masqLinkLocal, masqLinkLocalIPv6, cidrLimit, resyncInterval, " +
      "masqueradeCIDRs, nonMasqueradeSrcCIDRs",
  );
});

Deno.test("an unknown key rejects the file even when the rest is valid", () => {
  // The typo that drops every CIDR would otherwise masquerade the whole cluster.
  const problems = rejected("nonMasqueradeCIDR:\n  - 10.0.0.0/8\nmasqLinkLocal: true\n");
  assert.deepEqual(problems.map((problem) => problem.key), ["nonMasqueradeCIDR"]);
});

Deno.test("a key given twice is an error at the second occurrence naming the first line", () => {
  const cases: [string, string, number][] = [
    ["nonMasqueradeCIDRs: []\nnonMasqueradeCIDRs: []\n", "nonMasqueradeCIDRs", 2],
    ["masqLinkLocal: true\ncidrLimit: 3\nmasqLinkLocal: false\n", "masqLinkLocal", 3],
    ['{\n  "cidrLimit": 3,\n  "cidrLimit": 4\n}\n', "cidrLimit", 3],
  ];
  for (const [text, key, line] of cases) {
    const problem = onlyProblem(text);
    assert.equal(problem.key, key, JSON.stringify(text));
    assert.equal(problem.at.file, path);
    assert.equal(problem.at.line, line, JSON.stringify(text));
    assertIncludes(problem.message, "key appears twice (also at line");
  }
});

Deno.test("keys that differ only in case are the same key, so both together are a duplicate", () => {
  const cases: [string, string, number][] = [
    ["nonMasqueradeCIDRs: []\nnonmasqueradecidrs: []\n", "nonMasqueradeCIDRs", 2],
    ['{"masqLinkLocal": true,\n "MASQLINKLOCAL": false}', "masqLinkLocal", 2],
    ["resyncinterval: 10s\nResyncInterval: 20s\n", "resyncInterval", 2],
  ];
  for (const [text, key, line] of cases) {
    const problem = onlyProblem(text);
    assert.equal(problem.key, key, JSON.stringify(text));
    assert.equal(problem.at.line, line, JSON.stringify(text));
    assertIncludes(problem.message, "(also at line 1); keys match case-insensitively");
  }
});

// ---------------------------------------------------------------------------
// Values

const knownKeyNames = [
  "nonMasqueradeCIDRs",
  "masqLinkLocal",
  "masqLinkLocalIPv6",
  "cidrLimit",
  "resyncInterval",
];

Deno.test("a value of the wrong type is an error for every key", () => {
  const cases: [string, string, string][] = [
    ["nonMasqueradeCIDRs: 10.0.0.0/8\n", "nonMasqueradeCIDRs", 'got the string "10.0.0.0/8"'],
    ["nonMasqueradeCIDRs: {a: b}\n", "nonMasqueradeCIDRs", "got a mapping"],
    ["nonMasqueradeCIDRs: true\n", "nonMasqueradeCIDRs", "got boolean true"],
    ["nonMasqueradeCIDRs:\n  - 10\n", "nonMasqueradeCIDRs[0]", "got number 10"],
    ["nonMasqueradeCIDRs:\n  - [10.0.0.0/8]\n", "nonMasqueradeCIDRs[0]", "got a list"],
    ['{"nonMasqueradeCIDRs": [{"cidr": "10.0.0.0/8"}]}', "nonMasqueradeCIDRs[0]", "got a mapping"],
    ["masqLinkLocal: 1\n", "masqLinkLocal", "got number 1"],
    ["masqLinkLocal: [true]\n", "masqLinkLocal", "got a list"],
    ["masqLinkLocal: maybe\n", "masqLinkLocal", 'got the string "maybe"'],
    ["masqLinkLocalIPv6: 0\n", "masqLinkLocalIPv6", "got number 0"],
    ["masqLinkLocalIPv6: {}\n", "masqLinkLocalIPv6", "got a mapping"],
    ['cidrLimit: "64"\n', "cidrLimit", 'got the string "64"'],
    ["cidrLimit: 1.5\n", "cidrLimit", "got number 1.5"],
    ["cidrLimit: true\n", "cidrLimit", "got boolean true"],
    ["cidrLimit: [1]\n", "cidrLimit", "got a list"],
    ["resyncInterval: 60\n", "resyncInterval", "got number 60"],
    ["resyncInterval: true\n", "resyncInterval", "got boolean true"],
    ["resyncInterval: [60s]\n", "resyncInterval", "got a list"],
  ];
  for (const [text, key, got] of cases) {
    const problem = onlyProblem(text);
    assert.equal(problem.key, key, JSON.stringify(text));
    assert.equal(problem.at.file, path, JSON.stringify(text));
    assert.equal(typeof problem.at.line, "number", JSON.stringify(text));
    assertIncludes(problem.message, got, `${JSON.stringify(text)}: `);
  }
});

Deno.test("a null value leaves its key unset, as Go's JSON decoding does", () => {
  for (const key of knownKeyNames) {
    for (const value of ["", " null", " ~"]) {
      const text = `${key}:${value}\n`;
      const result = parseConfigFile(path, new TextEncoder().encode(text), { enableIpv6: false });
      assert.ok(result.ok, JSON.stringify(text));
      assert.deepEqual(result.value.nonMasqueradeCidrs, [], JSON.stringify(text));
      assert.equal(result.value.masqLinkLocal, undefined, JSON.stringify(text));
      assert.equal(result.value.masqLinkLocalIPv6, undefined, JSON.stringify(text));
      assert.equal(result.value.cidrLimit, 64, JSON.stringify(text));
      assert.equal(result.value.resyncInterval, undefined, JSON.stringify(text));
    }
  }
});

Deno.test("cidrLimit must be at least 1", () => {
  for (const value of ["0", "-1"]) {
    const problem = onlyProblem(`cidrLimit: ${value}\n`);
    assert.equal(problem.key, "cidrLimit");
    assertIncludes(problem.message, `must be between 1 and`);
  }
});

Deno.test("YAML 1.1 booleans are read as Kubernetes reads them", () => {
  const cases: [string, boolean][] = [
    ["true", true],
    ["True", true],
    ["TRUE", true],
    ["yes", true],
    ["Yes", true],
    ["on", true],
    ["ON", true],
    ["y", true],
    ["false", false],
    ["no", false],
    ["No", false],
    ["off", false],
    ["OFF", false],
    ["n", false],
  ];
  for (const [text, want] of cases) {
    const config = accepted(`masqLinkLocal: ${text}\nmasqLinkLocalIPv6: ${text}\n`);
    assert.equal(config.masqLinkLocal?.value, want, text);
    assert.equal(config.masqLinkLocalIPv6?.value, want, text);
  }
});

Deno.test("a quoted true is a string, not a boolean, and is rejected", () => {
  const cases = [
    'masqLinkLocal: "true"\n',
    "masqLinkLocal: 'true'\n",
    "masqLinkLocal: !!str true\n",
    '{"masqLinkLocal": "true"}',
    'masqLinkLocalIPv6: "yes"\n',
  ];
  for (const text of cases) {
    const problem = onlyProblem(text);
    assert.match(problem.key ?? "", /^masqLinkLocal(IPv6)?$/);
    assertIncludes(problem.message, "must be true or false, got the string");
  }
});

Deno.test("resyncInterval accepts Go durations from 1s to 24h", () => {
  const cases: [string, number][] = [
    ["60s", 60_000],
    ["1m30s", 90_000],
    ["1s", 1_000],
    ["1.5h", 5_400_000],
    ["24h", 86_400_000],
    ["1000ms", 1_000],
    ['"2m"', 120_000],
  ];
  for (const [text, milliseconds] of cases) {
    assert.equal(accepted(`resyncInterval: ${text}\n`).resyncInterval?.value, milliseconds, text);
  }
});

Deno.test("resyncInterval rejects zero, negative, unparsable, sub-second and over-a-day values", () => {
  const cases: [string, string][] = [
    ["0s", "must be between 1s and 24h"],
    ['"0"', "must be between 1s and 24h"],
    ["-1s", "must be between 1s and 24h"],
    ["abc", 'invalid duration "abc"'],
    ["60", "must be a Go duration string"],
    ['"60"', 'invalid duration "60"'],
    ["10x", 'unknown unit "x"'],
    ["500ms", "must be between 1s and 24h"],
    ["999ms", "must be between 1s and 24h"],
    ["25h", "must be between 1s and 24h"],
    ["24h1s", "must be between 1s and 24h"],
  ];
  for (const [text, reason] of cases) {
    const problem = onlyProblem(`masqLinkLocal: true\nresyncInterval: ${text}\n`);
    assert.equal(problem.key, "resyncInterval", text);
    assert.deepEqual(problem.at, { file: path, line: 2, column: 17 }, text);
    assertIncludes(problem.message, reason, `${text}: `);
  }
});

// ---------------------------------------------------------------------------
// CIDRs

Deno.test("empty and null list items are rejected, each at its own line", () => {
  const cases: [string, [key: string, line: number][]][] = [
    ["nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  -\n", [["nonMasqueradeCIDRs[1]", 3]]],
    ["nonMasqueradeCIDRs:\n  - ''\n", [["nonMasqueradeCIDRs[0]", 2]]],
    ['nonMasqueradeCIDRs:\n  - ""\n  - 10.0.0.0/8\n', [["nonMasqueradeCIDRs[0]", 2]]],
    ["nonMasqueradeCIDRs:\n  - null\n  - ~\n", [
      ["nonMasqueradeCIDRs[0]", 2],
      ["nonMasqueradeCIDRs[1]", 3],
    ]],
    ['{\n  "nonMasqueradeCIDRs": [\n    "10.0.0.0/8",\n    null,\n    ""\n  ]\n}\n', [
      ["nonMasqueradeCIDRs[1]", 4],
      ["nonMasqueradeCIDRs[2]", 5],
    ]],
  ];
  for (const [text, want] of cases) {
    const problems = rejected(text);
    assert.deepEqual(
      problems.map((problem) => [problem.key, problem.at.line]),
      want,
      JSON.stringify(text),
    );
    for (const problem of problems) {
      assert.equal(problem.at.file, path);
      if (problem.key?.startsWith("nonMasqueradeCIDRs[")) {
        assertIncludes(problem.message, "empty list item");
      }
    }
  }
});

Deno.test("misaligned and out-of-range CIDRs are rejected with the reason", () => {
  const cases: [string, string][] = [
    ["10.0.0.1/8", "not aligned: the network is 10.0.0.0/8"],
    ["192.168.1.1/16", "not aligned: the network is 192.168.0.0/16"],
    ["10.256.0.0/16", "greater than 255"],
    ["300.0.0.0/8", "greater than 255"],
    ["10.0.0.0/33", "too large for IPv4"],
    ["10.0.0.0/-1", 'prefix length "-1" must be decimal digits'],
    ["10.0.0.0", 'missing "/"'],
    ["abcdefg", 'missing "/"'],
    ["010.0.0.0/8", "leading zero"],
    ["10.0.0/8", "has 3 parts, want 4"],
    ["10.0.0.0/8 -j ACCEPT", "whitespace"],
  ];
  for (const [cidr, reason] of cases) {
    const problem = onlyProblem(`nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - "${cidr}"\n`);
    assert.equal(problem.key, "nonMasqueradeCIDRs[1]", cidr);
    assert.deepEqual(problem.at, { file: path, line: 3, column: 5 }, cidr);
    assertIncludes(problem.message, `invalid CIDR ${JSON.stringify(cidr)}`, `${cidr}: `);
    assertIncludes(problem.message, reason, `${cidr}: `);
  }
});

Deno.test("an IPv6 CIDR without --enable-ipv6 is an error telling the operator to add the flag", () => {
  const problem = onlyProblem("nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - fc00::/7\n");
  assert.equal(problem.key, "nonMasqueradeCIDRs[1]");
  assert.deepEqual(problem.at, { file: path, line: 3, column: 5 });
  assertIncludes(problem.message, "fc00::/7 is an IPv6 CIDR");
  assertIncludes(problem.message, "add the --enable-ipv6 flag");
});

Deno.test("IPv6 CIDRs are accepted next to IPv4 ones with --enable-ipv6", () => {
  const config = accepted('{"nonMasqueradeCIDRs": ["172.16.0.0/12", "10.0.0.0/8", "fc00::/7"]}', {
    enableIpv6: true,
  });
  assert.deepEqual(cidrTexts(config), ["172.16.0.0/12", "10.0.0.0/8", "fc00::/7"]);
  assert.deepEqual(config.nonMasqueradeCidrs.map((cidr) => cidr.value.family), [
    "ipv4",
    "ipv4",
    "ipv6",
  ]);
});

Deno.test("a misaligned IPv6 CIDR is rejected even with --enable-ipv6", () => {
  const problem = onlyProblem("nonMasqueradeCIDRs:\n  - fd00::1/8\n", { enableIpv6: true });
  assert.equal(problem.key, "nonMasqueradeCIDRs[0]");
  assertIncludes(problem.message, "not aligned");
});

Deno.test("the default cidrLimit allows 64 CIDRs in a file and rejects the 65th", () => {
  assert.equal(accepted(`nonMasqueradeCIDRs:\n${cidrLines(64)}`).nonMasqueradeCidrs.length, 64);
  const problem = onlyProblem(`masqLinkLocal: true\nnonMasqueradeCIDRs:\n${cidrLines(65)}`);
  assert.equal(problem.key, "nonMasqueradeCIDRs");
  assert.deepEqual(problem.at, { file: path, line: 2, column: 1 });
  assertIncludes(problem.message, "has 65 CIDRs but the default cidrLimit is 64");
  assertIncludes(problem.message, "raise it with a cidrLimit key");
});

Deno.test("a raised cidrLimit allows more CIDRs, and a lowered one is enforced with its line", () => {
  const raised = accepted(`cidrLimit: 100\nnonMasqueradeCIDRs:\n${cidrLines(100)}`);
  assert.equal(raised.nonMasqueradeCidrs.length, 100);
  assert.equal(raised.cidrLimit, 100);

  const overRaised = onlyProblem(`cidrLimit: 100\nnonMasqueradeCIDRs:\n${cidrLines(101)}`);
  assertIncludes(overRaised.message, "has 101 CIDRs but cidrLimit is 100 (line 1)");

  const lowered = onlyProblem(`nonMasqueradeCIDRs:\n${cidrLines(3)}cidrLimit: 2\n`);
  assert.equal(lowered.key, "nonMasqueradeCIDRs");
  assert.deepEqual(lowered.at, { file: path, line: 1, column: 1 });
  assertIncludes(lowered.message, "has 3 CIDRs but cidrLimit is 2 (line 5)");
});

Deno.test("cidrLimit applies to each file on its own, not to the merged list", () => {
  const loaded = loadConfig(
    files({
      "ip-masq-a": `nonMasqueradeCIDRs:\n${cidrLines(60)}`,
      "ip-masq-b": `nonMasqueradeCIDRs:\n${cidrLines(60, 100)}`,
    }),
    defaultFlags,
  );
  assert.equal(loaded.effective.nonMasqueradeCidrs.length, 120);
});

// ---------------------------------------------------------------------------
// Whole-file problems

Deno.test("invalid YAML is rejected with the line of the error", () => {
  const cases: [string, number][] = [
    ["*", 1],
    ["nonMasqueradeCIDRs:\n\t- 10.0.0.0/8\n", 2],
    ["nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n bad: [\n", 3],
    ["masqLinkLocal: true\n---\nmasqLinkLocal: false\n", 2],
    ["nonMasqueradeCIDRs: [10.0.0.0/8\n", 2],
    ["nonMasqueradeCIDRs: [10.0.0.0/8, , 172.16.0.0/12]\n", 1],
  ];
  for (const [text, line] of cases) {
    const problems = rejected(text);
    assert.equal(problems[0].at.file, path, JSON.stringify(text));
    assert.equal(problems[0].at.line, line, JSON.stringify(text));
    for (const problem of problems) {
      assertIncludes(problem.message, "not valid YAML or JSON", `${JSON.stringify(text)}: `);
    }
  }
});

Deno.test("invalid JSON is rejected with the line of the error", () => {
  const cases: [string, number][] = [
    ["{*", 1],
    ['{\n  "nonMasqueradeCIDRs": ["10.0.0.0/8"]\n  "masqLinkLocal": true\n}\n', 3],
    ['{\n  "nonMasqueradeCIDRs": ["10.0.0.0/8",\n}\n', 3],
    ['{\n  "masqLinkLocal": true\n', 3],
  ];
  for (const [text, line] of cases) {
    const problems = rejected(text);
    assert.equal(problems[0].at.file, path, JSON.stringify(text));
    assert.equal(problems[0].at.line, line, JSON.stringify(text));
    assertIncludes(problems[0].message, "not valid YAML or JSON");
  }
});

Deno.test("a top-level list or scalar is rejected: the file must be a mapping", () => {
  for (const text of ["- 10.0.0.0/8\n", '["10.0.0.0/8"]', "10.0.0.0/8\n", "true\n"]) {
    const problem = onlyProblem(text);
    assert.deepEqual(problem.at, { file: path, line: 1, column: 1 }, JSON.stringify(text));
    assertIncludes(problem.message, "the top level must be a mapping");
  }
});

Deno.test("a UTF-8 byte order mark is rejected with a plain instruction", () => {
  const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...encoder.encode("masqLinkLocal: true\n")]);
  const problems = rejectedBytes(bytes);
  assert.equal(problems.length, 1);
  assert.equal(problems[0].at.file, path);
  assertIncludes(problems[0].message, "byte order mark");
  assertIncludes(problems[0].message, "save it as plain UTF-8");
});

Deno.test("binary garbage is rejected before it reaches the YAML parser", () => {
  const cases: [Uint8Array, string, number | undefined][] = [
    [new Uint8Array([0x80, 0x81, 0xfe, 0xff]), "not valid UTF-8", undefined],
    [new Uint8Array([0x1f, 0x8b, 0x08, 0x00, 0xc3, 0x28]), "not valid UTF-8", undefined],
    [encoder.encode("\u0000\u0001\u0002\u0003"), "binary control characters", 1],
    [encoder.encode("masqLinkLocal: true\nnonMasqueradeCIDRs:\u0007\n"), "binary control", 2],
    [encoder.encode("masqLinkLocal: true\n\u007f"), "binary control characters", 2],
  ];
  for (const [bytes, reason, line] of cases) {
    const problems = rejectedBytes(bytes);
    assert.equal(problems.length, 1, reason);
    assert.equal(problems[0].at.file, path, reason);
    assert.equal(problems[0].at.line, line, reason);
    assertIncludes(problems[0].message, reason);
  }
});

Deno.test("a file larger than a ConfigMap can be is rejected", () => {
  const bytes = encoder.encode(`# ${"x".repeat(1024 * 1024)}\n`);
  const problems = rejectedBytes(bytes);
  assert.equal(problems.length, 1);
  assertIncludes(problems[0].message, "larger than 1048576 bytes");
});

Deno.test("hundreds of YAML aliases are rejected as an expansion bomb", () => {
  const text = `a: &a [x]\nb: [${Array.from({ length: 101 }, () => "*a").join(", ")}]\n`;
  const problem = onlyProblem(text);
  assertIncludes(problem.message, "too many YAML aliases (101");
});

Deno.test("every problem under a key carries the file, the line and the key", () => {
  const texts = [
    "nonMasqueradeCIDR: []\n",
    "nonMasqueradeCIDRs: []\nNonMasqueradeCIDRs: []\n",
    "nonMasqueradeCIDRs: 10.0.0.0/8\n",
    "nonMasqueradeCIDRs:\n  -\n",
    "nonMasqueradeCIDRs:\n  - null\n",
    "nonMasqueradeCIDRs:\n  - 10.0.0.1/8\n",
    "nonMasqueradeCIDRs:\n  - fc00::/7\n",
    `cidrLimit: 1\nnonMasqueradeCIDRs:\n${cidrLines(2)}`,
    `nonMasqueradeCIDRs:\n${cidrLines(65)}`,
    "masqLinkLocal: 'true'\n",
    "masqLinkLocalIPv6: 1\n",
    "cidrLimit: 0\n",
    "resyncInterval: 0s\n",
    "resyncInterval: abc\n",
  ];
  for (const text of texts) {
    for (const problem of rejected(text, { file: "/etc/config/ip-masq-cloud" })) {
      const shown = `${JSON.stringify(text.slice(0, 60))}: ${formatProblem(problem)}`;
      assert.equal(problem.at.file, "/etc/config/ip-masq-cloud", shown);
      assert.equal(typeof problem.at.line, "number", shown);
      assert.ok(problem.at.line! >= 1, shown);
      assert.equal(typeof problem.key, "string", shown);
      assert.ok(problem.key!.length > 0, shown);
    }
  }
});

Deno.test("all problems of one file are reported together, in file order", () => {
  const problems = rejected(
    "nonMasqueradeCIDRs:\n  - 10.0.0.1/8\n  -\nmasqLinkLocal: 'yes'\nfoo: 1\nresyncInterval: 0s\n",
  );
  assert.deepEqual(problems.map((problem) => [problem.key, problem.at.line]), [
    ["nonMasqueradeCIDRs[0]", 2],
    ["nonMasqueradeCIDRs[1]", 3],
    ["masqLinkLocal", 4],
    ["foo", 5],
    ["resyncInterval", 6],
  ]);
});

Deno.test("a problem is formatted as file:line:column: key: message", () => {
  const problem = onlyProblem("masqLinkLocal: true\nnonMasqueradeCIDRs:\n  - 10.0.0.1/8\n");
  assert.equal(
    formatProblem(problem),
    '/etc/config/ip-masq-agent:3:5: nonMasqueradeCIDRs[0]: invalid CIDR "10.0.0.1/8": ' +
      '"10.0.0.1/8" is not aligned: the network is 10.0.0.0/8',
  );
});

Deno.test("hostile values are quoted so that newlines and quotes stay visible", () => {
  const problem = onlyProblem('masqLinkLocal: "a\\nb\\"c"\n');
  assertIncludes(problem.message, 'got the string "a\\nb\\"c"');
  assert.ok(!problem.message.includes("\n"), problem.message);
});

// ---------------------------------------------------------------------------
// loadConfig: the directory as a whole

Deno.test("loading a directory reports the problems of every file at once and rejects it", () => {
  const contents = files({
    "ip-masq-agent": "nonMasqueradeCIDRs:\n  - 10.0.0.1/8\n",
    "ip-masq-cloud": "masqLinkLocal: true\nnonMasqueradeCIDR: []\n",
    "ip-masq-extra": "nonMasqueradeCIDRs:\n  - 172.16.0.0/12\n",
  });
  assert.throws(() => loadConfig(contents, defaultFlags), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(
      error.problems.map((problem) => [problem.at.file, problem.at.line, problem.key]),
      [
        ["/etc/config/ip-masq-agent", 2, "nonMasqueradeCIDRs[0]"],
        ["/etc/config/ip-masq-cloud", 2, "nonMasqueradeCIDR"],
      ],
    );
    assertIncludes(error.message, "invalid configuration (2 problems):");
    assertIncludes(error.message, "/etc/config/ip-masq-agent:2:5: nonMasqueradeCIDRs[0]:");
    assertIncludes(error.message, "/etc/config/ip-masq-cloud:2:1: nonMasqueradeCIDR:");
    return true;
  });
});

Deno.test("a single problem makes a one-line configuration error", () => {
  assert.throws(
    () => loadConfig(files({ "ip-masq-agent": "cidrLimit: 0\n" }), defaultFlags),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(
        error.message,
        "invalid configuration: /etc/config/ip-masq-agent:1:12: cidrLimit: " +
          "must be between 1 and 100000, got 0",
      );
      return true;
    },
  );
});

Deno.test("loading passes --enable-ipv6 on to the validation of every file", () => {
  const contents = files({ "ip-masq-agent": "nonMasqueradeCIDRs:\n  - fd00::/8\n" });
  assert.throws(() => loadConfig(contents, defaultFlags), ConfigError);
  const loaded = loadConfig(contents, { ...defaultFlags, enableIpv6: true });
  assert.deepEqual(loaded.effective.nonMasqueradeCidrs.map((cidr) => cidr.value.text), [
    "fd00::/8",
  ]);
});

Deno.test("a missing config directory means the RFC 1918 defaults, and says so", () => {
  const loaded = loadConfig({ kind: "missing" }, defaultFlags);
  assert.equal(loaded.directoryMissing, true);
  assert.deepEqual(loaded.effective.files, []);
  assert.deepEqual(
    loaded.effective.nonMasqueradeCidrs.map((cidr) => cidr.value.text),
    [...rfc1918Ranges],
  );
  assert.deepEqual(loaded.findings, []);
});

Deno.test("a directory without config files means the defaults, all reserved ranges with the flag", () => {
  const loaded = loadConfig({ kind: "files", files: [] }, {
    ...defaultFlags,
    nomasqAllReservedRanges: true,
  });
  assert.equal(loaded.directoryMissing, false);
  assert.deepEqual(loaded.effective.nonMasqueradeCidrs.map((cidr) => cidr.value.text), [
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
});

Deno.test("an empty file keeps the defaults; nonMasqueradeCIDRs: [] replaces them", () => {
  const loaded = loadConfig(files({ "ip-masq-agent": "" }), defaultFlags);
  assert.deepEqual(loaded.effective.files, ["/etc/config/ip-masq-agent"]);
  assert.deepEqual(loaded.effective.nonMasqueradeCidrs.map((cidr) => cidr.value.text), [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
  ]);
  assert.deepEqual(loaded.findings, []);
  const named = loadConfig(files({ "ip-masq-agent": "nonMasqueradeCIDRs: []\n" }), defaultFlags);
  assert.deepEqual(named.effective.nonMasqueradeCidrs, []);
  assert.deepEqual(named.findings.map((finding) => finding.kind), ["masquerade-everything"]);
});

Deno.test("several files are merged in the order given: union of CIDRs, booleans ORed", () => {
  const loaded = loadConfig(
    files({
      "ip-masq-agent": "nonMasqueradeCIDRs:\n  - 10.244.0.0/16\n  - 192.168.0.0/16\n" +
        "masqLinkLocal: false\n",
      "ip-masq-cloud": '{"nonMasqueradeCIDRs": ["192.168.0.0/16", "172.16.0.0/12"],\n' +
        ' "masqLinkLocal": true}\n',
    }),
    defaultFlags,
  );
  const { effective } = loaded;
  assert.deepEqual(effective.files, ["/etc/config/ip-masq-agent", "/etc/config/ip-masq-cloud"]);
  assert.deepEqual(effective.nonMasqueradeCidrs.map((cidr) => cidr.value.text), [
    "10.244.0.0/16",
    "192.168.0.0/16",
    "172.16.0.0/12",
  ]);
  assert.deepEqual(effective.nonMasqueradeCidrs[1].at, {
    file: "/etc/config/ip-masq-agent",
    line: 3,
    column: 5,
  });
  assert.equal(effective.masqLinkLocal.value, true);
  assert.equal(effective.masqLinkLocal.at.file, "/etc/config/ip-masq-cloud");
  const conflict = loaded.findings.find((finding) => finding.kind === "conflicting-boolean");
  assert.ok(conflict, JSON.stringify(loaded.findings));
  assertIncludes(conflict.message, "/etc/config/ip-masq-agent:4:16");
  assertIncludes(conflict.message, "/etc/config/ip-masq-cloud:2:19");
});

Deno.test("a file holding several YAML documents is rejected at the separator", () => {
  const problem = onlyProblem("masqLinkLocal: true\n---\nmasqLinkLocal: false\n");
  assert.equal(problem.at.line, 2);
  assertIncludes(problem.message, "multiple documents");
});

Deno.test("issue 15: masqLinkLocalIPv6: true without --enable-ipv6 is a finding", () => {
  const text = "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqLinkLocalIPv6: true\n";
  const loaded = loadConfig(files({ "ip-masq-agent": text }), defaultFlags);
  assert.deepEqual(loaded.findings.map((finding) => finding.kind), ["ipv6-not-enabled"]);
  assert.match(
    loaded.findings[0].message,
    /^masqLinkLocalIPv6 is true at \/etc\/config\/ip-masq-agent:2:20 but IPv6 is not enabled/,
  );
  const enabled = loadConfig(files({ "ip-masq-agent": text }), {
    ...defaultFlags,
    enableIpv6: true,
  });
  assert.deepEqual(enabled.findings, []);
  const off = loadConfig(files({ "ip-masq-agent": "masqLinkLocalIPv6: false\n" }), defaultFlags);
  assert.deepEqual(off.findings, []);
});
