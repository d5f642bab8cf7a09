/**
 * Merging a config directory's files into the one effective config, as ip-masq-agent-v2 does:
 * CIDRs are the union, booleans are ORed. The default `nonMasqueradeCIDRs` stand until some file
 * names that key, as in v1 (v2 drops them once any file exists, so a v1 ConfigMap holding only
 * `masqLinkLocal` masquerades every private range). Findings flag what to look at.
 *
 * @module
 */

import {
  type Cidr,
  compareCidrs,
  contains,
  linkLocalRanges,
  longestContaining,
  parseBuiltInCidr,
} from "../net/cidr.ts";
import type { FileConfig } from "./parse.ts";
import type { ConfigProblem } from "../base/problems.ts";
import type { AgentFlags } from "../settings/flags.ts";
import { builtIn, formatLocation, type Located } from "../base/source.ts";

/** The one configuration the agent applies, every value with where it came from. */
export interface EffectiveConfig
  extends
    Pick<FileConfig, "resyncInterval" | "outputAddress" | "outputAddressIPv6" | "outputInterface">,
    Pick<FileConfig, "nonMasqueradeCidrs" | "masqueradeCidrs" | "nonMasqueradeSrcCidrs">,
    Required<Pick<FileConfig, "masqLinkLocal" | "masqLinkLocalIPv6">> {
  /** Files merged, in order; empty when there is none. */
  readonly files: readonly string[];
  /** True when {@link nonMasqueradeCidrs} are the defaults; absent is false. */
  readonly defaultNonMasqueradeCidrs?: boolean;
}

/** Something an operator should look at that does not make the config invalid. */
export interface Finding {
  /** A stable name, logged as a field so that alerts can match it. */
  readonly kind:
    | "conflicting-boolean"
    | "conflicting-resync-interval"
    | "contained-cidr"
    | "ineffective-exception"
    | "masquerade-nothing"
    | "masquerade-everything"
    | "ipv6-not-enabled";
  /** What was found, naming the files and lines involved. */
  readonly message: string;
}

/** What {@link mergeConfigs} returns. */
export interface MergeResult {
  /** The merged configuration. */
  readonly config: EffectiveConfig;
  /** Findings in file order; none when the defaults apply. */
  readonly findings: readonly Finding[];
  /** Where the merged config contradicts itself, naming both places; the caller rejects it. */
  readonly problems: readonly ConfigProblem[];
}

/** The default `nonMasqueradeCIDRs`: the RFC 1918 private ranges. */
export const rfc1918Ranges = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"] as const;

/** The defaults with `--nomasq-all-reserved-ranges`: every reserved IPv4 range. */
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

/** The flags that change the merge. */
export type MergeOptions = Readonly<Pick<AgentFlags, "nomasqAllReservedRanges">>;

/**
 * Merges the files in their sorted order; the first occurrence of a CIDR sets the rule order and
 * the shortest `resyncInterval` wins.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseConfigFile } from "./parse.ts";
 * import { mergeConfigs } from "./merge.ts";
 *
 * const file = (path: string, text: string) => {
 *   const parsed = parseConfigFile(path, new TextEncoder().encode(text), { enableIpv6: false });
 *   assert.ok(parsed.ok);
 *   return parsed.value;
 * };
 * const options = { nomasqAllReservedRanges: false };
 * const a = file("ip-masq-a", "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqLinkLocal: false\n");
 * const b = file("ip-masq-b", "nonMasqueradeCIDRs: [10.1.0.0/16]\nmasqLinkLocal: true\n");
 * const { config, findings } = mergeConfigs([a, b], options);
 * const texts = config.nonMasqueradeCidrs.map((cidr) => cidr.value.text);
 * assert.deepEqual(texts, ["10.0.0.0/8", "10.1.0.0/16"]);
 * assert.equal(config.masqLinkLocal.value, true);
 * const kinds = findings.map((finding) => finding.kind);
 * assert.deepEqual(kinds, ["conflicting-boolean", "contained-cidr"]);
 * // A file that does not name nonMasqueradeCIDRs keeps the defaults (v1).
 * const kept = mergeConfigs([file("ip-masq-agent", "masqLinkLocal: true\n")], options);
 * assert.equal(kept.config.nonMasqueradeCidrs.length, 3);
 * ```
 */
