/**
 * Choosing the iptables backend on this node, once at start: gathers the
 * evidence that the pure rule in `iptables/mode.ts` asks for, one probe
 * at a time, and stops as soon as it decides. On a node with kubelet's hint
 * chain in the nft backend that is one `iptables-nft -t mangle -S` launch.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import {
  decideMode,
  type IptablesMode,
  kubeletHintChains,
  type ModeDecision,
  type ModeEvidence,
} from "./mode.ts";
import { denoExec, denoScanExec, type Exec, type ScanExec, scanViaExec } from "../base/exec.ts";
import { chainExists, countRules, dumpLegacy } from "./client.ts";

/** What the detection needs from the host: a way to run the iptables tools. */
export interface DetectionDeps {
  /** Runs the iptables tools that answer the questions. */
  readonly exec: Exec;
  /** Streams a legacy dump without keeping it; `exec`'s whole output as one chunk if absent. */
  readonly scan?: ScanExec;
}

/** The host as it is: real processes. */
export const hostDetectionDeps: DetectionDeps = { exec: denoExec, scan: denoScanExec };

function scanOf(deps: DetectionDeps): ScanExec {
  return deps.scan ?? scanViaExec(deps.exec);
}

/** The tables whose nft rules the last resort counts: where kube-proxy, Docker and CNIs write. */
const countedTables = ["nat", "filter", "mangle"] as const;

async function hintIn(
  deps: DetectionDeps,
  mode: IptablesMode,
  family: Family,
  failures: string[],
) {
  for (const chain of kubeletHintChains) {
    if (await chainExists(deps.exec, mode, family, "mangle", chain, failures)) return true;
  }
  return false;
}

/**
 * `--iptables-mode`: `nft` and `legacy` are taken as given; `auto` asks the
 * node (kubelet's hint chain, then which backend holds rules).
 */
export async function chooseMode(
  flag: "auto" | IptablesMode,
  deps: DetectionDeps = hostDetectionDeps,
): Promise<ModeDecision> {
  if (flag !== "auto") return { mode: flag, evidence: `--iptables-mode=${flag}` };
  let evidence: ModeEvidence = {};
  const readFailures: string[] = [];
  for (;;) {
    const step = decideMode(evidence);
    switch (step.kind) {
      case "decided":
        return step.decision;
      case "probe-nft-hint": {
        const found = await hintIn(deps, "nft", step.family, readFailures);
        evidence = {
          ...evidence,
          nftHint: { ...evidence.nftHint, [step.family]: found },
          readFailures: [...readFailures],
        };
        break;
      }
      case "dump-legacy": {
        // Stops reading once kubelet's hint is seen: that decides (legacy).
        const dump = await dumpLegacy(scanOf(deps), step.family, (read) => read.hint);
        evidence = { ...evidence, legacy: { ...evidence.legacy, [step.family]: dump } };
        break;
      }
      case "count-nft-rules": {
        const nftRules = await countRules(deps.exec, "nft", "ipv4", countedTables, readFailures);
        evidence = { ...evidence, nftRules, readFailures: [...readFailures] };
        break;
      }
    }
  }
}

/**
 * Whether the backend we did not choose may hold rules of ours, asked
 * without side effects: legacy only where its nat table is already loaded
 * (listing it would load the modules), nft always (listing creates nothing).
 */
export async function otherBackendPresent(
  other: IptablesMode,
  family: Family,
  deps: DetectionDeps = hostDetectionDeps,
): Promise<boolean> {
  if (other === "nft") return true;
  const dump = await dumpLegacy(scanOf(deps), family, (read) => read.tables.includes("nat"));
  return dump.tables.includes("nat");
}
