/**
 * The fast path for ConfigMap-shaped YAML (lib/config/fast_parse.ts) against
 * the full YAML parse: for generated configs (in the subset, near it and well
 * outside it) and for every config text of the hostile-input table
 * (tests/root/hostile_input_test.ts), `parseConfigText` (fast path when the
 * text is in the subset) and `parseConfigTextFully` must give identical
 * results: values, positions, findings after merging, and every error with
 * its file, line, column and key.
 *
 * Seeded and reproducible: PROPERTY_SEED replays a failure (the message names
 * the seed, the case and its text).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  maxConfigFileBytes,
  parseConfigFile,
  parseConfigText,
  parseConfigTextFully,
  type ParseOptions,
} from "../../lib/config/parse.ts";
import { parseFastYaml } from "../../lib/config/fast_parse.ts";
import { mergeConfigs } from "../../lib/config/merge.ts";
import { propertySeed, Random } from "../support/random.ts";

const seed = propertySeed(0x18f00d);
const file = "/etc/config/ip-masq-agent";

/** Both parses of `text`, which must agree; returns whether the fast path took it. */
function assertSameResult(text: string, options: ParseOptions, what: string): boolean {
  const fast = parseConfigText(file, text, options);
  const full = parseConfigTextFully(file, text, options);
  assert.deepEqual(fast, full, `${what}: the two parses differ for ${JSON.stringify(text)}`);
  if (fast.ok && full.ok) {
    // Findings name positions too.
    const merge = { nomasqAllReservedRanges: false };
    assert.deepEqual(mergeConfigs([fast.value], merge), mergeConfigs([full.value], merge), what);
  }
  return parseFastYaml(text) !== undefined;
}

// ---------------------------------------------------------------------------
// Generated configs
// ---------------------------------------------------------------------------

const keys = [
  "nonMasqueradeCIDRs",
  "masqueradeCIDRs",
  "nonMasqueradeSrcCIDRs",
  "masqLinkLocal",
  "masqLinkLocalIPv6",
  "cidrLimit",
  "resyncInterval",
  "nonmasqueradecidrs",
  "MASQLINKLOCAL",
  "nonMasqueradeCIDR",
  "masqLinkLocalIPv4",
  "unknownKey",
  "non-masquerade-cidrs",
  "yes",
  "on",
  "null",
  "e5",
  "10",
  "<<",
  "a.b",
  '"nonMasqueradeCIDRs"',
  "'masqLinkLocal'",
  '""',
];

/** Scalars: CIDRs (good, bad, IPv6), YAML 1.1 booleans, nulls and numbers, durations, oddities. */
const scalars = [
  "10.0.0.0/8",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "100.64.0.0/10",
  "10.1.2.0/24",
  "0.0.0.0/0",
  "fd00::/8",
  "fe80::/10",
  "::/0",
  "2001:db8::/32",
  "::ffff:10.0.0.0/104",
  "10.0.0.1/8",
  "010.0.0.0/8",
  "256.0.0.0/8",
  "10.0.0.0/33",
  "10.0.0.0",
  "10",
  "0",
  "00",
  "010",
  "0x1F",
  "0b101",
  "1_000",
  "1.5",
  "1e3",
  "e5",
  "E5",
  ".inf",
  "-.inf",
  ".nan",
  "+1",
  "-1",
  "1:20",
  "1:20.5",
  "2001-12-14",
  "2001-12-14t21:59:43.10-05:00",
  "60s",
  "1h30m",
  "500ms",
  "0s",
  "25h",
  "99999999999999999999",
  "123456789012345",
  "1234567890123456",
  "true",
  "True",
  "TRUE",
  "TrUe",
  "false",
  "yes",
  "Yes",
  "YES",
  "yEs",
  "no",
  "No",
  "on",
  "On",
  "off",
  "OFF",
  "y",
  "Y",
  "n",
  "N",
  "null",
  "Null",
  "NULL",
  "nUll",
  "~",
  "soon",
  "x",
  "a:b",
  "a:",
  "fe80::%eth0/10",
  "10.0.0.0/8#c",
  "10.0.0.0/8 #c",
  "'10.0.0.0/8'",
  '"10.0.0.0/8"',
  '"true"',
  "'yes'",
  '"10"',
  '""',
  "''",
  '"a\\"b"',
  "'it''s'",
  '"60s"',
  "&a 10.0.0.0/8",
  "*a",
  "!!str 10",
  "{a: b}",
  "[10.0.0.0/8]",
  "- x",
  "@x",
  "`x",
  "%x",
  "|",
  ">",
  "?",
  "10.0.0.0/8 192.168.0.0/16",
  "é",
];

