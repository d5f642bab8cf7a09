/**
 * Which netfilter the agent drives (from the flags and the iptables mode): the chosen dataplane,
 * `--cleanup`'s tables, our rules in the unused iptables backend, the `--random-fully` probe.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import { enabledFamilies } from "../policy/desired.ts";
import { formatErrorChain } from "../base/errors.ts";
import type { AgentFlags } from "../settings/flags.ts";
import { allIptablesTools, type IptablesMode, type LegacyDump } from "../iptables/mode.ts";
import { type Dataplane, removeAll, switchingDataplane } from "../policy/dataplane.ts";
import { iptablesDataplane } from "../iptables/dataplane.ts";
import { nftablesDataplane } from "../nftables/dataplane.ts";
import { natTableClient, probeVersion } from "../iptables/client.ts";
import type { Logger } from "../base/log.ts";
import { type DetectionDeps, otherBackendPresent } from "../iptables/mode_detection.ts";
import type { CleanupTarget } from "./one_shot.ts";
import { nftClient, nftProgram } from "../nftables/client.ts";

/** The host seam every tool runs through (tests pass a fake and run without root). */
export interface NetfilterHost extends DetectionDeps {
  /** `detectMode`'s `legacyDumps`: whether legacy's nat table is loaded, without a new dump. */
  readonly legacyDumps?: Partial<Record<Family, LegacyDump>>;
}

/** Whether `other`, the backend the node does not use, may hold rules of ours for `family`. */
const otherPresent = (host: NetfilterHost, other: IptablesMode, family: Family) =>
  otherBackendPresent(other, family, host, host.legacyDumps?.[family]);

/** Every program the agent may run; `deno.json`'s `permissions.agent.run` names exactly these. */
export const agentPrograms: readonly string[] = [...allIptablesTools, nftProgram];

const otherMode = (mode: IptablesMode): IptablesMode => mode === "nft" ? "legacy" : "nft";

/** The iptables dataplane of `mode`'s tools; with `log`, it warns once of another agent's chain. */
function iptablesOf(flags: AgentFlags, mode: IptablesMode, host: NetfilterHost, log?: Logger) {
  const clients = {
    ipv4: natTableClient("ipv4", mode, host.exec),
    ipv6: natTableClient("ipv6", mode, host.exec),
  };
  const onAnotherAgent = (family: Family, chain: string) =>
    log?.warn(
      `the nat chain ${chain} (${family}) came back after this agent removed it: another ` +
        `ip-masq-agent runs on this node and manages it (a managed add-on such as AKS's or ` +
        `GKE's, or a second DaemonSet); leaving it and its jump alone from now on. Both agents ` +
        `now decide the same traffic (ours in ${flags.masqChain}): turn the other one off ` +
        `(README: "Migrating")`,
      { chain, family },
    );
  return iptablesDataplane(clients, flags.masqChain, undefined, onAnotherAgent);
}

/**
 * The dataplane `--dataplane` chooses, removing ours from the other one in the same reconcile (a
 * node that switched): with nftables, from both iptables backends (the other where present).
 */
export async function chosenDataplane(
  flags: AgentFlags,
  log: Logger,
  mode: IptablesMode,
  host: NetfilterHost,
): Promise<Dataplane> {
  const nftables = nftablesDataplane(nftClient(host.exec));
  const onRetiredError = (label: string, family: Family, error: unknown) =>
    log.warn(`could not remove our rules from ${label} (${family}); retrying next reconcile`, {
      error: formatErrorChain(error),
    });
  if (flags.dataplane === "iptables") {
    return switchingDataplane(iptablesOf(flags, mode, host, log), [nftables], onRetiredError);
  }
  const other = otherMode(mode);
  const retired = [iptablesOf(flags, mode, host)];
  if (await otherPresent(host, other, "ipv4")) retired.push(iptablesOf(flags, other, host));
  return switchingDataplane(nftables, retired, onRetiredError);
}

/** `--cleanup`'s targets, per family: our iptables backend, the other if present, and nftables. */
export async function cleanupTargets(
  flags: AgentFlags,
  mode: IptablesMode,
  host: NetfilterHost,
): Promise<CleanupTarget[]> {
  const targets: CleanupTarget[] = [];
  const iptables = iptablesOf(flags, mode, host);
  const otherName = otherMode(mode);
  const other = iptablesOf(flags, otherName, host);
  const nftables = nftablesDataplane(nftClient(host.exec));
  for (const family of ["ipv4", "ipv6"] as const) {
    const ipv6Optional = family === "ipv6" && !flags.enableIpv6;
    const optional = (dataplane: AgentFlags["dataplane"]) =>
      flags.dataplane !== dataplane || ipv6Optional;
    targets.push({ dataplane: iptables, family, name: mode, optional: optional("iptables") });
    if (await otherPresent(host, otherName, family)) {
      targets.push({ dataplane: other, family, name: otherName, optional: true });
    }
    targets.push({ dataplane: nftables, family, name: "nftables", optional: optional("nftables") });
  }
  return targets;
}

/**
 * Removes our chain and jump, once at start, from the backend we did not choose (a node that
 * switched, an earlier v1/v2 in the other mode): both would masquerade.
 */
export async function removeOursFromOtherBackend(
  flags: AgentFlags,
  log: Logger,
  mode: IptablesMode,
  host: NetfilterHost,
): Promise<void> {
  const other = otherMode(mode);
  for (const family of enabledFamilies(flags)) {
    try {
      if (!(await otherPresent(host, other, family))) continue;
      const plan = await removeAll(iptablesOf(flags, other, host), family);
      if (plan.payload === null) continue;
      log.warn(
        `removed our rules from the ${other} backend (${family}), which this node does not use: ` +
          plan.drift.map((drift) => drift.message).join("; "),
      );
    } catch (error) {
      log.warn(`could not check the ${other} backend (${family}) for rules of ours`, {
        error: formatErrorChain(error),
      });
    }
  }
}

/**
 * Whether the iptables of `mode` knows `--random-fully`, per enabled family: probed once (the
 * answer never changes), and logged with `log` unless this is `--check`.
 */
export async function probeRandomFully(
  flags: AgentFlags,
  log: Logger | undefined,
  mode: IptablesMode,
  host: NetfilterHost,
): Promise<Record<Family, boolean>> {
  const supported: Record<Family, boolean> = { ipv4: false, ipv6: false };
  const disabled = flags.randomFully ? "" : ", disabled by --random-fully=false";
  const lines: string[] = [];
  for (const family of enabledFamilies(flags)) {
    const { description, randomFullySupported } = await probeVersion(mode, family, host.exec);
    supported[family] = randomFullySupported;
    const support = randomFullySupported ? "supported" : "not supported (needs 1.6.2)";
    lines.push(`${description}: --random-fully ${support}${disabled}`);
  }
  for (const line of flags.check ? [] : lines) log?.info(line);
  return supported;
}
