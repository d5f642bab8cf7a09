/**
 * Choosing the iptables backend at start: runs the probes `decideMode` asks for until it decides.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import {
  decideMode,
  type IptablesMode,
  kubeletHintChains,
  type LegacyDump,
  type ModeDecision,
} from "./mode.ts";
import { denoExec, denoScanExec, type Exec, type ScanExec, scanViaExec } from "../base/exec.ts";
import { chainExists, countRules, dumpLegacy } from "./client.ts";

/** How the detection runs the iptables tools. */
export interface DetectionDeps {
  /** Runs the tools. */
  readonly exec: Exec;
  /** Streams a legacy dump without keeping it; `exec`'s whole output as one chunk if absent. */
  readonly scan?: ScanExec;
}

/** The host's real processes. */
export const hostDetectionDeps: DetectionDeps = { exec: denoExec, scan: denoScanExec };

/** The tables whose nft rules the last resort counts: where kube-proxy, Docker and CNIs write. */
const countedTables = ["nat", "filter", "mangle"] as const;

async function nftHintIn(exec: Exec, family: Family, failures: string[]): Promise<boolean> {
  for (const chain of kubeletHintChains) {
    if (await chainExists(exec, "nft", family, "mangle", chain, failures)) return true;
  }
  return false;
}

/** What the detection decided, and the legacy dumps it read on the way. */
export interface Detection {
  /** The backend, and why. */
  readonly decision: ModeDecision;
  /** The legacy dumps read, per family: {@link otherBackendPresent} reuses them. */
  readonly legacyDumps: Partial<Record<Family, LegacyDump>>;
}

/** `--iptables-mode`: `nft` and `legacy` are taken as given; `auto` asks the node. */
export async function chooseMode(
  flag: "auto" | IptablesMode,
  deps: DetectionDeps = hostDetectionDeps,
): Promise<ModeDecision> {
  return (await detectMode(flag, deps)).decision;
}

/** {@link chooseMode}, with the legacy dumps read on the way. */
export async function detectMode(
  flag: "auto" | IptablesMode,
  deps: DetectionDeps,
): Promise<Detection> {
  if (flag !== "auto") {
    return { decision: { mode: flag, evidence: `--iptables-mode=${flag}` }, legacyDumps: {} };
  }
  const nftHint: Partial<Record<Family, boolean>> = {};
  const legacy: Partial<Record<Family, LegacyDump>> = {};
  let nftRules: number | undefined;
  const readFailures: string[] = [];
  const scan = deps.scan ?? scanViaExec(deps.exec);
  for (;;) {
    const step = decideMode({ nftHint, legacy, nftRules, readFailures });
    if (step.kind === "decided") return { decision: step.decision, legacyDumps: legacy };
    if (step.kind === "probe-nft-hint") {
      nftHint[step.family] = await nftHintIn(deps.exec, step.family, readFailures);
    } else if (step.kind === "dump-legacy") {
      // Stops reading once kubelet's hint is seen: that decides (legacy).
      legacy[step.family] = await dumpLegacy(scan, step.family, (read) => read.hint);
    } else nftRules = await countRules(deps.exec, "nft", "ipv4", countedTables, readFailures);
  }
}

/**
 * Whether the backend we did not choose may hold rules of ours, asked without side effects:
 * legacy only where its nat table is loaded (listing would load modules), nft always. A complete
 * earlier dump (`known`) answers without a launch; one that failed or stopped early does not.
 */
export async function otherBackendPresent(
  other: IptablesMode,
  family: Family,
  deps: DetectionDeps = hostDetectionDeps,
  known?: LegacyDump,
): Promise<boolean> {
  if (other === "nft") return true;
  const hasNat = (dump: LegacyDump) => dump.tables.includes("nat");
  if (known && known.failure === undefined && !known.hint) return hasNat(known);
  return hasNat(await dumpLegacy(deps.scan ?? scanViaExec(deps.exec), family, hasNat));
}
