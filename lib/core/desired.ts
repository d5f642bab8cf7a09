/**
 * The desired state as data, from the config directory's contents: parse and
 * validate every file, merge them, and render the desired chain per enabled
 * family. Pure: the same contents and flags give the same result.
 *
 * @module
 */

import type { Family } from "./cidr.ts";
import { type ConfigDirContents, type FileConfig, parseConfigFile } from "./config.ts";
import { ConfigError, type ConfigProblem } from "./config_error.ts";
import type { AgentFlags } from "./flags.ts";
import { type EffectiveConfig, type Finding, mergeConfigs } from "./merge.ts";
import { parsePortRanges } from "./ports.ts";
import { type DesiredChain, desiredChain } from "./rules.ts";

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
