/**
 * The iptables {@link Dataplane}: reads POSTROUTING and our chain, writes one fix if they differ.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import {
  type LiveNatTable,
  ownJumpTargets,
  parseNatTable,
  type Plan,
  planCleanup,
  planReconcile,
  refuseForeignChain,
} from "./plan.ts";
import type { NatTableClient } from "./client.ts";
import { type Dataplane, inSync, VerifiedReads } from "../policy/dataplane.ts";

/**
 * What the last reconcile of each family found in sync (desired chain and exact listing): when
 * both are the same again nothing is parsed or compared, so a steady resync costs two reads.
 */
export type VerifiedListings = VerifiedReads<OurListings>;

/** An empty {@link VerifiedListings}. */
export function verifiedListings(): VerifiedListings {
  return new VerifiedReads((a, b) => a[0] === b[0] && a[1] === b[1]);
}

/**
 * `-S POSTROUTING` and `-S <our chain>`, kept apart: joining them copied our chain's listing
 * (1.4 MB at 10,000 CIDRs), most of a steady resync's garbage.
 */
export type OurListings = readonly [postrouting: string, chain: string];

/** Lists POSTROUTING and `chain`: two cheap reads however big the rest of the table is. */
export async function listOurs(
  client: NatTableClient,
  chain: string,
  signal?: AbortSignal,
): Promise<OurListings> {
  return [
    await client.listChain("POSTROUTING", signal) ?? "",
    await client.listChain(chain, signal) ?? "",
  ];
}

/** What the iptables dataplane read of one family. */
export interface IptablesLive {
  /**
   * POSTROUTING and our chain; the whole table when a jump of ours leads to an earlier chain (its
   * removal must know what refers to it); undefined when already verified.
   */
  readonly table?: LiveNatTable;
  /** Chains of ours under another name that another ip-masq-agent manages: left alone. */
  readonly othersChains: ReadonlySet<string>;
}

/**
 * The iptables dataplane of one backend: our chain and POSTROUTING jump via its tools.
 * `onAnotherAgent` is told once per chain and family when a chain of ours we removed came back.
 */
export function iptablesDataplane(
  clients: Readonly<Record<Family, NatTableClient>>,
  chain: string,
  label = `iptables (${clients.ipv4.mode})`,
  onAnotherAgent: (family: Family, chain: string) => void = () => {},
  verified: VerifiedListings = verifiedListings(),
): Dataplane<IptablesLive, Plan> {
  // A chain of ours under another name is removed once; when it comes back, another
  // ip-masq-agent on the node manages it, and removing it again would start a tug of war.
  const removed: Record<Family, Set<string>> = { ipv4: new Set(), ipv6: new Set() };
  const others: Record<Family, Set<string>> = { ipv4: new Set(), ipv6: new Set() };
  return {
    label,
    read: async (desired, signal) => {
      const { family } = desired;
      const listing = await listOurs(clients[family], desired.chain, signal);
      if (verified.read(family, desired, listing)) return { othersChains: others[family] };
      const ours = parseNatTable(listing.join(""));
      // Refused before the whole table is read: another tool's chain is never ours to plan.
      refuseForeignChain(ours, desired.chain, family);
      const staleTargets = [...ownJumpTargets(ours)].filter((target) => target !== desired.chain);
      for (const target of staleTargets) {
        if (!removed[family].has(target) || others[family].has(target)) continue;
        others[family].add(target);
        onAnotherAgent(family, target);
      }
      const stale = staleTargets.some((target) => !others[family].has(target));
      const table = stale ? parseNatTable(await clients[family].listTable(signal)) : ours;
      return { table, othersChains: new Set(others[family]) };
    },
    plan: (desired, live) =>
      live.table === undefined
        ? inSync
        : planReconcile(desired, live.table, { othersChains: live.othersChains }),
    readForRemoval: async (family, signal) => {
      const ours = parseNatTable((await listOurs(clients[family], chain, signal)).join(""));
      refuseForeignChain(ours, chain, family); // a no-op without our chain
      const nothingOurs = ownJumpTargets(ours).size === 0 && !ours.chains.has(chain);
      const table = nothingOurs ? ours : parseNatTable(await clients[family].listTable(signal));
      return { table, othersChains: new Set<string>() };
    },
    // With nothing of ours, planCleanup plans nothing either (no drift, no payload).
    planRemoval: (family, live) => planCleanup(chain, live.table!, family),
    apply: async (family, plan, signal) => {
      verified.settle(family, plan.payload !== null);
      if (plan.payload === null) return;
      await clients[family].restore(plan.payload, signal);
      for (const { kind, chain: name } of plan.drift) {
        if (kind === "stale-chain" && name !== undefined) removed[family].add(name);
      }
    },
  };
}
