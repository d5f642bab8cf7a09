/**
 * Property tests of the pure pipeline: many random VALID configs go
 * through loadConfig, desiredChains, renderFromEmpty and planReconcile against
 * an empty table, and the restore input must hold only our chain's lines and
 * one jump, every configured CIDR exactly once in canonical form, MASQUERADE
 * last. Random HOSTILE CIDR items must be rejected by parseConfigFile and never
 * reach rendering.
 *
 * Seeded and reproducible: set PROPERTY_SEED to replay a failure (every
 * assertion message names the seed and the case number).
 *
 * @module
 */

import assert from "node:assert/strict";
import { parseCidr } from "../../lib/net/cidr.ts";
import { parseConfigFile } from "../../lib/config/parse.ts";
import type { ConfigDirContents } from "../../lib/config/directory.ts";
import { ConfigError, formatProblem } from "../../lib/base/problems.ts";
import { type AgentFlags, parseFlags } from "../../lib/settings/flags.ts";
import { reservedRanges, rfc1918Ranges } from "../../lib/config/merge.ts";
import { desiredChains, loadConfig } from "../../lib/policy/desired.ts";
import { chainRuleLines, renderFromEmpty } from "../../lib/iptables/render.ts";
import { type DesiredChain } from "../../lib/policy/chain.ts";
import { renderNftFromEmpty } from "../../lib/nftables/render.ts";
import { iptablesDecision, nftDecision } from "../support/netfilter_eval.ts";
import { parseNatTable, planReconcile } from "../../lib/iptables/plan.ts";
import {
  upstreamJumpComment,
  upstreamMasqueradeComment,
  upstreamReturnComment,
} from "../support/upstream_rules.ts";
import { propertySeed, Random } from "../support/random.ts";

// ---------------------------------------------------------------------------
// The seeded PRNG (tests/support/random.ts) and this file's seed
// ---------------------------------------------------------------------------

const seed = propertySeed(0x1a2b3c4d);

// ---------------------------------------------------------------------------
// An independent model of canonical CIDR text (not lib/net/cidr.ts)
// ---------------------------------------------------------------------------

type Family = "ipv4" | "ipv6";

interface ModelCidr {
  readonly family: Family;
  readonly address: bigint;
  readonly prefix: number;
  /** Canonical: what iptables-save prints and the rules must contain. */
  readonly canonical: string;
  /** How the config file spells it (may be non-canonical but valid). */
  readonly spelling: string;
}

