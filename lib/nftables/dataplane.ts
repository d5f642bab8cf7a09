/**
 * The nftables dataplane on the {@link Dataplane} seam: our own table per
 * family, read with one `nft -j list table`, planned purely (plan.ts) and
 * written with one `nft -f` transaction.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import { type Dataplane, inSync, VerifiedReads } from "../policy/dataplane.ts";
import type { LiveNftRead } from "./parse.ts";
import type { NftClient } from "./client.ts";
import { parseNftTable } from "./parse.ts";
import { type NftPlan, planNftReconcile, planNftRemoval } from "./plan.ts";
import { nftDesired } from "./render.ts";

/**
 * What the nftables dataplane read of one family: our table, parsed; undefined when its bytes are
 * what the last reconcile verified for the same desired chain (not parsed again).
 */
export interface NftablesLive {
  /** Our table as read, or undefined when it was verified and unchanged. */
  readonly table?: LiveNftRead;
}

/**
 * The nftables dataplane: our own table per family. A steady resync is one
 * `nft -j list table` per family, not even parsed when its bytes are what
 * the last reconcile verified.
 */
export function nftablesDataplane(client: NftClient): Dataplane<NftablesLive, NftPlan> {
  const verified = new VerifiedReads<string>((a, b) => a === b);
  const read = async (family: Family, signal?: AbortSignal): Promise<LiveNftRead> => {
    const listing = await client.listTable(family, signal);
    return listing === null ? { kind: "missing" } : parseNftTable(listing, family);
  };
  return {
    label: "nftables",
    read: async (desired, signal) => {
      const { family } = desired;
      const listing = await client.listTable(family, signal);
      if (listing === null) {
        verified.forget(family);
        return { table: { kind: "missing" } };
      }
      if (verified.read(family, desired, listing)) return {};
      return { table: parseNftTable(listing, family) };
    },
    plan: (desired, live) =>
      // A verified read is not planned at all, so the set's intervals (100,000 CIDRs merged) are
      // computed only when the config or our table changed.
      live.table === undefined ? inSync : planNftReconcile(nftDesired(desired), live.table),
    readForRemoval: async (family, signal) => ({ table: await read(family, signal) }),
    planRemoval: (family, live) => planNftRemoval(family, live.table ?? { kind: "missing" }),
    apply: async (family, plan, signal) => {
      verified.settle(family, plan.payload !== null);
      if (plan.payload !== null) await client.apply(plan.payload, signal);
    },
  };
}
