/**
 * `--explain=DEST[,DEST...]`: the one-shot mode that says, per destination,
 * whether traffic is masqueraded and why (cli/explain.ts), and whether the
 * live nat table agrees. It reads the config and, like `--check`, only
 * POSTROUTING and our chain; it writes nothing. When the table cannot be
 * read (not root, tools missing) the config's answer still stands, with the
 * reason the live part is missing. With `--dataplane=nftables` it asks that
 * dataplane's planner whether our table is in sync (then it gives the
 * decision function's answer) rather than tracing nft rules one by one. A
 * config error throws on to main.ts (exit 2), as in every mode.
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
import { randomFullySupport } from "./netfilter.ts";
import { load, type ModeDeps } from "./one_shot.ts";

/** The live iptables tables of the node, as the explain mode reads them. */
export interface LiveTables {
  /** The backend the agent would program (`--iptables-mode`, detected as at start). */
  readonly mode: IptablesMode;
  /** One client per family. */
  readonly clients: Readonly<Record<Family, NatTableClient>>;
  /** Whether each family's iptables knows `--random-fully` (it shapes our chain's text). */
  readonly randomFullySupported: Readonly<Record<Family, boolean>>;
}

/** Opens the node's tables, or throws why it cannot. */
export type OpenLiveTables = () => Promise<LiveTables>;

/**
 * The node's tables as the agent itself would choose them: `--iptables-mode`
 * (detected for `auto`) and the `--random-fully` probe of each enabled family.
 */
export function nodeTables(
  flags: ModeDeps["flags"],
): OpenLiveTables {
  return async () => {
    const { mode } = await chooseMode(flags.iptablesMode);
    const { supported } = await randomFullySupport(flags, mode, hostDetectionDeps);
    return {
      mode,
      clients: { ipv4: natTableClient("ipv4", mode), ipv6: natTableClient("ipv6", mode) },
      randomFullySupported: supported,
    };
  };
}

/**
 * Our nftables table of `family`, judged by the dataplane's own planner (read only, nothing
 * applied): in sync means it renders the desired state, and so the decision function's answer.
 */
async function nftablesView(
  dataplane: Dataplane,
  desired: readonly DesiredChain[],
  family: Family,
): Promise<LiveTableView> {
  const chain = desired.find((candidate) => candidate.family === family);
  if (!chain) return { kind: "unavailable", reason: `${family} is not enabled` };
  try {
    const plan = await readAndPlan(dataplane, chain);
    return { kind: "planned", backend: "nftables", drift: plan.drift.map((item) => item.message) };
  } catch (error) {
    return {
      kind: "unavailable",
      reason: `cannot read our nftables table: ${formatErrorChain(error)}`,
    };
  }
}

/** Prints one answer per destination (text, or one JSON object each); exit 0. */
export async function explainMode(
  deps: ModeDeps,
  openLive: OpenLiveTables,
  openNft: () => Dataplane = () => nftablesDataplane(nftClient()),
): Promise<number> {
  const { flags } = deps;
  const loaded = await load(deps);
  for (const finding of loaded.findings) deps.log.warn(finding.message, { finding: finding.kind });

  let tables: LiveTables | undefined;
  let unavailable = "";
  if (flags.dataplane !== "nftables") {
    try {
      tables = await openLive();
    } catch (error) {
      unavailable = `cannot read the live nat table: ${formatErrorChain(error)}`;
    }
  }
  // Without the probe, render --random-fully as the flag says (as --dry-run does).
  const supported = tables?.randomFullySupported ?? { ipv4: true, ipv6: true };
  const desired = desiredChains(loaded.effective, flags, supported);

  const views = new Map<Family, LiveTableView>();
  const viewOf = async (family: Family): Promise<LiveTableView> => {
    const known = views.get(family);
    if (known) return known;
    let view: LiveTableView;
    if (flags.dataplane === "nftables") view = await nftablesView(openNft(), desired, family);
    else if (!tables) view = { kind: "unavailable", reason: unavailable };
    else {
      const client = tables.clients[family];
      try {
        view = {
          kind: "read",
          backend: `${family === "ipv4" ? "iptables" : "ip6tables"} ${tables.mode}`,
          table: parseNatTable((await listOurs(client, flags.masqChain)).join("")),
        };
      } catch (error) {
        view = {
          kind: "unavailable",
          reason: `cannot read the live nat table: ${formatErrorChain(error)}`,
        };
      }
    }
    views.set(family, view);
    return view;
  };

  for (const destination of flags.explain) {
    const enabled = desired.some((chain) => chain.family === destination.family);
    const explanation = explain({
      effective: loaded.effective,
      desired,
      destination,
      source: flags.explainSource,
      live: enabled ? await viewOf(destination.family) : undefined,
      dataplane: flags.dataplane,
    });
    deps.print(
      flags.logFormat === "json"
        ? JSON.stringify(explanationObject(explanation))
        : formatExplanation(explanation),
    );
  }
  return exitCodes.ok;
}