function v4Text(address: bigint): string {
  const n = Number(address);
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

function v6Groups(address: bigint): number[] {
  return Array.from({ length: 8 }, (_, i) => Number((address >> BigInt((7 - i) * 16)) & 0xffffn));
}

/** RFC 5952: lower case, no leading zeros, the longest run (>= 2) of zero groups as "::". */
function v6Canonical(address: bigint): string {
  const groups = v6Groups(address);
  let bestStart = -1;
  let bestLength = 0;
  for (let start = 0; start < 8;) {
    if (groups[start] !== 0) {
      start++;
      continue;
    }
    let end = start;
    while (end < 8 && groups[end] === 0) end++;
    if (end - start >= 2 && end - start > bestLength) {
      [bestStart, bestLength] = [start, end - start];
    }
    start = end;
  }
  const hex = (list: number[]) => list.map((group) => group.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/** Valid but unusual spellings Go's net.ParseCIDR accepts. */
function v6Spelling(random: Random, address: bigint): string {
  const groups = v6Groups(address);
  switch (random.int(0, 4)) {
    case 0:
      return groups.map((group) => group.toString(16).padStart(4, "0")).join(":");
    case 1:
      return v6Canonical(address).toUpperCase();
    case 2:
      return groups.map((group) => group.toString(16)).join(":");
    case 3: {
      // The last 32 bits in dotted form, unless that would read as IPv4-mapped.
      const head = groups.slice(0, 6).map((group) => group.toString(16)).join(":");
      return `${head}:${v4Text(address & 0xffffffffn)}`;
    }
    default:
      return v6Canonical(address);
  }
}

function mask(bits: number, prefix: number): bigint {
  const all = (1n << BigInt(bits)) - 1n;
  return all ^ ((1n << BigInt(bits - prefix)) - 1n);
}

function isMapped(address: bigint): boolean {
  return address >> 32n === 0xffffn;
}

const notableCidrs: readonly [Family, string][] = [
  ["ipv4", "0.0.0.0/0"],
  ["ipv4", "169.254.0.0/16"],
  ["ipv4", "10.0.0.0/8"],
  ["ipv4", "255.255.255.255/32"],
  ["ipv4", "0.0.0.0/32"],
  ["ipv6", "::/0"],
  ["ipv6", "fe80::/10"],
  ["ipv6", "::/128"],
  ["ipv6", "::1/128"],
  ["ipv6", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"],
  ["ipv6", "2001:db8::/32"],
];

function randomCidr(random: Random, family: Family): ModelCidr {
  if (random.bool(0.12)) {
    const [, text] = random.pick(notableCidrs.filter(([f]) => f === family));
    const [address, prefix] = text.split("/");
    const value = family === "ipv4"
      ? address.split(".").reduce((sum, octet) => (sum << 8n) | BigInt(octet), 0n)
      : modelParseV6(address);
    return model(family, value, Number(prefix), text);
  }
  const bits = family === "ipv4" ? 32 : 128;
  const prefix = random.bool(0.3)
    ? random.pick([0, bits, bits === 32 ? 24 : 64])
    : random.int(0, bits);
  for (;;) {
    const address = random.bits(bits) & mask(bits, prefix);
    if (family === "ipv6" && isMapped(address)) continue;
    const spelled = family === "ipv4" ? v4Text(address) : v6Spelling(random, address);
    // Go's dtoi accepts leading zeros in the prefix length; the rule must not show them.
    const prefixText = random.bool(0.1) ? `0${prefix}` : String(prefix);
    return model(family, address, prefix, `${spelled}/${prefixText}`);
  }
}

function model(family: Family, address: bigint, prefix: number, spelling: string): ModelCidr {
  const text = family === "ipv4" ? v4Text(address) : v6Canonical(address);
  return { family, address, prefix, canonical: `${text}/${prefix}`, spelling };
}

function modelParseV6(text: string): bigint {
  const [head, tail = ""] = text.split("::");
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === "" ? [] : tail.split(":");
  const groups = text.includes("::")
    ? [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill("0"), ...tailGroups]
    : headGroups;
  return groups.reduce((sum, group) => (sum << 16n) | BigInt(parseInt(group, 16)), 0n);
}

// ---------------------------------------------------------------------------
// Random valid configs and flags
// ---------------------------------------------------------------------------

interface GeneratedFile {
  readonly name: string;
  readonly text: string;
  readonly cidrs: readonly ModelCidr[];
  /** Whether the file names nonMasqueradeCIDRs (even as []): only then are the defaults gone. */
  readonly namesCidrs: boolean;
  readonly masqLinkLocal?: boolean;
  readonly masqLinkLocalIPv6?: boolean;
}

interface GeneratedCase {
  readonly argv: string[];
  readonly flags: AgentFlags;
  readonly files: readonly GeneratedFile[] | "missing";
  readonly randomFullySupported: Record<Family, boolean>;
}

const yamlBooleans: Record<"true" | "false", readonly string[]> = {
  true: ["true", "True", "TRUE", "yes", "on", "y"],
  false: ["false", "False", "FALSE", "no", "off", "n"],
};

const chainAlphabet =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:*!$%&()+,;<=>?@[]^`{|}~/";

function randomChain(random: Random): string {
  if (random.bool(0.2)) {
    return random.pick(["IP-MASQ-AGENT", "KUBE-IP-MASQ", "X", "COMMIT", "*nat"]);
  }
  const length = random.pick([1, 2, 28, random.int(1, 28)]);
  let name = "";
  for (let i = 0; i < length; i++) name += random.pick([...chainAlphabet]);
  // iptables reads a leading "-" as an option and a leading "!" as a negation.
  return /^[-!]/.test(name) ? `C${name.slice(1)}` : name;
}

function randomToPorts(random: Random): string {
  const count = random.pick([0, 0, 1, 2, 3, 4]);
  const points = new Set<number>();
  while (points.size < count * 2) points.add(random.int(1, 65535));
  const sorted = [...points].sort((a, b) => a - b);
  const ranges: string[] = [];
  for (let i = 0; i < sorted.length; i += 2) {
    const [first, last] = [sorted[i], sorted[i + 1]];
    ranges.push(random.bool(0.2) ? String(first) : `${first}-${last}`);
  }
  // Order on the command line is free; rendering keeps it.
  for (let i = ranges.length - 1; i > 0; i--) {
    const j = random.int(0, i);
    [ranges[i], ranges[j]] = [ranges[j], ranges[i]];
  }
  return ranges.join(",");
}

function randomFlags(random: Random): { argv: string[]; flags: AgentFlags } {
  for (;;) {
    const argv = [`--masq-chain=${randomChain(random)}`];
    if (random.bool()) argv.push(`--enable-ipv6=${random.bool()}`);
    if (random.bool()) argv.push(`--random-fully=${random.bool()}`);
    if (random.bool(0.7)) argv.push(`--to-ports=${randomToPorts(random)}`);
    if (random.bool(0.3)) argv.push("--nomasq-all-reserved-ranges");
    const parsed = parseFlags(argv);
    if (parsed.ok) return { argv, flags: parsed.value.flags };
    // The generator only breaks the built-in-name rule; anything else is a validator bug.
    assert.match(
      parsed.error,
      /must not be a built-in iptables chain or target name/,
      argv.join(" "),
    );
  }
}

function renderItem(random: Random, text: string, style: "block" | "flow" | "json"): string {
  if (style === "json") return JSON.stringify(text);
  return random.pick([text, `'${text}'`, `"${text}"`]);
}

function randomFile(
  random: Random,
  index: number,
  enableIpv6: boolean,
  pool: ModelCidr[],
): GeneratedFile {
  const style = random.pick(["block", "flow", "json"] as const);
  const cidrs: ModelCidr[] = [];
  const count = random.pick([0, 1, 2, 3, 5, 8, 12]);
  for (let i = 0; i < count; i++) {
    // Duplicates within and across files are legal and must collapse to one rule.
    if (pool.length > 0 && random.bool(0.15)) cidrs.push(random.pick(pool));
    else cidrs.push(randomCidr(random, enableIpv6 && random.bool(0.4) ? "ipv6" : "ipv4"));
  }
  pool.push(...cidrs);
  const entries: [string, string][] = [];
  const key = (name: string) => random.bool(0.15) ? name.toLowerCase() : name;
  const namesCidrs = cidrs.length > 0 || random.bool(0.5);
  if (namesCidrs) {
    const items = cidrs.map((cidr) => renderItem(random, cidr.spelling, style));
    const value = style === "block"
      ? (items.length === 0 ? " []" : `\n${items.map((item) => `  - ${item}`).join("\n")}`)
      : ` [${items.join(", ")}]`;
    entries.push([key("nonMasqueradeCIDRs"), value]);
  }
  const masqLinkLocal = random.bool(0.6) ? random.bool() : undefined;
  const masqLinkLocalIPv6 = random.bool(0.6) ? random.bool() : undefined;
  const boolText = (value: boolean) =>
    style === "json" ? String(value) : random.pick(yamlBooleans[String(value) as "true"]);
  if (masqLinkLocal !== undefined) {
    entries.push([key("masqLinkLocal"), ` ${boolText(masqLinkLocal)}`]);
  }
  if (masqLinkLocalIPv6 !== undefined) {
    entries.push([key("masqLinkLocalIPv6"), ` ${boolText(masqLinkLocalIPv6)}`]);
  }
  if (random.bool(0.3)) {
    entries.push([key("cidrLimit"), ` ${random.int(Math.max(cidrs.length, 1), 100)}`]);
  }
  if (random.bool(0.3)) {
    const duration = random.pick(["1s", "30s", "60s", "1m30s", "2h", "24h", "1.5m"]);
    entries.push([key("resyncInterval"), ` ${JSON.stringify(duration)}`]);
  }
  for (let i = entries.length - 1; i > 0; i--) {
    const j = random.int(0, i);
    [entries[i], entries[j]] = [entries[j], entries[i]];
  }
  let text: string;
  if (style === "json") {
    text = `{${entries.map(([name, value]) => `${JSON.stringify(name)}:${value}`).join(",\n ")}}`;
  } else if (entries.length === 0) {
    text = random.pick(["", "# nothing here\n", "{}\n", "null\n"]);
  } else {
    text = `# generated\n${entries.map(([name, value]) => `${name}:${value}`).join("\n")}\n`;
  }
  return {
    name: `/etc/config/ip-masq-${String(index).padStart(2, "0")}`,
    text,
    cidrs,
    namesCidrs,
    masqLinkLocal,
    masqLinkLocalIPv6,
  };
}

function randomCase(random: Random): GeneratedCase {
  const { argv, flags } = randomFlags(random);
  const fileCount = random.pick([0, 1, 1, 1, 2, 3]);
  const pool: ModelCidr[] = [];
  const files = fileCount === 0 && random.bool()
    ? "missing" as const
    : Array.from({ length: fileCount }, (_, i) => randomFile(random, i, flags.enableIpv6, pool));
  return {
    argv,
    flags,
    files,
    randomFullySupported: { ipv4: random.bool(0.8), ipv6: random.bool(0.8) },
  };
}

function contentsOf(files: GeneratedCase["files"]): ConfigDirContents {
  if (files === "missing") return { kind: "missing" };
  const encoder = new TextEncoder();
  return {
    kind: "files",
    files: files.map((file) => ({ path: file.name, bytes: encoder.encode(file.text) })),
  };
}

// ---------------------------------------------------------------------------
// iptables-restore's view of a line, and the shapes our lines may take
// ---------------------------------------------------------------------------

/** Splits like iptables-restore: whitespace separates, double quotes group, \" is a quote. */
function restoreTokens(line: string): string[] {
  const tokens: string[] = [];
  let current = "";
  let inToken = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "\\" && quoted && (line[i + 1] === '"' || line[i + 1] === "\\")) {
      current += line[++i];
      continue;
    }
    if (c === '"') {
      quoted = !quoted;
      inToken = true;
      continue;
    }
    if (!quoted && (c === " " || c === "\t")) {
      if (inToken) tokens.push(current);
      current = "";
      inToken = false;
      continue;
    }
    current += c;
    inToken = true;
  }
  assert.ok(!quoted, `unbalanced quotes in ${JSON.stringify(line)}`);
  if (inToken) tokens.push(current);
  return tokens;
}

