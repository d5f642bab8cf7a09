/**
 * Property test of longest-prefix rendering (issue 12): random valid configs
 * with nonMasqueradeCIDRs, masqueradeCIDRs and nonMasqueradeSrcCIDRs nested
 * at every depth go through loadConfig and desiredChains; for probe packets
 * at and around every listed range, three answers must agree:
 *
 * - a model of the specification written here (longest prefix of the lists,
 *   the source list first, link-local unless masqLinkLocal),
 * - the decision function (lib/policy/decision.ts), which explain and the
 *   nftables dataplane use,
 * - the rendered iptables rules run through a packet tracer
 *   (tests/support/packet_tracer.ts), for each protocol and both outcomes of
 *   the `--to-ports` statistic matches.
 *
 * Issue 17: random `--postrouting-jump=insert` (with the kube-proxy mark bit),
 * `outputAddress` / `outputAddressIPv6` and `outputInterface`, probed with
 * marked and unmarked packets leaving by several interfaces. In insert mode
 * every exemption must end in ACCEPT (final against a later foreign
 * MASQUERADE) and a marked packet in RETURN (left to kube-proxy); a SNAT
 * rewrites to exactly the family's outputAddress.
 *
 * Also: the rendered chain is removable by --cleanup (every rule carries one
 * of our comments), and planning from an empty table writes exactly it.
 *
 * Seeded and reproducible: PROPERTY_SEED replays a failure.
 *
 * @module
 */

import assert from "node:assert/strict";
import { parseIpAddress } from "../../lib/net/address.ts";
import { ConfigError, formatProblem } from "../../lib/base/problems.ts";
import { decide } from "../../lib/policy/decision.ts";
import { desiredChains, loadConfig } from "../../lib/policy/desired.ts";
import { type AgentFlags, parseFlags } from "../../lib/settings/flags.ts";
import { chainRuleLines, renderFromEmpty } from "../../lib/iptables/render.ts";
import { parseNatTable, planCleanup, planReconcile } from "../../lib/iptables/plan.ts";
import { traceChain, traceOutcome } from "../support/packet_tracer.ts";
import { propertySeed, Random } from "../support/random.ts";

const seed = propertySeed(0x12a5c0de);

type Family = "ipv4" | "ipv6";

interface ModelCidr {
  readonly family: Family;
  readonly address: bigint;
  readonly prefix: number;
  readonly text: string;
}

const bitsOf = (family: Family) => (family === "ipv4" ? 32 : 128);

