/**
 * `--explain=DEST[,DEST...]` on the node: explain.ts per destination, against only what `--check`
 * reads (POSTROUTING and our chain; with `--dataplane=nftables`, our table judged by its planner);
 * an unreadable table (not root, tools missing) leaves the config's answer with the reason.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import { desiredChains } from "../policy/desired.ts";
import { exitCodes, formatErrorChain } from "../base/errors.ts";
import { explain, explanationObject, formatExplanation, type LiveTableView } from "./explain.ts";
import type { IptablesMode } from "../iptables/mode.ts";
import { parseNatTable } from "../iptables/plan.ts";
import type { DesiredChain } from "../policy/chain.ts";
import { type Dataplane, readAndPlan } from "../policy/dataplane.ts";
import { nftablesDataplane } from "../nftables/dataplane.ts";
import { listOurs } from "../iptables/dataplane.ts";
import { type NatTableClient, natTableClient } from "../iptables/client.ts";
import { nftClient } from "../nftables/client.ts";
import { chooseMode, hostDetectionDeps } from "../iptables/mode_detection.ts";
import { probeRandomFully } from "./netfilter.ts";
import { load, type ModeDeps } from "./one_shot.ts";

/** The node's live iptables tables, as `--explain` reads them. */
export interface LiveTables {
  /** The backend the agent would program (`--iptables-mode`, detected as at start). */
  readonly mode: IptablesMode;
  /** One nat table client per family. */
  readonly clients: Readonly<Record<Family, NatTableClient>>;
  /** Whether each family's iptables knows `--random-fully` (it shapes our chain's text). */
  readonly randomFullySupported: Readonly<Record<Family, boolean>>;
}

/** Opens the node's tables as the agent would: `--iptables-mode` and the `--random-fully` probe. */
export function nodeTables(flags: ModeDeps["flags"]): () => Promise<LiveTables> {
  return async () => {
    const { mode } = await chooseMode(flags.iptablesMode);
    return {
      mode,
      clients: { ipv4: natTableClient("ipv4", mode), ipv6: natTableClient("ipv6", mode) },
      randomFullySupported: await probeRandomFully(flags, undefined, mode, hostDetectionDeps),
    };
  };
}

/** Prints one answer per destination (text, or one JSON object each); exit 0. */
export async function explainMode(
  deps: ModeDeps,
  openLive: () => Promise<LiveTables>,
  openNft: () => Dataplane = () => nftablesDataplane(nftClient()),
): Promise<number> {
  const { flags } = deps;
  const nftables = flags.dataplane === "nftables";
  const loaded = await load(deps);
  for (const finding of loaded.findings) deps.log.warn(finding.message, { finding: finding.kind });
  const opening = nftables ? undefined : openLive();
  // Without the probe, render --random-fully as the flag says (as --dry-run does).
  const opened = await opening?.catch(() => undefined);
  const supported = opened?.randomFullySupported ?? { ipv4: true, ipv6: true };
  const desired = desiredChains(loaded.effective, flags, supported);

  const readView = async (chain: DesiredChain): Promise<LiveTableView> => {
    try {
      if (nftables) {
        const plan = await readAndPlan(openNft(), chain);
        return { kind: "planned", backend: "nftables", drift: plan.drift.map((d) => d.message) };
      }
      const tables = await opening!; // rethrows why the tables could not be opened
      const listed = await listOurs(tables.clients[chain.family], flags.masqChain);
      return {
        kind: "read",
        backend: `${chain.family === "ipv4" ? "iptables" : "ip6tables"} ${tables.mode}`,
        table: parseNatTable(listed.join("")),
      };
    } catch (error) {
      const what = nftables ? "our nftables table" : "the live nat table";
      return { kind: "unavailable", reason: `cannot read ${what}: ${formatErrorChain(error)}` };
    }
  };
  // Each family's table is read once, whatever the number of destinations.
  const views = new Map<Family, LiveTableView>();
  const json = flags.logFormat === "json";
  for (const destination of flags.explain) {
    const chain = desired.find((candidate) => candidate.family === destination.family);
    if (chain && !views.has(chain.family)) views.set(chain.family, await readView(chain));
    const answer = explain({
      effective: loaded.effective,
      desired,
      destination,
      source: flags.explainSource,
      live: views.get(destination.family),
      dataplane: flags.dataplane,
    });
    deps.print(json ? JSON.stringify(explanationObject(answer)) : formatExplanation(answer));
  }
  return exitCodes.ok;
}
