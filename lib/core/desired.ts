/**
 * The desired state as data, from the config directory's contents: parse and
 * validate every file, merge them, and render the desired chain per enabled
 * family. Pure: the same contents and options give the same result.
 *
 * @module
 */

import type { Family } from "./cidr.ts";
import {
  type ConfigDirContents,
  type FileConfig,
  parseConfigFile,
  type ParseOptions,
} from "./config.ts";
import { ConfigError, type ConfigProblem } from "./config_error.ts";
import { type EffectiveConfig, type Finding, mergeConfigs, type MergeOptions } from "./merge.ts";
import type { PortRange } from "./ports.ts";
import { type DesiredChain, desiredChain, type PostroutingJump } from "./rules.ts";

/** A config directory's contents, validated and merged. */
export interface LoadedConfig {
  /** The merged configuration. */
  readonly effective: EffectiveConfig;
  /** What the merge found worth a warning. */
  readonly findings: readonly Finding[];
  /** True when the directory does not exist (the defaults apply, and we say so). */
  readonly directoryMissing: boolean;
}

/** The flags that decide how files are read and merged. */
export interface LoadOptions extends ParseOptions, MergeOptions {}

/** The flags that shape the rules, beyond the config files. */
export interface ChainOptions {
  /** The chain to fill (`--masq-chain`). */
  readonly masqChain: string;
  /** Whether an IPv6 chain is wanted too (`--enable-ipv6`). */
  readonly enableIpv6: boolean;
  /** `--random-fully` as given; combined with what the iptables in use supports. */
  readonly randomFully: boolean;
  /** `--to-ports`; empty for any source port. */
  readonly toPorts: readonly PortRange[];
  /** `--postrouting-jump`; absent means `append`. */
  readonly postroutingJump?: PostroutingJump;
  /** `--kube-proxy-masquerade-bit`; absent means kube-proxy's default, 14. */
  readonly kubeProxyMasqueradeBit?: number;
}

/**
 * Parses every file and merges them; all problems of all files are reported
 * together, as one {@link ConfigError} (thrown: the caller's policy decides
 * whether that exits or keeps the last good config).
 */
export function loadConfig(contents: ConfigDirContents, options: LoadOptions): LoadedConfig {
  const files = contents.kind === "missing" ? [] : contents.files;
  const problems: ConfigProblem[] = [];
  const parsed: FileConfig[] = [];
  for (const file of files) {
    const result = parseConfigFile(file.path, file.bytes, { enableIpv6: options.enableIpv6 });
    if (result.ok) parsed.push(result.value);
    else problems.push(...result.error);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const { config, findings, problems: contradictions } = mergeConfigs(parsed, {
    nomasqAllReservedRanges: options.nomasqAllReservedRanges,
  });
  if (contradictions.length > 0) throw new ConfigError(contradictions);
  return { effective: config, findings, directoryMissing: contents.kind === "missing" };
}

/** The families the agent manages: IPv4 always, IPv6 with `--enable-ipv6`. */
export function enabledFamilies(options: { readonly enableIpv6: boolean }): Family[] {
  return options.enableIpv6 ? ["ipv4", "ipv6"] : ["ipv4"];
}

/** The desired chain of every enabled family. */
export function desiredChains(
  effective: EffectiveConfig,
  options: ChainOptions,
  randomFullySupported: Readonly<Record<Family, boolean>>,
): DesiredChain[] {
  return enabledFamilies(options).map((family) =>
    desiredChain(effective, family, options.masqChain, {
      randomFully: options.randomFully && randomFullySupported[family],
      toPorts: options.toPorts,
    }, {
      postroutingJump: options.postroutingJump,
      kubeProxyMasqueradeBit: options.kubeProxyMasqueradeBit,
    })
  );
}