const returnComment = upstreamReturnComment;
const masqueradeComment = upstreamMasqueradeComment;
const jumpCommentOf = upstreamJumpComment;

type ChainRule =
  | { kind: "return"; destination: string | undefined }
  | {
    kind: "to-ports";
    protocol: string;
    probability?: string;
    ports: string;
    randomFully: boolean;
  }
  | { kind: "masquerade"; randomFully: boolean };

function classify(tokens: readonly string[], chain: string, context: string): ChainRule {
  const rest = tokens.slice(2);
  assert.deepEqual(tokens.slice(0, 2), ["-A", chain], context);
  const comment = (text: string) => ["-m", "comment", "--comment", text];
  // -d is left out for /0: iptables-save prints no match on every destination.
  if (rest.at(-1) === "RETURN") {
    const withDestination = rest[0] === "-d";
    const expected = [
      ...(withDestination ? ["-d", rest[1]] : []),
      ...comment(returnComment),
      "-j",
      "RETURN",
    ];
    assert.deepEqual(rest, expected, context);
    return { kind: "return", destination: withDestination ? rest[1] : undefined };
  }
  const randomFully = rest.at(-1) === "--random-fully";
  const body = randomFully ? rest.slice(0, -1) : rest;
  if (body[0] === "-p") {
    const hasStatistic = body[6] === "-m";
    const probability = hasStatistic ? body[11] : undefined;
    const expected = [
      "-p",
      body[1],
      ...comment(masqueradeComment),
      ...(hasStatistic ? ["-m", "statistic", "--mode", "random", "--probability", body[11]] : []),
      "-j",
      "MASQUERADE",
      "--to-ports",
      body.at(-1) ?? "",
    ];
    assert.deepEqual(body, expected, context);
    assert.match(body[1], /^(tcp|udp|sctp)$/, context);
    if (probability !== undefined) assert.match(probability, /^0\.\d{11}$/, context);
    assert.match(body.at(-1) ?? "", /^[1-9]\d*(-[1-9]\d*)?$/, context);
    return { kind: "to-ports", protocol: body[1], probability, ports: body.at(-1)!, randomFully };
  }
  assert.deepEqual(body, [...comment(masqueradeComment), "-j", "MASQUERADE"], context);
  return { kind: "masquerade", randomFully };
}