export function mergeConfigs(files: readonly FileConfig[], options: MergeOptions): MergeResult {
  const defaults = defaultConfig(options);
  if (files.length === 0) return { config: defaults, findings: [], problems: [] };
  const findings: Finding[] = [];
  const named = files.some((file) => file.namesNonMasqueradeCidrs !== undefined);
  const cidrs = named ? unionOfCidrs(files, "nonMasqueradeCidrs") : defaults.nonMasqueradeCidrs;
  const config: EffectiveConfig = {
    files: files.map((file) => file.file),
    nonMasqueradeCidrs: cidrs,
    ...(named ? {} : { defaultNonMasqueradeCidrs: true }),
    masqueradeCidrs: unionOfCidrs(files, "masqueradeCidrs"),
    nonMasqueradeSrcCidrs: unionOfCidrs(files, "nonMasqueradeSrcCidrs"),
    masqLinkLocal: orBooleans(files, "masqLinkLocal", findings),
    masqLinkLocalIPv6: orBooleans(files, "masqLinkLocalIPv6", findings),
    resyncInterval: shortestResync(files, findings),
  };
  const sources = nestingFindings(config.nonMasqueradeSrcCidrs, "nonMasqueradeSrcCIDRs ", "source");
  findings.push(...cidrFindings(config), ...exceptionFindings(config), ...sources);
  const problems = contradictions(config);
  for (const key of ["outputAddress", "outputAddressIPv6", "outputInterface"] as const) {
    Object.assign(config, singleValue(files, key, problems));
  }
  return { config, findings, problems };
}

/** One value for the whole node: repeated is fine (the first is kept), two differ is a problem. */
function singleValue<K extends "outputAddress" | "outputAddressIPv6" | "outputInterface">(
  files: readonly FileConfig[],
  key: K,
  problems: ConfigProblem[],
): Partial<Pick<EffectiveConfig, K>> {
  const [first, ...rest] = files.flatMap((file) => file[key] ?? []);
  if (!first) return {};
  const text = (entry: typeof first) =>
    typeof entry.value === "string" ? entry.value : entry.value.text;
  const other = rest.find((entry) => text(entry) !== text(first));
  if (other) {
    problems.push({
      at: other.at,
      key,
      message: `${key} is ${text(other)} here but ${text(first)} at ${formatLocation(first.at)}: ` +
        "one value applies to the whole node; remove one of them",
    });
  }
  return { [key]: first } as Partial<Pick<EffectiveConfig, K>>;
}

function defaultConfig({ nomasqAllReservedRanges: allReserved }: MergeOptions): EffectiveConfig {
  const at = builtIn(allReserved ? "default: --nomasq-all-reserved-ranges" : "default: RFC 1918");
  const ranges = allReserved ? reservedRanges : rfc1918Ranges;
  return {
    files: [],
    nonMasqueradeCidrs: ranges.map((text) => ({ value: parseBuiltInCidr(text), at })),
    defaultNonMasqueradeCidrs: true,
    masqueradeCidrs: [],
    nonMasqueradeSrcCidrs: [],
    masqLinkLocal: { value: false, at: builtIn("default") },
    masqLinkLocalIPv6: { value: false, at: builtIn("default") },
  };
}