/** What real ConfigMaps hold: most generated values come from here, so most configs stay fast. */
const common = [
  "10.0.0.0/8",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "fd00::/8",
  "10.0.0.1/8",
  "true",
  "false",
  "60s",
  "100",
  '"10.1.0.0/16"',
];

function scalar(random: Random): string {
  return random.bool(0.7) ? pick(random, common) : pick(random, scalars);
}

const comments = ["", "", "", " # a comment", "  #c", "#no-space", " #"];
const blankLines = ["", "\n", "# a comment line\n", "  # indented comment\n", "   \n"];

function pick<T>(random: Random, items: readonly T[]): T {
  return random.pick(items);
}

function flowList(random: Random): string {
  const count = random.int(0, 4);
  const items = Array.from({ length: count }, () => scalar(random));
  const spacing = pick(random, [", ", ",", " , "]);
  const inner = items.join(spacing) + (random.bool(0.15) ? "," : "");
  return random.bool(0.2) ? `[ ${inner} ]` : `[${inner}]`;
}

function blockList(random: Random): string {
  const indent = " ".repeat(pick(random, [0, 2, 2, 2, 4]));
  const count = random.int(0, 6);
  let text = "";
  for (let i = 0; i < count; i++) {
    if (random.bool(0.1)) text += pick(random, blankLines);
    // Now and then an item at another indentation (an error, or a nested node).
    const at = random.bool(0.05) ? " ".repeat(random.int(0, 5)) : indent;
    const item = random.bool(0.08) ? "" : ` ${scalar(random)}`;
    text += `${at}-${item}${pick(random, comments)}\n`;
  }
  return text;
}

function generatedConfig(random: Random): string {
  let text = random.bool(0.1) ? "---\n" : "";
  const pairs = random.int(0, 5);
  for (let i = 0; i < pairs; i++) {
    text += pick(random, blankLines);
    const key = pick(random, keys.slice(0, random.bool(0.8) ? 7 : keys.length));
    const colonSpacing = random.bool(0.05) ? " :" : ":";
    const shape = random.int(0, 9);
    if (shape < 4) {
      text += `${key}${colonSpacing}${pick(random, comments)}\n${blockList(random)}`;
    } else if (shape < 6) {
      text += `${key}${colonSpacing} ${flowList(random)}${pick(random, comments)}\n`;
    } else if (shape < 9) {
      text += `${key}${colonSpacing} ${scalar(random)}${pick(random, comments)}\n`;
    } else {
      text += `${key}${colonSpacing}${random.bool() ? "" : "   "}\n`;
    }
  }
  if (random.bool(0.05)) text += pick(random, ["---\n", "...\n", "  extra: 1\n", "more\n"]);
  if (random.bool(0.05)) text = text.replace("\n", "\r\n");
  if (random.bool(0.05)) text = text.replace("  ", "\t");
  if (random.bool(0.1)) text = text.replace(/\n$/, "");
  return text;
}

Deno.test("fast path and full parse agree on generated configs", () => {
  const random = new Random(seed);
  let fast = 0;
  const total = 3000;
  for (let n = 0; n < total; n++) {
    const text = generatedConfig(random);
    const options = { enableIpv6: random.bool() };
    if (assertSameResult(text, options, `seed ${seed}, case ${n}`)) fast++;
  }
  // The generator must exercise both paths.
  assert.ok(fast > total / 4, `only ${fast} of ${total} generated configs took the fast path`);
  assert.ok(fast < total, "no generated config left the subset");
});

