/**
 * The one-shot modes: `--dry-run` (print, needs no root), `--check` (a
 * readiness probe) and `--cleanup` (uninstall). Each returns its exit code.
 *
 * @module
 */

import type { Family } from "../core/cidr.ts";
import { ConfigError } from "../core/config_error.ts";
import type { ConfigDirContents } from "./config_dir.ts";
import { exitCodes, formatErrorChain } from "../core/errors.ts";
import type { AgentFlags } from "../core/flags.ts";
import { IptablesError, type NatTableClient } from "./iptables.ts";
import type { Logger } from "./log.ts";
import { desiredChains, enabledFamilies, loadConfig } from "../core/desired.ts";
import { planFamily } from "./reconcile.ts";
import { renderFromEmpty } from "../core/rules.ts";
import { parseNatTable, planCleanup } from "../core/ruleset.ts";

export interface ModeDeps {
  readonly flags: AgentFlags;
  readonly log: Logger;
  readonly print: (text: string) => void;
  readonly readConfigDir: (dir: string) => Promise<ConfigDirContents>;
}

async function loadOrReport(deps: ModeDeps) {
  try {
    return loadConfig(await deps.readConfigDir(deps.flags.configDir), deps.flags);
  } catch (error) {
    if (error instanceof ConfigError) {
      deps.log.error(error.message);
      return undefined;
    }
    throw error;
  }
}

/**
 * Prints the restore input per family. It runs no iptables tool, so it
 * renders `--random-fully` as the flag says rather than probing support.
 */
export async function dryRun(deps: ModeDeps): Promise<number> {
  const loaded = await loadOrReport(deps);
  if (!loaded) return exitCodes.usage;
  for (const finding of loaded.findings) deps.log.warn(finding.message, { finding: finding.kind });
  const assumeSupported = { ipv4: true, ipv6: true };
  for (const chain of desiredChains(loaded.effective, deps.flags, assumeSupported)) {
    deps.print(`# ${chain.family}\n${renderFromEmpty(chain)}`);
  }
  return exitCodes.ok;
}

/** Exit 0 in sync, 1 with the differences printed, 2 on an invalid config. */
export async function check(
  deps: ModeDeps,
  clients: Readonly<Record<Family, NatTableClient>>,
  randomFullySupported: Readonly<Record<Family, boolean>>,
): Promise<number> {
  const loaded = await loadOrReport(deps);
  if (!loaded) return exitCodes.usage;
  let inSync = true;
  for (const chain of desiredChains(loaded.effective, deps.flags, randomFullySupported)) {
    const plan = await planFamily(chain, clients[chain.family]);
    for (const drift of plan.drift) deps.print(`${chain.family}: ${drift.message}`);
    inSync &&= plan.payload === null;
  }
  if (inSync) deps.print(`in sync: ${enabledFamilies(deps.flags).join(", ")}`);
  return inSync ? exitCodes.ok : exitCodes.runtime;
}

/**
 * Removes our jumps and chains for both families. A family whose tools or
 * nat table are unavailable (no IPv6 on the node) is reported and skipped.
 */
export async function cleanup(
  deps: ModeDeps,
  clients: Readonly<Record<Family, NatTableClient>>,
): Promise<number> {
  let code: number = exitCodes.ok;
  for (const family of ["ipv4", "ipv6"] as const) {
    try {
      const plan = planCleanup(deps.flags.masqChain, parseNatTable(await clients[family].save()));
      if (plan.payload !== null) await clients[family].restore(plan.payload);
      deps.log.info(
        plan.payload === null
          ? `cleanup (${family}): nothing of ours to remove`
          : `cleanup (${family}): ${plan.drift.map((drift) => drift.message).join("; ")}`,
      );
    } catch (error) {
      // A node without IPv6 (no ip6tables, or no ip6 nat table) has nothing of ours to remove,
      // unless IPv6 was asked for.
      const ipv6Optional = family === "ipv6" && !deps.flags.enableIpv6;
      if (ipv6Optional && error instanceof IptablesError) {
        deps.log.warn(`cleanup (ipv6): skipped, ${error.message}`);
        continue;
      }
      deps.log.error(`cleanup (${family}) failed: ${formatErrorChain(error)}`);
      code = exitCodes.runtime;
    }
  }
  return code;
}