/** The restore input's lines, checked for shape; returns the chain's rules in order. */
function checkRestoreInput(input: string, chain: string, context: string): ChainRule[] {
  assert.ok(input.endsWith("\n"), `${context}: no final newline`);
  // Printable ASCII and line ends only: no \r, NUL, NEL or Unicode line separators to split on.
  assert.match(input, /^[ -~\n]*$/, `${context}: a character outside printable ASCII`);
  const lines = input.slice(0, -1).split("\n");
  assert.equal(lines[0], "*nat", context);
  assert.equal(lines[1], `:${chain} - [0:0]`, context);
  assert.equal(lines.at(-1), "COMMIT", context);
  const body = lines.slice(2, -1);
  const jumps = body.filter((line) => line.startsWith("-A POSTROUTING "));
  assert.equal(jumps.length, 1, `${context}: exactly one jump`);
  assert.deepEqual(restoreTokens(jumps[0]), [
    ...["-A", "POSTROUTING", "-m", "comment", "--comment", jumpCommentOf(chain)],
    ...["-m", "addrtype", "!", "--dst-type", "LOCAL", "-j", chain],
  ], context);
  const rules: ChainRule[] = [];
  for (const line of body) {
    if (line === jumps[0]) continue;
    assert.ok(line.startsWith(`-A ${chain} `), `${context}: a line outside our chain: ${line}`);
    rules.push(classify(restoreTokens(line), chain, `${context}: ${line}`));
  }
  return rules;
}

