/**
 * The config directory's contents parsed, validated and merged, and each enabled family's
 * desired chain made from them. Pure.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import {
  type ConfigDirContents,
  type FileConfig,
  parseConfigFile,
  type ParseOptions,
} from "../config/parse.ts";
import { ConfigError } from "../base/problems.ts";
import {
  type EffectiveConfig,
  type Finding,
  mergeConfigs,
  type MergeOptions,
} from "../config/merge.ts";
import type { AgentFlags } from "../settings/flags.ts";
import { formatLocation } from "../base/source.ts";
import { type DesiredChain, desiredChain } from "./chain.ts";
import { type CommandLine, resolveSettings } from "../settings/keys.ts";

/** A config directory's contents, validated and merged. */
export interface LoadedConfig {
  /** The merged configuration. */
  readonly effective: EffectiveConfig;
  /** What the merge found worth a warning. */
  readonly findings: readonly Finding[];
  /** True when the directory does not exist (the defaults apply, and we say so). */
  readonly directoryMissing: boolean;
  /** The flags with the files' settings applied, when {@link loadConfig} got the command line. */
  readonly settings?: AgentFlags;
}

/**
 * The config as main.ts loaded it at start, reused by the first reconcile and the one-shot
 * modes (at 100,000 CIDRs a load costs a second of CPU under `--lite-mode`).
 */
export interface StartupLoad {
  /** What was read. */
  readonly contents: ConfigDirContents;
  /** What it loaded to, with the command line's settings resolved. */
  readonly loaded: LoadedConfig;
}

/** Parses and merges every file; all problems of all files throw as one {@link ConfigError}. */
export function loadConfig(
  contents: ConfigDirContents,
  options: ParseOptions & MergeOptions,
  commandLine?: CommandLine,
): LoadedConfig {
  if (commandLine !== undefined) return loadWithSettings(contents, commandLine);
  const { parsed, problems } = parseAll(contents, options.enableIpv6);
  if (problems.length > 0) throw new ConfigError(problems);
  const loaded = merge(contents, parsed, options);
  const ipv6 = loaded.effective.masqLinkLocalIPv6;
  if (!ipv6.value || options.enableIpv6) return loaded;
  const finding: Finding = {
    kind: "ipv6-not-enabled",
    message: `masqLinkLocalIPv6 is true at ${formatLocation(ipv6.at)} but IPv6 is not ` +
      "enabled: it has no effect (the agent writes no IPv6 rules); add --enable-ipv6, or " +
      "remove the key",
  };
  return { ...loaded, findings: [...loaded.findings, finding] };
}

/** The families the agent manages: IPv4 always, IPv6 with `--enable-ipv6`. */
export function enabledFamilies(options: { readonly enableIpv6: boolean }): Family[] {
  return options.enableIpv6 ? ["ipv4", "ipv6"] : ["ipv4"];
}

/** The desired chain of every enabled family; `options` shape the rules beyond the files. */
export function desiredChains(
  effective: EffectiveConfig,
  options:
    & Pick<AgentFlags, "masqChain" | "enableIpv6" | "randomFully" | "toPorts">
    & Partial<Pick<AgentFlags, "postroutingJump" | "kubeProxyMasqueradeBit">>,
  randomFullySupported: Readonly<Record<Family, boolean>>,
): DesiredChain[] {
  return enabledFamilies(options).map((family) =>
    desiredChain(effective, family, options.masqChain, {
      randomFully: options.randomFully && randomFullySupported[family],
      toPorts: options.toPorts,
    }, options)
  );
}

function parseAll(files: ConfigDirContents, enableIpv6: boolean) {
  const results = (files.kind === "missing" ? [] : files.files)
    .map((file) => parseConfigFile(file.path, file.bytes, { enableIpv6 }));
  return {
    parsed: results.flatMap((result) => (result.ok ? [result.value] : [])),
    problems: results.flatMap((result) => (result.ok ? [] : result.error)),
  };
}

function merge(contents: ConfigDirContents, parsed: readonly FileConfig[], options: MergeOptions) {
  const { config, findings, problems } = mergeConfigs(parsed, options);
  if (problems.length > 0) throw new ConfigError(problems);
  return { effective: config, findings, directoryMissing: contents.kind === "missing" };
}

/**
 * {@link loadConfig} with the files' settings applied. A file may set `enableIPv6`, so files are
 * read with IPv6 allowed first, then again without it (for the same problems) if it stays off.
 */
function loadWithSettings(contents: ConfigDirContents, commandLine: CommandLine): LoadedConfig {
  const first = parseAll(contents, true);
  if (first.problems.length > 0) {
    const enabled = commandLine.flags.enableIpv6 ||
      first.parsed.some((file) =>
        file.settings?.some((setting) => setting.key === "enableIPv6" && setting.value === true)
      );
    throw new ConfigError(enabled ? first.problems : parseAll(contents, false).problems);
  }
  const resolved = resolveSettings(commandLine, first.parsed);
  if (!resolved.ok) throw new ConfigError(resolved.error);
  const settings = resolved.value;
  const unwantedIpv6 = !settings.enableIpv6 &&
    first.parsed.some((file) =>
      [file.nonMasqueradeCidrs, file.masqueradeCidrs, file.nonMasqueradeSrcCidrs].some((list) =>
        list.some((cidr) => cidr.value.family === "ipv6")
      )
    );
  if (unwantedIpv6) throw new ConfigError(parseAll(contents, false).problems);
  return { ...merge(contents, first.parsed, settings), settings };
}
