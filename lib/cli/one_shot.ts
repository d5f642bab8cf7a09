/**
 * The one-shot modes, each returning its exit code: `--dry-run` (print, needs no root), `--check`
 * (a readiness probe) and `--cleanup` (uninstall).
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import { type ConfigDirContents, ignoredEntryMessage } from "../config/parse.ts";
import { exitCodes, ForeignChainError, formatErrorChain } from "../base/errors.ts";
import type { AgentFlags } from "../settings/flags.ts";
import { ToolError } from "../base/tool.ts";
import type { Logger } from "../base/log.ts";
import {
  desiredChains,
  enabledFamilies,
  loadConfig,
  type LoadedConfig,
  type StartupLoad,
} from "../policy/desired.ts";
import { ConfigError } from "../base/problems.ts";
import type { CommandLine } from "../settings/keys.ts";
import {
  type Dataplane,
  type DataplanePlan,
  readAndPlan,
  readAndPlanRemoval,
} from "../policy/dataplane.ts";
import { renderFromEmpty } from "../iptables/render.ts";
import { renderNftFromEmpty } from "../nftables/render.ts";

/** What every one-shot mode needs. */
export interface ModeDeps {
  /** The flags, with the config directory's settings applied. */
  readonly flags: AgentFlags;
  /** Where findings and errors go (stderr). */
  readonly log: Logger;
  /** Where the mode's own output goes (stdout). */
  readonly print: (text: string) => void;
  /** Reads the config directory (`readConfigDir` in production). */
  readonly readConfigDir: (dir: string) => Promise<ConfigDirContents>;
  /** The command line as given: each load checks the files' settings against it again (exit 2). */
  readonly commandLine?: CommandLine;
  /** The config main.ts loaded at start, if it was valid: the mode loads nothing again. */
  readonly startupLoad?: StartupLoad;
}

/** Reads and loads the config, warning about entries ignored for their name; throws ConfigError. */
export async function load(deps: ModeDeps): Promise<LoadedConfig> {
  const { flags, log, startupLoad } = deps;
  const contents = startupLoad?.contents ?? await deps.readConfigDir(flags.configDir);
  const names = contents.kind === "files" ? contents.ignored ?? [] : [];
  for (const ignored of names) log.warn(ignoredEntryMessage(flags.configDir, ignored), { ignored });
  return startupLoad?.loaded ?? loadConfig(contents, flags, deps.commandLine);
}

/**
 * Prints the restore input (`--dataplane=nftables`: the `nft -f` input) per family. It runs no
 * tool, so it renders `--random-fully` as the flag says rather than probing support.
 */
export async function dryRun(deps: ModeDeps): Promise<number> {
  const loaded = await load(deps);
  for (const finding of loaded.findings) deps.log.warn(finding.message, { finding: finding.kind });
  const render = deps.flags.dataplane === "nftables" ? renderNftFromEmpty : renderFromEmpty;
  for (const chain of desiredChains(loaded.effective, deps.flags, { ipv4: true, ipv6: true })) {
    deps.print(`# ${chain.family}\n${render(chain)}`);
  }
  return exitCodes.ok;
}

/** Exit 0 in sync, 1 with the differences printed, 2 on an invalid config. */
export async function check(
  deps: ModeDeps,
  dataplane: Dataplane,
  randomFullySupported: Readonly<Record<Family, boolean>>,
): Promise<number> {
  const loaded = await load(deps);
  let inSync = true;
  for (const chain of desiredChains(loaded.effective, deps.flags, randomFullySupported)) {
    const plan = await readAndPlan(dataplane, chain);
    for (const drift of plan.drift) {
      deps.print(`${chain.family}: ${readOnlyWording(drift.message)}`);
    }
    // A chain of ours under another name does not fail the probe: the agent removes it once, and
    // leaves it alone if it comes back (another agent's); a never-passing probe stalls rollouts.
    inSync &&= plan.payload === null ||
      plan.drift.every((drift) => drift.kind === "stale-chain" && drift.chain !== undefined);
  }
  if (inSync) deps.print(`in sync: ${enabledFamilies(deps.flags).join(", ")}`);
  return inSync ? exitCodes.ok : exitCodes.runtime;
}