// ---------------------------------------------------------------------------
// The expected desired state, from the model
// ---------------------------------------------------------------------------

const linkLocalOf: Record<Family, string> = { ipv4: "169.254.0.0/16", ipv6: "fe80::/10" };
const everything: Record<Family, string> = { ipv4: "0.0.0.0/0", ipv6: "::/0" };

function expectedExemptions(generated: GeneratedCase, family: Family): string[] {
  const files = generated.files === "missing" ? [] : generated.files;
  let configured: string[];
  // The defaults stand until some file names nonMasqueradeCIDRs (v1).
  if (!files.some((file) => file.namesCidrs)) {
    configured = family === "ipv6"
      ? []
      : [...(generated.flags.nomasqAllReservedRanges ? reservedRanges : rfc1918Ranges)];
  } else {
    configured = [
      ...new Set(
        files.flatMap((file) => file.cidrs).filter((cidr) => cidr.family === family)
          .map((cidr) => cidr.canonical),
      ),
    ];
  }
  const key = family === "ipv4" ? "masqLinkLocal" : "masqLinkLocalIPv6";
  const masqueradesLinkLocal = files.some((file) => file[key] === true);
  if (masqueradesLinkLocal) return configured;
  // The link-local exemption comes first and is not repeated when also configured.
  return [linkLocalOf[family], ...configured.filter((cidr) => cidr !== linkLocalOf[family])];
}