Deno.test("fast path and full parse agree on configs of 10,000 CIDRs with errors", () => {
  const random = new Random(seed ^ 0x5a5a);
  for (let n = 0; n < 5; n++) {
    const items = Array.from({ length: 10_000 }, (_, i) => {
      if (random.bool(0.001)) return pick(random, scalars);
      return `10.${i >> 8}.${i & 255}.0/24`;
    });
    const limit = random.bool(0.8) ? `cidrLimit: ${random.pick([9_999, 10_000, 100_000])}\n` : "";
    const text = `${limit}masqLinkLocal: false\nnonMasqueradeCIDRs:\n` +
      items.map((item) => `  - ${item}\n`).join("");
    assertSameResult(text, { enableIpv6: false }, `seed ${seed}, large case ${n}`);
  }
});

// ---------------------------------------------------------------------------
// The hostile-input table
// ---------------------------------------------------------------------------

Deno.test("fast path and full parse agree on every config text of the hostile-input table", async () => {
  // The table lives in a root test module; importing it must not register its tests here.
  const register = Deno.test;
  Object.defineProperty(Deno, "test", { value: () => {}, configurable: true, writable: true });
  let table: typeof import("../root/hostile_input_test.ts").cases;
  try {
    ({ cases: table } = await import("../root/hostile_input_test.ts"));
  } finally {
    Object.defineProperty(Deno, "test", { value: register, configurable: true, writable: true });
  }
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let texts = 0;
  for (const hostile of table) {
    for (const [name, entry] of Object.entries(hostile.entries ?? {})) {
      if (typeof entry !== "string" && !(entry instanceof Uint8Array)) continue;
      const bytes = typeof entry === "string" ? new TextEncoder().encode(entry) : entry;
      const what = `hostile case "${hostile.name}", entry ${name}`;
      // Through the bytes too: the size cap and decoding come first on both paths.
      const viaFile = parseConfigFile(file, bytes, { enableIpv6: true });
      if (bytes.length > maxConfigFileBytes) {
        assert.ok(!viaFile.ok, what);
        continue;
      }
      let text: string;
      try {
        text = decoder.decode(bytes);
      } catch {
        assert.ok(!viaFile.ok, what);
        continue;
      }
      for (const enableIpv6 of [false, true]) assertSameResult(text, { enableIpv6 }, what);
      texts++;
    }
  }
  assert.ok(texts >= 40, `only ${texts} config texts in the hostile-input table`);
});

// ---------------------------------------------------------------------------
// What the fast path takes, and what it leaves to the full parse
// ---------------------------------------------------------------------------

Deno.test("the fast path takes the shapes ConfigMaps use", () => {
  const inSubset = [
    "",
    "# only a comment\n",
    "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - 192.168.0.0/16\nmasqLinkLocal: false\n",
    "---\nnonMasqueradeCIDRs: [10.0.0.0/8, 'fd00::/8'] # flow\nresyncInterval: 60s\n",
    "nonMasqueradeCIDRs:\n- 10.0.0.0/8\n# between\n- 172.16.0.0/12\ncidrLimit: 100\n",
    'masqLinkLocal: yes\nmasqLinkLocalIPv6: "true"\nmasqueradeCIDRs: []\n',
  ];
  for (const text of inSubset) {
    assert.ok(parseFastYaml(text) !== undefined, JSON.stringify(text));
    assertSameResult(text, { enableIpv6: true }, "in the subset");
  }
  const outside = [
    "nonMasqueradeCIDRs: &a [10.0.0.0/8]\n",
    "nonMasqueradeCIDRs:\n\t- 10.0.0.0/8\n",
    "nonMasqueradeCIDRs:\r\n  - 10.0.0.0/8\r\n",
    '{"nonMasqueradeCIDRs": ["10.0.0.0/8"]}',
    "cidrLimit: 0x10\n",
    "resyncInterval: 1:20\n",
    "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n    - 10.1.0.0/16\n",
    "masqLinkLocal:\n  true\n",
    "a: 1\n---\nb: 2\n",
    'resyncInterval: "6\\x30s"\n',
  ];
  for (const text of outside) {
    assert.equal(parseFastYaml(text), undefined, JSON.stringify(text));
    assertSameResult(text, { enableIpv6: true }, "outside the subset");
  }
});
