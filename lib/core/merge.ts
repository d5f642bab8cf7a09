/**
 * Merging the files of a config directory into the one effective config, the
 * way ip-masq-agent-v2 does: CIDRs are the union, booleans are ORed, and the
 * defaults apply only when no file is present. Also reports what an operator
 * should look at (findings) without rejecting anything.
 *
 * @module
 */

import { type Cidr, compareCidrs, contains, parseBuiltInCidr } from "./cidr.ts";
import type { FileConfig } from "./config.ts";
import { builtIn, formatLocation, type Located } from "./source.ts";

export interface EffectiveConfig {
  /** Files merged, in order; empty when the defaults apply. */
  readonly files: readonly string[];
  readonly nonMasqueradeCidrs: readonly Located<Cidr>[];
  readonly masqLinkLocal: Located<boolean>;
  readonly masqLinkLocalIPv6: Located<boolean>;
  /** From a `resyncInterval` key; undefined means "use --resync-interval". */
  readonly resyncInterval?: Located<number>;
}

export interface Finding {
  readonly kind:
    | "conflicting-boolean"
    | "conflicting-resync-interval"
    | "contained-cidr"
    | "masquerade-nothing"
    | "masquerade-everything";
  readonly message: string;
}

export interface MergeResult {
  readonly config: EffectiveConfig;
  readonly findings: readonly Finding[];
}

export const rfc1918Ranges = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"] as const;

export const reservedRanges = [
  ...rfc1918Ranges,
  "100.64.0.0/10",
  "192.0.0.0/24",
  "192.0.2.0/24",
  "192.88.99.0/24",
  "198.18.0.0/15",
  "198.51.100.0/24",
  "203.0.113.0/24",
  "240.0.0.0/4",
] as const;

export interface MergeOptions {
  /** `--nomasq-all-reserved-ranges`: the defaults cover every reserved IPv4 range. */
  readonly nomasqAllReservedRanges: boolean;
}

export function mergeConfigs(files: readonly FileConfig[], options: MergeOptions): MergeResult {
  if (files.length === 0) return { config: defaultConfig(options), findings: [] };
  const findings: Finding[] = [];
  const cidrs = unionOfCidrs(files);
  const config: EffectiveConfig = {
    files: files.map((file) => file.file),
    nonMasqueradeCidrs: cidrs,
    masqLinkLocal: orBooleans(files, "masqLinkLocal", findings),
    masqLinkLocalIPv6: orBooleans(files, "masqLinkLocalIPv6", findings),
    resyncInterval: shortestResync(files, findings),
  };
  findings.push(...cidrFindings(cidrs));
  return { config, findings };
}

function defaultConfig(options: MergeOptions): EffectiveConfig {
  const description = options.nomasqAllReservedRanges
    ? "default: --nomasq-all-reserved-ranges"
    : "default: RFC 1918";
  const ranges = options.nomasqAllReservedRanges ? reservedRanges : rfc1918Ranges;
  return {
    files: [],
    nonMasqueradeCidrs: ranges.map((text) => ({
      value: parseBuiltInCidr(text),
      at: builtIn(description),
    })),
    masqLinkLocal: { value: false, at: builtIn("default") },
    masqLinkLocalIPv6: { value: false, at: builtIn("default") },
  };
}

/** Sorted files, first occurrence wins: the rule order never depends on map iteration. */
function unionOfCidrs(files: readonly FileConfig[]): Located<Cidr>[] {
  const seen = new Set<string>();
  const union: Located<Cidr>[] = [];
  for (const file of files) {
    for (const cidr of file.nonMasqueradeCidrs) {
      if (seen.has(cidr.value.text)) continue;
      seen.add(cidr.value.text);
      union.push(cidr);
    }
  }
  return union;
}

function orBooleans(
  files: readonly FileConfig[],
  key: "masqLinkLocal" | "masqLinkLocalIPv6",
  findings: Finding[],
): Located<boolean> {
  const set = files.flatMap((file) => file[key] ? [file[key]] : []);
  const winner = set.find((entry) => entry.value) ?? set[0];
  const loser = set.find((entry) => entry.value !== winner?.value);
  if (winner && loser) {
    findings.push({
      kind: "conflicting-boolean",
      message: `${key} is ${winner.value} in ${formatLocation(winner.at)} and ${loser.value} in ` +
        `${formatLocation(loser.at)}; ${winner.value} wins (values from several files are ORed)`,
    });
  }
  return winner ?? { value: false, at: builtIn("default") };
}

/** The shortest interval wins: healing drift more often is the safe side of a disagreement. */
function shortestResync(files: readonly FileConfig[], findings: Finding[]) {
  const set = files.flatMap((file) => file.resyncInterval ? [file.resyncInterval] : []);
  if (set.length === 0) return undefined;
  const shortest = set.reduce((a, b) => (b.value < a.value ? b : a));
  const other = set.find((entry) => entry.value !== shortest.value);
  if (other) {
    findings.push({
      kind: "conflicting-resync-interval",
      message: `resyncInterval differs between ${formatLocation(shortest.at)} and ` +
        `${formatLocation(other.at)}; the shorter one (${shortest.value / 1000}s) wins`,
    });
  }
  return shortest;
}

function cidrFindings(cidrs: readonly Located<Cidr>[]): Finding[] {
  const findings: Finding[] = [];
  const containers = firstContainers(cidrs);
  for (const cidr of cidrs) {
    if (cidr.value.prefix === 0) {
      findings.push({
        kind: "masquerade-nothing",
        message: `${cidr.value.text} at ${formatLocation(cidr.at)} exempts every destination: ` +
          `no ${cidr.value.family} traffic will be masqueraded`,
      });
    }
    const outer = containers.get(cidr);
    if (outer) {
      findings.push({
        kind: "contained-cidr",
        message: `${cidr.value.text} at ${formatLocation(cidr.at)} is inside ` +
          `${outer.value.text} at ${formatLocation(outer.at)} and has no effect`,
      });
    }
  }
  if (cidrs.length === 0) {
    findings.push({
      kind: "masquerade-everything",
      message: "config files are present but list no nonMasqueradeCIDRs: all traffic leaving " +
        "the node to non-local destinations is masqueraded (the defaults apply only with no file)",
    });
  }
  return findings;
}

/**
 * For each CIDR inside another, the containing CIDR listed first. Comparing every pair took
 * minutes for the tens of thousands of CIDRs a raised cidrLimit allows; prefixes are either
 * nested or disjoint, so in sorted order the CIDRs containing one are exactly the nested
 * ranges still open on a stack.
 */
function firstContainers(cidrs: readonly Located<Cidr>[]): Map<Located<Cidr>, Located<Cidr>> {
  const order = new Map(cidrs.map((cidr, index) => [cidr, index]));
  const sorted = [...cidrs].sort((a, b) => compareCidrs(a.value, b.value));
  const open: Located<Cidr>[] = [];
  const containers = new Map<Located<Cidr>, Located<Cidr>>();
  for (const cidr of sorted) {
    while (open.length > 0 && !contains(open[open.length - 1].value, cidr.value)) open.pop();
    if (open.length > 0) {
      containers.set(cidr, open.reduce((a, b) => (order.get(b)! < order.get(a)! ? b : a)));
    }
    open.push(cidr);
  }
  return containers;
}