/** The --to-ports ranges as iptables prints them, from the command line the case was given. */
function expectedPortRanges(argv: readonly string[]): string[] {
  const flag = "--to-ports=";
  const toPorts = argv.findLast((arg) => arg.startsWith(flag))?.slice(flag.length) ?? "";
  if (toPorts === "") return [];
  return toPorts.split(",").map((range) => {
    const [first, last = first] = range.split("-");
    return first === last ? first : `${first}-${last}`;
  });
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

const validCaseCount = 400;

Deno.test(`random valid configs render only our chain and one jump (seed ${seed}, ${validCaseCount} cases)`, () => {
  const random = new Random(seed);
  const seen = { ipv6: 0, toPorts: 0, randomFully: 0, prefix0: 0, prefixMax: 0, multiFile: 0 };
  for (let n = 0; n < validCaseCount; n++) {
    const generated = randomCase(random);
    const context = `seed ${seed} case ${n} (${generated.argv.join(" ")})\n` +
      (generated.files === "missing"
        ? "(config directory missing)"
        : generated.files.map((file) => `--- ${file.name}\n${file.text}`).join("\n"));
    let loaded;
    try {
      loaded = loadConfig(contentsOf(generated.files), generated.flags);
    } catch (error) {
      const detail = error instanceof ConfigError
        ? error.problems.map(formatProblem).join("\n")
        : String(error);
      assert.fail(`a valid config was rejected: ${detail}\n${context}`);
    }
    const chains = desiredChains(loaded.effective, generated.flags, generated.randomFullySupported);
    const families = generated.flags.enableIpv6 ? ["ipv4", "ipv6"] : ["ipv4"];
    assert.deepEqual(chains.map((chain) => chain.family), families, context);
    for (const desired of chains) {
      const family = desired.family;
      const chainName = generated.flags.masqChain;
      const where = `${context}\n[${family}]`;
      const fromEmpty = renderFromEmpty(desired);
      const plan = planReconcile(desired, parseNatTable(""));
      assert.equal(plan.payload, fromEmpty, `${where}: planning from empty differs from rendering`);
      const rules = checkRestoreInput(fromEmpty, chainName, where);

      // Every exemption exactly once, canonical, in order, and all before any MASQUERADE.
      const returns = rules.filter((rule) => rule.kind === "return");
      const destinations = returns.map((rule) => rule.destination ?? everything[family]);
      assert.deepEqual(destinations, expectedExemptions(generated, family), `${where}: exemptions`);
      assert.ok(
        rules.slice(0, returns.length).every((rule) => rule.kind === "return"),
        `${where}: a RETURN after a MASQUERADE`,
      );
      for (const destination of destinations) {
        const parsed = parseCidr(destination);
        assert.ok(parsed.ok && parsed.value.text === destination, `${where}: ${destination}`);
        assert.equal(parsed.ok && parsed.value.family, family, `${where}: ${destination}`);
      }

      // MASQUERADE is last; --to-ports rules per protocol and range; --random-fully as asked.
      const last = rules.at(-1);
      assert.equal(last?.kind, "masquerade", `${where}: MASQUERADE is not last`);
      const masquerades = rules.slice(returns.length);
      const wantRandomFully = generated.flags.randomFully &&
        generated.randomFullySupported[family];
      for (const rule of masquerades) {
        assert.notEqual(rule.kind, "return", where);
        if (rule.kind !== "return") assert.equal(rule.randomFully, wantRandomFully, where);
      }
      const ranges = expectedPortRanges(generated.argv);
      const toPorts = masquerades.filter((rule) => rule.kind === "to-ports");
      assert.equal(toPorts.length, ranges.length * 3, `${where}: --to-ports rules`);
      for (const [index, protocol] of ["tcp", "udp", "sctp"].entries()) {
        const group = toPorts.slice(index * ranges.length, (index + 1) * ranges.length);
        assert.deepEqual(
          group.map((rule) => rule.kind === "to-ports" && rule.protocol),
          ranges.map(() => protocol),
          where,
        );
        assert.deepEqual(
          group.map((rule) => rule.kind === "to-ports" && rule.ports),
          ranges,
          where,
        );
        // Every range but the last is taken with a probability; the last takes the rest.
        assert.deepEqual(
          group.map((rule) => rule.kind === "to-ports" && rule.probability !== undefined),
          ranges.map((_, i) => i < ranges.length - 1),
          where,
        );
      }

      if (family === "ipv6") seen.ipv6++;
      if (ranges.length > 0) seen.toPorts++;
      if (wantRandomFully) seen.randomFully++;
      if (destinations.includes(everything[family])) seen.prefix0++;
      if (destinations.some((text) => text.endsWith(family === "ipv4" ? "/32" : "/128"))) {
        seen.prefixMax++;
      }
    }
    if (generated.files !== "missing" && generated.files.length > 1) seen.multiFile++;
  }
  // The generator must actually reach the interesting corners.
  for (const [corner, count] of Object.entries(seen)) {
    assert.ok(count >= 10, `only ${count} cases with ${corner} (seed ${seed})`);
  }
});

// ---------------------------------------------------------------------------
// Hostile CIDR items
// ---------------------------------------------------------------------------

/** Fragments with at least one character no valid CIDR can contain. */
const poison: readonly string[] = [
  " ",
  "\t",
  "\n",
  "\r",
  "\n-A POSTROUTING -j ACCEPT",
  "\nCOMMIT\n*filter\n-A INPUT -j DROP\nCOMMIT",
  " -j ACCEPT",
  "\u2028",
  "\u0085",
  "\u00a0",
  "\u200b",
  '"',
  "'",
  "\\",
  '\\" -j ACCEPT \\"',
  "#",
  " # comment",
  "%eth0",
  ",",
  ",0.0.0.0/0",
  "!",
  "-",
  "+",
  "*",
  ";",
  "$(id)",
  "`id`",
  "|",
  "&",
  "\u0000",
  "\u007f",
  "\u0661",
  "\uff10",
  "g",
  "x",
  "z",
  "_",
  "localhost",
];

/** Charset-valid strings that are invalid by construction. */
function structurallyInvalid(random: Random): string {
  const v4 = () => v4Text(random.bits(32));
  switch (random.int(0, 11)) {
    case 0: { // misaligned IPv4
      const prefix = random.int(0, 31);
      const hostBit = 1n << BigInt(random.int(0, 31 - prefix));
      return `${v4Text((random.bits(32) & mask(32, prefix)) | hostBit)}/${prefix}`;
    }
    case 1: { // misaligned IPv6
      const prefix = random.int(0, 127);
      const hostBit = 1n << BigInt(random.int(0, 127 - prefix));
      return `${v6Canonical((random.bits(128) & mask(128, prefix)) | hostBit)}/${prefix}`;
    }
    case 2: { // an octet above 255
      const octets = v4().split(".");
      octets[random.int(0, 3)] = String(random.int(256, 999));
      return `${octets.join(".")}/32`;
    }
    case 3: { // a leading zero in an octet
      const octets = v4().split(".");
      octets[random.int(0, 3)] = `0${random.int(0, 99)}`;
      return `${octets.join(".")}/32`;
    }
    case 4:
      return `${v4()}/${random.int(33, 9999)}`;
    case 5:
      return `${v6Canonical(random.bits(128))}/${random.int(129, 9999)}`;
    case 6: { // IPv4-mapped
      const prefix = random.int(96, 128);
      const address = (0xffffn << 32n) | (random.bits(32) & mask(32, prefix - 96));
      return `${
        random.bool() ? "::ffff:" + v4Text(address & 0xffffffffn) : v6Canonical(address)
      }/${prefix}`;
    }
    case 7: // too many or too few parts
      return random.bool()
        ? `${v4()}.${random.int(0, 255)}/32`
        : `${random.int(0, 255)}.${random.int(0, 255)}/16`;
    case 8: { // nine groups, or a five-digit group
      const groups = v6Groups(random.bits(128)).map((group) => group.toString(16));
      if (random.bool()) groups.push("1");
      else groups[random.int(0, 7)] = "1" + groups[0].padStart(4, "0");
      return `${groups.join(":")}/128`;
    }
    case 9:
      return `${random.int(1, 9)}::${random.int(1, 9)}::/64`;
    case 10: // no prefix, or an empty one
      return random.bool() ? v4() : `${v4()}/`;
    default:
      return random.pick(["", "/", "/8", "::", ":::/0", "1.2.3/8", "10.0.0.0//8", "10.0.0.0/8/8"]);
  }
}

function hostileItem(random: Random): string {
  if (random.bool(0.35)) return structurallyInvalid(random);
  let text = randomCidr(random, random.bool() ? "ipv4" : "ipv6").spelling;
  for (let i = random.int(1, 3); i > 0; i--) {
    const fragment = random.pick(poison);
    const at = random.int(0, text.length);
    text = text.slice(0, at) + fragment + text.slice(at);
  }
  return text;
}

const hostileCaseCount = 600;

Deno.test(`random hostile CIDR items are rejected and never rendered (seed ${seed}, ${hostileCaseCount} cases)`, () => {
  const random = new Random(seed ^ 0x5eed);
  const encoder = new TextEncoder();
  const file = "/etc/config/ip-masq-agent";
  const hostileFlags = parseFlagsOrThrow(["--enable-ipv6"]);
  for (let n = 0; n < hostileCaseCount; n++) {
    const hostile = hostileItem(random);
    const context = `seed ${seed} hostile case ${n}: ${JSON.stringify(hostile)}`;
    assert.equal(parseCidr(hostile).ok, false, `${context}: parseCidr accepted it`);

    // Among valid neighbours, as JSON (exact bytes) or YAML double-quoted (JSON escapes are valid).
    const neighbours = Array.from(
      { length: random.int(0, 4) },
      () => randomCidr(random, "ipv4").spelling,
    );
    const index = random.int(0, neighbours.length);
    const items = [...neighbours.slice(0, index), hostile, ...neighbours.slice(index)];
    const text = random.bool()
      ? `{"nonMasqueradeCIDRs": [${items.map((item) => JSON.stringify(item)).join(", ")}]}`
      : `nonMasqueradeCIDRs:\n${items.map((item) => `  - ${JSON.stringify(item)}`).join("\n")}\n`;
    const result = parseConfigFile(file, encoder.encode(text), { enableIpv6: true });
    assert.equal(result.ok, false, `${context}: parseConfigFile accepted\n${text}`);
    if (result.ok) continue;
    for (const problem of result.error) {
      assert.equal(problem.at.file, file, context);
      // Either the item itself is named, or the whole file was refused before parsing (a raw
      // control character) or by the YAML reader.
      assert.ok(
        problem.key === `nonMasqueradeCIDRs[${index}]` || problem.key === undefined,
        `${context}: ${formatProblem(problem)}`,
      );
    }

    // The whole pipeline: the config error stops it before anything is rendered.
    let rendered = 0;
    assert.throws(
      () => {
        const loaded = loadConfig(
          { kind: "files", files: [{ path: file, bytes: encoder.encode(text) }] },
          hostileFlags,
        );
        const supported = { ipv4: true, ipv6: true };
        rendered += desiredChains(loaded.effective, hostileFlags, supported).map(renderFromEmpty)
          .length;
      },
      ConfigError,
      context,
    );
    assert.equal(rendered, 0, context);
  }
});

Deno.test("IPv6 CIDRs are rejected without --enable-ipv6 (random)", () => {
  const random = new Random(seed ^ 0x6666);
  const encoder = new TextEncoder();
  for (let n = 0; n < 100; n++) {
    const cidr = randomCidr(random, "ipv6");
    const text = `nonMasqueradeCIDRs: [${JSON.stringify(cidr.spelling)}]\n`;
    const result = parseConfigFile("/etc/config/ip-masq-agent", encoder.encode(text), {
      enableIpv6: false,
    });
    assert.equal(result.ok, false, `seed ${seed} case ${n}: ${cidr.spelling}`);
    if (!result.ok) assert.match(result.error[0].message, /--enable-ipv6/);
  }
});

function parseFlagsOrThrow(argv: string[]): AgentFlags {
  const parsed = parseFlags(argv);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value.flags;
}

// ---------------------------------------------------------------------------
// Equivalence of the two dataplanes
// ---------------------------------------------------------------------------

/** Around every exemption's edges, link-local's, the ends of the family, and random ones. */
function probeAddresses(random: Random, desired: DesiredChain): bigint[] {
  const bits = desired.family === "ipv4" ? 32 : 128;
  const max = (1n << BigInt(bits)) - 1n;
  const probes = new Set<bigint>([0n, 1n, max, max - 1n]);
  const edges = [
    ...desired.exemptions.map((cidr) => cidr.value),
    parseBuiltInCidrForTest(desired.family === "ipv4" ? "169.254.0.0/16" : "fe80::/10"),
  ];
  for (const cidr of edges) {
    const size = 1n << BigInt(bits - cidr.prefix);
    for (
      const address of [
        cidr.address - 1n,
        cidr.address,
        cidr.address + size - 1n,
        cidr.address + size,
      ]
    ) {
      if (address >= 0n && address <= max) probes.add(address);
    }
  }
  for (let i = 0; i < 8; i++) probes.add(random.bits(bits));
  return [...probes];
}

function parseBuiltInCidrForTest(text: string) {
  const parsed = parseCidr(text);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
}

Deno.test(`the nftables and iptables dataplanes decide alike on every probe (seed ${seed}, ${validCaseCount} cases)`, () => {
  const random = new Random(seed ^ 0x5eed);
  let probes = 0;
  for (let n = 0; n < validCaseCount; n++) {
    const generated = randomCase(random);
    const loaded = loadConfig(contentsOf(generated.files), generated.flags);
    for (
      const desired of desiredChains(
        loaded.effective,
        generated.flags,
        generated.randomFullySupported,
      )
    ) {
      const iptables = chainRuleLines(desired);
      const nft = renderNftFromEmpty(desired);
      for (const destination of probeAddresses(random, desired)) {
        for (const protocol of ["tcp", "udp", "sctp", "icmp"] as const) {
          for (const local of [false, true]) {
            const packet = { family: desired.family, destination, protocol, local };
            assert.deepEqual(
              nftDecision(nft, packet),
              iptablesDecision(iptables, packet),
              `seed ${seed} case ${n} ${generated.argv.join(" ")} ${
                JSON.stringify({ ...packet, destination: destination.toString(16) })
              }\n${nft}`,
            );
            probes++;
          }
        }
      }
    }
  }
  assert.ok(probes > 10_000, `${probes} probes`);
});
