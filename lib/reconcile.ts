/**
 * One reconcile, composed from the pure core: read the config directory, parse
 * and merge it, render the desired chain per family, read the live nat table,
 * and write the one transaction that fixes what differs (or nothing).
 *
 * @module
 */

import type { Family } from "./cidr.ts";
import { type FileConfig, parseConfigFile } from "./config.ts";
import { ConfigError, type ConfigProblem } from "./config_error.ts";
import type { ConfigDirContents } from "./config_dir.ts";
import type { AgentFlags } from "./flags.ts";
import type { NatTableClient } from "./iptables.ts";
import { type EffectiveConfig, type Finding, mergeConfigs } from "./merge.ts";
import { parsePortRanges } from "./ports.ts";
import { type DesiredChain, desiredChain } from "./rules.ts";
import { parseNatTable, type Plan, planReconcile } from "./ruleset.ts";

export interface LoadedConfig {
  readonly effective: EffectiveConfig;
  readonly findings: readonly Finding[];
  /** True when the directory does not exist (the defaults apply, and we say so). */
  readonly directoryMissing: boolean;
}

/** Parses every file and merges them; all problems of all files are reported together. */
export function loadConfig(contents: ConfigDirContents, flags: AgentFlags): LoadedConfig {
  const files = contents.kind === "missing" ? [] : contents.files;
  const problems: ConfigProblem[] = [];
  const parsed: FileConfig[] = [];
  for (const file of files) {
    const result = parseConfigFile(file.path, file.bytes, { enableIpv6: flags.enableIpv6 });
    if (result.ok) parsed.push(result.config);
    else problems.push(...result.problems);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const { config, findings } = mergeConfigs(parsed, {
    nomasqAllReservedRanges: flags.nomasqAllReservedRanges,
  });
  return { effective: config, findings, directoryMissing: contents.kind === "missing" };
}

export function enabledFamilies(flags: AgentFlags): Family[] {
  return flags.enableIpv6 ? ["ipv4", "ipv6"] : ["ipv4"];
}

export function desiredChains(
  effective: EffectiveConfig,
  flags: AgentFlags,
  randomFullySupported: Readonly<Record<Family, boolean>>,
): DesiredChain[] {
  const toPorts = parsePortRanges(flags.toPorts);
  // parseFlags validated the value already; this guards callers that built flags by hand.
  if (!toPorts.ok) throw new Error(`invalid --to-ports: ${toPorts.reason}`);
  return enabledFamilies(flags).map((family) =>
    desiredChain(effective, family, flags.masqChain, {
      randomFully: flags.randomFully && randomFullySupported[family],
      toPorts: toPorts.ranges,
    })
  );
}

export interface FamilyOutcome {
  readonly family: Family;
  readonly plan: Plan;
}

/** Reads the family's nat table once and plans what would bring it to `desired`. */
export async function planFamily(
  desired: DesiredChain,
  client: NatTableClient,
  signal?: AbortSignal,
): Promise<Plan> {
  return planReconcile(desired, parseNatTable(await client.save(signal)));
}

/** Reads each family's nat table once and writes only where the plan says so. */
export async function applyDesired(
  desired: readonly DesiredChain[],
  clients: Readonly<Record<Family, NatTableClient>>,
  signal?: AbortSignal,
): Promise<FamilyOutcome[]> {
  const outcomes: FamilyOutcome[] = [];
  for (const chain of desired) {
    const client = clients[chain.family];
    const plan = await planFamily(chain, client, signal);
    if (plan.payload !== null) await client.restore(plan.payload, signal);
    outcomes.push({ family: chain.family, plan });
  }
  return outcomes;
}
