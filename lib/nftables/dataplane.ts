/**
 * The nftables dataplane on the {@link Dataplane} seam.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import { type Dataplane, inSync, VerifiedReads } from "../policy/dataplane.ts";
import { type LiveNftRead, parseNftTable } from "./parse.ts";
import type { NftClient } from "./client.ts";
import { type NftPlan, planNftReconcile, planNftRemoval } from "./plan.ts";
import { nftDesired } from "./render.ts";

/**
 * The nftables dataplane: a steady resync is one `nft -j list table` per family, unparsed. A read
 * is our table, parsed, or undefined when its bytes are what the last reconcile verified.
 */
export function nftablesDataplane(client: NftClient): Dataplane<LiveNftRead | undefined, NftPlan> {
  const verified = new VerifiedReads<string>((a, b) => a === b);
  const tableOf = (listing: string | null, family: Family): LiveNftRead =>
    listing === null ? { kind: "missing" } : parseNftTable(listing, family);
  return {
    label: "nftables",
    read: async (desired, signal) => {
      const { family } = desired;
      const listing = await client.listTable(family, signal);
      if (listing === null) verified.forget(family);
      else if (verified.read(family, desired, listing)) return undefined;
      return tableOf(listing, family);
    },
    plan: (desired, live) =>
      // A verified read is not planned: the set's intervals (100,000 CIDRs merged) are computed
      // only when the config or our table changed.
      live === undefined ? inSync : planNftReconcile(nftDesired(desired), live),
    readForRemoval: async (family, signal) =>
      tableOf(await client.listTable(family, signal), family),
    planRemoval: (family, live) => planNftRemoval(family, live ?? { kind: "missing" }),
    apply: async (family, plan, signal) => {
      verified.settle(family, plan.payload !== null);
      if (plan.payload !== null) await client.apply(plan.payload, signal);
    },
  };
}