/** Sorted files, first occurrence wins: the rule order never depends on map iteration. */
function unionOfCidrs(
  files: readonly FileConfig[],
  key: "nonMasqueradeCidrs" | "masqueradeCidrs" | "nonMasqueradeSrcCidrs",
): Located<Cidr>[] {
  const seen = new Set<string>();
  return files.flatMap((file) => file[key]).filter((cidr) => {
    if (seen.has(cidr.value.text)) return false;
    seen.add(cidr.value.text);
    return true;
  });
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

function cidrFindings({ nonMasqueradeCidrs: cidrs, masqueradeCidrs: exceptions }: EffectiveConfig) {
  // Built on first use: only a contained CIDR asks, and indexing 100,000 CIDRs costs ~50 ms.
  let longestExemption: ((cidr: Cidr) => Cidr | undefined) | undefined;
  let longestException: ((cidr: Cidr) => Cidr | undefined) | undefined;
  const findings = nestingFindings(cidrs, "", "destination", (cidr) => {
    longestExemption ??= longestContaining(cidrs.map(({ value }) => value), { orEqual: false });
    longestException ??= longestContaining(exceptions.map(({ value }) => value), { orEqual: true });
    // An exception between `cidr` and the longest exemption around it (10.1.2.0/24 inside
    // 10.1.0.0/16 masqueraded inside 10.0.0.0/8) makes `cidr` decide its addresses again.
    const [exception, around] = [longestException(cidr), longestExemption(cidr)];
    return exception !== undefined && (around === undefined || exception.prefix > around.prefix);
  });
  if (cidrs.length === 0) {
    findings.push({
      kind: "masquerade-everything",
      message: "nonMasqueradeCIDRs is set but lists no CIDR: all traffic leaving the node to " +
        "non-local destinations is masqueraded (the defaults apply only while no file names " +
        "nonMasqueradeCIDRs)",
    });
  }
  return findings;
}

/** A /0 exempts everything; a CIDR inside another has no effect, unless `reopened` says so. */
function nestingFindings(
  cidrs: readonly Located<Cidr>[],
  label: string,
  exempts: "destination" | "source",
  reopened = (_: Cidr) => false,
): Finding[] {
  const containers = firstContainers(cidrs);
  return cidrs.flatMap((cidr) => {
    const findings: Finding[] = [];
    const named = `${label}${cidr.value.text} at ${formatLocation(cidr.at)}`;
    if (cidr.value.prefix === 0) {
      findings.push({
        kind: "masquerade-nothing",
        message: `${named} exempts every ${exempts}: no ${cidr.value.family} traffic will be ` +
          "masqueraded",
      });
    }
    const outer = containers.get(cidr);
    if (outer && !reopened(cidr.value)) {
      findings.push({
        kind: "contained-cidr",
        message: `${named} is inside ${outer.value.text} at ${formatLocation(outer.at)} and ` +
          "has no effect",
      });
    }
    return findings;
  });
}

/**
 * For each CIDR inside another, the containing CIDR listed first. Comparing every pair took minutes
 * for tens of thousands of CIDRs; prefixes nest or are disjoint, so in sorted order the CIDRs
 * containing one are exactly those still open on a stack.
 */
function firstContainers(cidrs: readonly Located<Cidr>[]): Map<Located<Cidr>, Located<Cidr>> {
  // Positions sorted by CIDR, so the list order is the position itself (no Map of 100,000).
  // sort() is stable: equal CIDRs keep their list order.
  const sorted = [...cidrs.keys()].sort((a, b) => compareCidrs(cidrs[a].value, cidrs[b].value));
  const open: number[] = [];
  const containers = new Map<Located<Cidr>, Located<Cidr>>();
  for (const index of sorted) {
    const cidr = cidrs[index];
    while (open.length > 0 && !contains(cidrs[open[open.length - 1]].value, cidr.value)) open.pop();
    if (open.length > 0) containers.set(cidr, cidrs[Math.min(...open)]);
    open.push(index);
  }
  return containers;
}

/** A masqueradeCIDRs entry outside every exempt range changes nothing: it is masqueraded anyway. */
function exceptionFindings(config: EffectiveConfig): Finding[] {
  if (config.masqueradeCidrs.length === 0) return [];
  // The exempt ranges: link-local unless masqLinkLocal(IPv6), then nonMasqueradeCIDRs. An equal
  // range counts: equal to a configured one is rejected as a contradiction, and equal to the
  // built-in link-local range it masquerades link-local (as masqLinkLocal would).
  const linkLocal = [
    ...(config.masqLinkLocal.value ? [] : [linkLocalRanges.ipv4]),
    ...(config.masqLinkLocalIPv6.value ? [] : [linkLocalRanges.ipv6]),
  ].map(parseBuiltInCidr);
  const exempt = [...linkLocal, ...config.nonMasqueradeCidrs.map((cidr) => cidr.value)];
  const around = longestContaining(exempt, { orEqual: true });
  const ineffective = config.masqueradeCidrs.filter((exception) => !around(exception.value));
  return ineffective.map((exception) => ({
    kind: "ineffective-exception",
    message: `masqueradeCIDRs ${exception.value.text} at ${formatLocation(exception.at)} lies ` +
      "inside no non-masquerade range and has no effect (such traffic is masqueraded anyway)",
  }));
}

/**
 * The same CIDR in masqueradeCIDRs and nonMasqueradeCIDRs has no longest prefix to decide it, so
 * the config is rejected. A default range equal to an exception loses the tie (nobody wrote it).
 */
function contradictions(config: EffectiveConfig): ConfigProblem[] {
  if (config.defaultNonMasqueradeCidrs || config.masqueradeCidrs.length === 0) return [];
  const exempt = new Map(config.nonMasqueradeCidrs.map((cidr) => [cidr.value.text, cidr]));
  return config.masqueradeCidrs.flatMap((exception) => {
    const other = exempt.get(exception.value.text);
    if (!other) return [];
    return [{
      at: exception.at,
      key: "masqueradeCIDRs",
      message: `${exception.value.text} is also listed in nonMasqueradeCIDRs at ` +
        `${formatLocation(other.at)}: a destination cannot be both masqueraded and not; ` +
        "remove one of them",
    }];
  });
}