function v4(address: bigint): string {
  const n = Number(address);
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** Full form, eight groups: valid for Go's parser, canonicalised by ours. */
function v6(address: bigint): string {
  return Array.from(
    { length: 8 },
    (_, i) => ((address >> BigInt((7 - i) * 16)) & 0xffffn).toString(16),
  )
    .join(":");
}

function network(address: bigint, prefix: number, bits: number): bigint {
  const hostBits = BigInt(bits - prefix);
  return (address >> hostBits) << hostBits;
}

/**
 * CIDRs crowded into one small region (10.0.0.0/8, 169.254.0.0/16, fd00::/16 and fe80::/10), so
 * that the three lists nest inside each other at every depth.
 */
function randomCidr(random: Random, family: Family): ModelCidr {
  const bits = bitsOf(family);
  const [base, basePrefix] = family === "ipv4"
    ? random.pick([[0x0a000000n, 8], [0xa9fe0000n, 16]] as const)
    : random.pick([[0xfd00n << 112n, 16], [0xfe80n << 112n, 10]] as const);
  const prefix = random.int(basePrefix, Math.min(bits, basePrefix + random.pick([4, 8, 16, 24])));
  // Few distinct bits below the base, so prefixes collide and nest often.
  let address = base;
  for (let bit = bits - basePrefix - 1; bit >= bits - prefix; bit--) {
    if (random.bool(0.25)) address |= 1n << BigInt(bit);
  }
  address = network(address, prefix, bits);
  return {
    family,
    address,
    prefix,
    text: `${family === "ipv4" ? v4(address) : v6(address)}/${prefix}`,
  };
}

interface Generated {
  readonly flags: AgentFlags;
  readonly argv: string[];
  readonly files: { name: string; text: string }[];
  readonly nonMasquerade: ModelCidr[];
  readonly masquerade: ModelCidr[];
  readonly sources: ModelCidr[];
  readonly masqLinkLocal: boolean;
  readonly masqLinkLocalIPv6: boolean;
  /** Issue 17: the keys of the first file, when set. */
  readonly outputAddress: Partial<Record<Family, string>>;
  readonly outputInterface?: string;
}

function list(key: string, cidrs: readonly ModelCidr[]): string {
  return cidrs.length === 0 ? "" : `${key}:\n${cidrs.map((cidr) => `  - ${cidr.text}\n`).join("")}`;
}

function generate(random: Random): Generated {
  const argv = [`--enable-ipv6=${random.bool(0.4)}`];
  if (random.bool(0.4)) {
    argv.push(random.pick(["--to-ports=1024-65535", "--to-ports=2000-2999,5000"]));
  }
  if (random.bool(0.3)) argv.push("--random-fully=false");
  if (random.bool(0.4)) {
    argv.push("--postrouting-jump=insert");
    if (random.bool(0.3)) argv.push("--kube-proxy-masquerade-bit=0");
  }
  const parsed = parseFlags(argv);
  if (!parsed.ok) throw new Error(parsed.error);
  const flags = parsed.value.flags;
  const family = () => (flags.enableIpv6 && random.bool(0.4) ? "ipv6" : "ipv4") as Family;
  const files: { name: string; text: string }[] = [];
  const all = {
    nonMasquerade: [] as ModelCidr[],
    masquerade: [] as ModelCidr[],
    sources: [] as ModelCidr[],
  };
  let masqLinkLocal = false;
  let masqLinkLocalIPv6 = false;
  const outputAddress: Partial<Record<Family, string>> = {};
  if (random.bool(0.4)) outputAddress.ipv4 = random.pick(["192.0.2.5", "10.0.0.1"]);
  if (flags.enableIpv6 && random.bool(0.4)) outputAddress.ipv6 = "2001:db8::5";
  const outputInterface = random.bool(0.4) ? random.pick(["eth0", "eth+"]) : undefined;
  const fileCount = random.int(1, 3);
  for (let f = 0; f < fileCount; f++) {
    const nonMasquerade = Array.from(
      { length: random.int(0, 6) },
      () => randomCidr(random, family()),
    );
    // The same CIDR in both lists is a config error (tested separately): leave those out.
    const taken = new Set([...all.nonMasquerade, ...nonMasquerade].map((cidr) => cidr.text));
    const masquerade = Array.from({ length: random.int(0, 5) }, () => randomCidr(random, family()))
      .filter((cidr) => !taken.has(cidr.text));
    for (const cidr of masquerade) taken.add(cidr.text);
    const nonMasqueradeNow = new Set(nonMasquerade.map((cidr) => cidr.text));
    for (const cidr of all.masquerade) {
      if (nonMasqueradeNow.has(cidr.text)) nonMasquerade.splice(nonMasquerade.indexOf(cidr), 1);
    }
    const cleanNonMasquerade = nonMasquerade.filter((cidr) =>
      !all.masquerade.some((other) => other.text === cidr.text)
    );
    const sources = random.bool(0.5)
      ? Array.from({ length: random.int(1, 3) }, () => randomCidr(random, family()))
      : [];
    const linkLocal = random.bool(0.3) ? random.bool() : undefined;
    const linkLocal6 = random.bool(0.3) ? random.bool() : undefined;
    masqLinkLocal ||= linkLocal === true;
    masqLinkLocalIPv6 ||= linkLocal6 === true;
    const text = list("nonMasqueradeCIDRs", cleanNonMasquerade) +
      list("masqueradeCIDRs", masquerade) +
      list("nonMasqueradeSrcCIDRs", sources) +
      (linkLocal === undefined ? "" : `masqLinkLocal: ${linkLocal}\n`) +
      (linkLocal6 === undefined ? "" : `masqLinkLocalIPv6: ${linkLocal6}\n`) + "cidrLimit: 100\n" +
      (f > 0 ? "" : [
        outputAddress.ipv4 ? `outputAddress: ${outputAddress.ipv4}\n` : "",
        outputAddress.ipv6 ? `outputAddressIPv6: "${outputAddress.ipv6}"\n` : "",
        outputInterface ? `outputInterface: ${outputInterface}\n` : "",
      ].join(""));
    files.push({ name: `/etc/config/ip-masq-${f}`, text });
    all.nonMasquerade.push(...cleanNonMasquerade);
    all.masquerade.push(...masquerade);
    all.sources.push(...sources);
  }
  // No file names nonMasqueradeCIDRs (list() leaves an empty one out): the defaults stand (v1).
  if (all.nonMasquerade.length === 0) {
    all.nonMasquerade.push(
      { family: "ipv4", address: 0x0a000000n, prefix: 8, text: "10.0.0.0/8" },
      { family: "ipv4", address: 0xac100000n, prefix: 12, text: "172.16.0.0/12" },
      { family: "ipv4", address: 0xc0a80000n, prefix: 16, text: "192.168.0.0/16" },
    );
  }
  return {
    flags,
    argv,
    files,
    ...all,
    masqLinkLocal,
    masqLinkLocalIPv6,
    outputAddress,
    ...(outputInterface ? { outputInterface } : {}),
  };
}

function contains(cidr: ModelCidr, family: Family, address: bigint): boolean {
  return cidr.family === family &&
    network(address, cidr.prefix, bitsOf(family)) === cidr.address;
}

/** The specification, independently: source first, then the longest prefix, exceptions win ties. */
function modelVerdict(
  generated: Generated,
  family: Family,
  destination: bigint,
  source: bigint,
): "masquerade" | "keep source" {
  if (generated.sources.some((cidr) => contains(cidr, family, source))) return "keep source";
  const linkLocal: ModelCidr = family === "ipv4"
    ? { family, address: 0xa9fe0000n, prefix: 16, text: "169.254.0.0/16" }
    : { family, address: 0xfe80n << 112n, prefix: 10, text: "fe80::/10" };
  const masqueradesLinkLocal = family === "ipv4"
    ? generated.masqLinkLocal
    : generated.masqLinkLocalIPv6;
  const exempt = [...(masqueradesLinkLocal ? [] : [linkLocal]), ...generated.nonMasquerade]
    .filter((cidr) => contains(cidr, family, destination));
  if (exempt.length === 0) return "masquerade";
  const longestExempt = Math.max(...exempt.map((cidr) => cidr.prefix));
  const longestException = Math.max(
    -1,
    ...generated.masquerade.filter((cidr) => contains(cidr, family, destination)).map((cidr) =>
      cidr.prefix
    ),
  );
  return longestException >= longestExempt ? "masquerade" : "keep source";
}

function probes(generated: Generated, family: Family, random: Random): bigint[] {
  const bits = bitsOf(family);
  const max = (1n << BigInt(bits)) - 1n;
  const out = new Set<bigint>();
  for (const cidr of [...generated.nonMasquerade, ...generated.masquerade]) {
    if (cidr.family !== family) continue;
    const last = cidr.address | ((1n << BigInt(bits - cidr.prefix)) - 1n);
    for (const address of [cidr.address, last, cidr.address - 1n, last + 1n]) {
      if (address >= 0n && address <= max) out.add(address);
    }
    const hostBits = bits - cidr.prefix;
    if (hostBits > 0) {
      const offset = BigInt(random.int(0, 2 ** Math.min(hostBits, 30) - 1));
      out.add(cidr.address | offset);
    }
  }
  out.add(family === "ipv4" ? 0xa9fe0101n : (0xfe80n << 112n) | 1n);
  out.add(family === "ipv4" ? 0x08080808n : 0x20010db8n << 96n);
  return [...out];
}

function addressOf(family: Family, value: bigint) {
  const parsed = parseIpAddress(family === "ipv4" ? v4(value) : v6(value));
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
}

const caseCount = 250;

Deno.test(`rendered rules, the decision function and the model agree (seed ${seed}, ${caseCount} configs)`, () => {
  const random = new Random(seed);
  const corners = {
    exceptionDecides: 0,
    nestedThreeDeep: 0,
    sourceDecides: 0,
    ipv6: 0,
    toPorts: 0,
    insertExemptionFinal: 0,
    kubeProxyMarked: 0,
    otherInterface: 0,
    snatToOutputAddress: 0,
  };
  for (let n = 0; n < caseCount; n++) {
    const generated = generate(random);
    const context = `seed ${seed} case ${n} (${generated.argv.join(" ")})\n` +
      generated.files.map((file) => `--- ${file.name}\n${file.text}`).join("");
    let loaded;
    try {
      loaded = loadConfig({
        kind: "files",
        files: generated.files.map((file) => ({
          path: file.name,
          bytes: new TextEncoder().encode(file.text),
        })),
      }, generated.flags);
    } catch (error) {
      const detail = error instanceof ConfigError
        ? error.problems.map(formatProblem).join("\n")
        : String(error);
      assert.fail(`a valid config was rejected: ${detail}\n${context}`);
    }
    const chains = desiredChains(loaded.effective, generated.flags, { ipv4: true, ipv6: true });
    for (const desired of chains) {
      const family = desired.family;
      const where = `${context}[${family}]`;
      const lines = chainRuleLines(desired);
      assert.equal(
        planReconcile(desired, parseNatTable("")).payload,
        renderFromEmpty(desired),
        where,
      );
      const cleanup = planCleanup(desired.chain, parseNatTable(renderFromEmpty(desired)));
      assert.match(
        cleanup.payload ?? "",
        new RegExp(`^-X ${desired.chain}$`, "m"),
        `${where}: cleanup`,
      );

      const sourcePool = [
        ...generated.sources.filter((cidr) => cidr.family === family).map((cidr) => cidr.address),
        family === "ipv4" ? 0x0af40102n : (0xfd00n << 112n) | 0x244n,
      ];
      const insert = generated.flags.postroutingJump === "insert";
      const mark = 2 ** generated.flags.kubeProxyMasqueradeBit;
      const wantedAddress = generated.outputAddress[family];
      for (const destination of probes(generated, family, random)) {
        const source = random.pick(sourcePool);
        const outputInterface = random.pick(["eth0", "eth1", "tun0"]);
        const marked = random.bool(0.25);
        const leavesBy = generated.outputInterface === undefined ||
          (generated.outputInterface.endsWith("+")
            ? outputInterface.startsWith(generated.outputInterface.slice(0, -1))
            : outputInterface === generated.outputInterface);
        const byConfig = modelVerdict(generated, family, destination, source);
        // Insert mode leaves what kube-proxy marked to kube-proxy, which masquerades it.
        const want = insert && marked
          ? "masquerade"
          : byConfig === "masquerade" && !leavesBy
          ? "keep source"
          : byConfig;
        const decision = decide(desired, {
          destination: addressOf(family, destination),
          source: addressOf(family, source),
          outputInterface,
          kubeProxyMarked: marked,
        });
        const probe = `${where}: ${family === "ipv4" ? v4(destination) : v6(destination)} from ` +
          `${family === "ipv4" ? v4(source) : v6(source)} by ${outputInterface}` +
          `${marked ? " marked" : ""}`;
        assert.equal(decision.verdict, want, `${probe}: decide() vs the model`);
        const byUs = decision.verdict === "masquerade" &&
          decision.because.kind !== "kube-proxy-mark";
        assert.equal(decision.snatTo?.value.text, byUs ? wantedAddress : undefined, probe);
        for (const protocol of ["tcp", "udp", "sctp", "icmp"] as const) {
          for (const statisticFires of [true, false]) {
            const packet = {
              destination,
              source,
              protocol,
              statisticFires,
              outputInterface,
              mark: marked ? mark : 0,
            };
            const outcome = traceOutcome(lines, packet);
            const context = `${probe} (${protocol}, statistic ${statisticFires})`;
            // What follows our chain: kube-proxy's masquerade of marked packets.
            const traced = outcome.target === "MASQUERADE" || outcome.target === "SNAT"
              ? "masquerade"
              : outcome.target !== "ACCEPT" && insert && marked
              ? "masquerade"
              : "keep source";
            assert.equal(
              traced,
              want,
              `${context}: the rendered rules vs the model\n${lines.join("\n")}`,
            );
            if (!insert) {
              assert.equal(traceChain(lines, packet), want, context);
              assert.notEqual(outcome.target, "ACCEPT", `${context}: append mode never ACCEPTs`);
            }
            if (insert && marked) assert.equal(outcome.target, "RETURN", `${context}: the mark`);
            const exempted = ["source-exemption", "link-local", "non-masquerade"].includes(
              decision.because.kind,
            );
            if (insert && exempted) {
              // ACCEPT ends nat POSTROUTING: a later foreign MASQUERADE cannot take it.
              assert.equal(outcome.target, "ACCEPT", `${context}: an exemption is final`);
              corners.insertExemptionFinal++;
            }
            if (outcome.target === "SNAT") assert.equal(outcome.toSource, wantedAddress, context);
            if (outcome.target === "MASQUERADE") assert.equal(wantedAddress, undefined, context);
            if (outcome.target === "SNAT") corners.snatToOutputAddress++;
          }
        }
        if (insert && marked) corners.kubeProxyMarked++;
        if (decision.because.kind === "other-interface") corners.otherInterface++;
        if (decision.because.kind === "masquerade-exception") corners.exceptionDecides++;
        if (decision.because.kind === "source-exemption") corners.sourceDecides++;
        const because = decision.because;
        if (
          because.kind === "non-masquerade" &&
          generated.masquerade.some((cidr) =>
            cidr.family === family && contains(cidr, family, destination) &&
            cidr.prefix < because.cidr.value.prefix
          )
        ) corners.nestedThreeDeep++;
      }
      if (family === "ipv6") corners.ipv6++;
      if (desired.masquerade.toPorts.length > 0) corners.toPorts++;
    }
  }
  for (const [corner, count] of Object.entries(corners)) {
    assert.ok(count >= 10, `only ${count} probes with ${corner} (seed ${seed})`);
  }
});