const readOnlyActions: readonly [pattern: RegExp, replacement: string][] = [
  // "table ip ip-masq-agent differs (...); replacing it"
  [/; replacing it$/, "; the agent would replace it"],
  [/; rewriting it$/, "; the agent would rewrite it"],
  [/; moving it to first place$/, "; the agent would move it to first place"],
  // A chain of ours under another name, found by a reconcile plan (iptables/plan.ts).
  [
    /^(.*?)removing (\S+), left by an earlier --masq-chain( \(jump only: [^)]*\))?$/,
    "$1$2 is reached by a jump of ours but is not --masq-chain: left by an earlier " +
    "--masq-chain, or managed by another ip-masq-agent on this node; the agent removes it " +
    "once$3 and leaves it alone if it comes back",
  ],
  // Leftovers a removal would delete: "iptables (nft): removing IP-MASQ-AGENT".
  [/^(.*?)removing (.+)$/, "$1$2 is left over; the agent would remove it"],
];

/**
 * A drift message as `--check` and `--explain` say it: what the agent would do, where the
 * dataplanes word what it is about to do ("...; replacing it").
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readOnlyWording } from "./one_shot.ts";
 *
 * assert.equal(readOnlyWording("removing CHAIN"), "CHAIN is left over; the agent would remove it");
 * assert.equal(readOnlyWording("POSTROUTING has no jump to X"), "POSTROUTING has no jump to X");
 * ```
 */
export function readOnlyWording(message: string): string {
  const action = readOnlyActions.find(([pattern]) => pattern.test(message));
  return action ? message.replace(...action) : message;
}

/** One family of a dataplane `--cleanup` visits; an optional one that cannot be read is skipped. */
export interface CleanupTarget {
  /** An iptables backend, or nftables. */
  readonly dataplane: Dataplane;
  /** The family whose rules of ours it removes. */
  readonly family: Family;
  /** How the log names it: the iptables backend (`nft`, `legacy`) or `nftables`. */
  readonly name: string;
  /** True for IPv6 without `--enable-ipv6`, and for the backend the node does not use. */
  readonly optional: boolean;
}

/** Removes our rules from every target, touching nothing else. */
export async function cleanup(deps: ModeDeps, targets: readonly CleanupTarget[]): Promise<number> {
  let code: number = exitCodes.ok;
  const failed = (where: string, error: unknown) => {
    deps.log.error(`cleanup (${where}) failed: ${formatErrorChain(error)}`);
    code = exitCodes.runtime;
  };
  // Every target is planned before any is written: a --masq-chain that is another tool's chain
  // in any of them refuses the whole cleanup, with nothing written (exit 2).
  const planned: { target: CleanupTarget; where: string; plan: DataplanePlan }[] = [];
  let refused = false;
  for (const target of targets) {
    const where = `${target.family}, ${target.name}`;
    try {
      const plan = await readAndPlanRemoval(target.dataplane, target.family);
      planned.push({ target, where, plan });
    } catch (error) {
      if (error instanceof ForeignChainError) {
        deps.log.error(`cleanup (${where}): ${error.message}`);
        refused = true;
      } else if (target.optional && error instanceof ToolError) {
        deps.log.warn(`cleanup (${where}): skipped, ${error.message}`);
      } else {
        failed(where, error);
      }
    }
  }
  if (refused) return exitCodes.usage;
  for (const { target, where, plan } of planned) {
    try {
      const nothing = plan.payload === null;
      if (!nothing) await target.dataplane.apply(target.family, plan);
      const removed = plan.drift.map((drift) => drift.message).join("; ");
      deps.log.info(`cleanup (${where}): ${nothing ? "nothing of ours to remove" : removed}`);
    } catch (error) {
      failed(where, error);
    }
  }
  return code;
}

/**
 * The flags with the config directory's settings applied, and the load they came from. A rejected
 * config leaves the command line's flags and no load: each mode reports the rejection itself, but
 * `--cleanup` (an uninstall must work whatever the config says) goes on with them, saying so.
 */
export async function flagsWithSettings(
  commandLine: CommandLine,
  log: Logger,
  readConfigDir: (dir: string) => Promise<ConfigDirContents>,
): Promise<{ readonly flags: AgentFlags; readonly startupLoad?: StartupLoad }> {
  const { flags } = commandLine;
  try {
    const contents = await readConfigDir(flags.configDir);
    const loaded = loadConfig(contents, flags, commandLine);
    return { flags: loaded.settings ?? flags, startupLoad: { contents, loaded } };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const warning = "the configuration is invalid; cleaning up with the settings of the flags";
    if (flags.cleanup) log.warn(warning, { error: error.message });
    return { flags };
  }
}
