/**
 * The nftables dataplane on the {@link Dataplane} seam: our own table per
 * family, read with one `nft -j list table`, planned purely (plan.ts) and
 * written with one `nft -f` transaction.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import type { DesiredChain } from "../policy/chain.ts";
import { type Dataplane, inSync } from "../policy/dataplane.ts";
import type { NftClient } from "./client.ts";
import { parseNftTable } from "./parse.ts";
import { planNftReconcile, planNftRemoval } from "./plan.ts";
import { type NftDesired, nftDesired } from "./render.ts";

/**
 * The nftables dataplane: our own table per family. A steady resync is one
 * `nft -j list table` per family, not even parsed when its bytes are what
 * the last reconcile verified.
 */
export function nftablesDataplane(client: NftClient): Dataplane {
  const verified = new Map<Family, { desired: DesiredChain; listing: string }>();
  // The agent keeps the same DesiredChain while the config is unchanged: the set's intervals
  // (100,000 CIDRs merged) are computed once per config, not once per resync.
  const tables = new WeakMap<DesiredChain, NftDesired>();
  const tableFor = (desired: DesiredChain) => {
    let table = tables.get(desired);
    if (!table) tables.set(desired, table = nftDesired(desired));
    return table;
  };
  return {
    label: "nftables",
    plan: async (desired, signal) => {
      const { family } = desired;
      const listing = await client.listTable(family, signal);
      const last = verified.get(family);
      if (listing !== null && last?.desired === desired && last.listing === listing) return inSync;
      const live = listing === null ? { kind: "missing" as const } : parseNftTable(listing, family);
      const plan = planNftReconcile(tableFor(desired), live);
      if (plan.payload === null && listing !== null) verified.set(family, { desired, listing });
      else verified.delete(family);
      return plan;
    },
    apply: async (_family, plan, signal) => {
      if (plan.payload !== null) await client.apply(plan.payload, signal);
    },
    planRemoval: async (family, signal) => {
      const listing = await client.listTable(family, signal);
      verified.delete(family);
      return planNftRemoval(
        family,
        listing === null ? { kind: "missing" } : parseNftTable(listing, family),
      );
    },
  };
}
