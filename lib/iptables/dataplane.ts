/**
 * Applying a desired state: read only what is ours in each family's nat
 * table (POSTROUTING and our chain), plan with the pure core, and write the
 * one transaction that fixes what differs (or nothing).
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import type { DesiredChain } from "../policy/chain.ts";
import { ForeignChainError } from "../base/errors.ts";
import {
  foreignRuleOf,
  type LiveNatTable,
  ownJumpTargets,
  parseNatTable,
  type Plan,
  planCleanup,
  planReconcile,
  type ReconcileOptions,
} from "./plan.ts";
import type { NatTableClient } from "./client.ts";
import { type Dataplane, type DataplanePlan, inSync } from "../policy/dataplane.ts";

/**
 * What the last reconcile of each family found in sync: the desired chain
 * and the exact listing of POSTROUTING and our chain that matched it. When
 * both are the same again, the listing is not parsed or compared: a steady
 * resync costs the two reads. Any change of either takes the full path.
 */
export type VerifiedListings = Map<Family, { desired: DesiredChain; listing: OurListings }>;

/**
 * `-S POSTROUTING` and `-S <our chain>` as read, kept apart: comparing them
 * apart never copies our chain's listing (1.4 MB at 10,000 CIDRs) into a
 * joined string, which in a steady resync was most of the garbage to collect.
 */
export type OurListings = readonly [postrouting: string, chain: string];

function sameListings(a: OurListings, b: OurListings): boolean {
  return a[0] === b[0] && a[1] === b[1];
}

/**
 * Lists POSTROUTING and `chain`: two cheap reads whatever else the table
 * holds (kube-proxy's tens of thousands of rules live in other chains). What
 * the reconcile, `--check` and `--explain` read.
 */
export async function listOurs(
  client: NatTableClient,
  chain: string,
  signal?: AbortSignal,
): Promise<OurListings> {
  const postrouting = await client.listChain("POSTROUTING", signal) ?? "";
  const ours = await client.listChain(chain, signal) ?? "";
  return [postrouting, ours];
}

/**
 * The live state to plan against: what {@link listOurs} read, or the whole
 * table when a POSTROUTING jump of ours leads to another chain (an earlier
 * `--masq-chain`), whose removal must know whether anything else refers to it.
 */
async function liveFrom(
  client: NatTableClient,
  chain: string,
  listing: OurListings,
  signal?: AbortSignal,
  othersChains?: ReadonlySet<string>,
): Promise<LiveNatTable> {
  const live = parseNatTable(listing.join(""));
  const stale = [...ownJumpTargets(live)].some((target) =>
    target !== chain && !othersChains?.has(target)
  );
  // Refused before the whole table is read: another tool's chain is never ours to plan.
  const foreign = foreignRuleOf(live, chain);
  if (foreign !== undefined) throw new ForeignChainError(chain, client.family, foreign);
  return stale ? parseNatTable(await client.listTable(signal)) : live;
}

/** Reads what is ours in the family's nat table and plans what would bring it to `desired`. */
export async function planFamily(
  desired: DesiredChain,
  client: NatTableClient,
  signal?: AbortSignal,
  verified?: VerifiedListings,
  options: ReconcileOptions = {},
): Promise<Plan> {
  const listing = await listOurs(client, desired.chain, signal);
  const last = verified?.get(desired.family);
  if (last?.desired === desired && sameListings(last.listing, listing)) return inSync;
  const live = await liveFrom(client, desired.chain, listing, signal, options.othersChains);
  const plan = planReconcile(desired, live, options);
  if (plan.payload === null) verified?.set(desired.family, { desired, listing });
  else verified?.delete(desired.family);
  return plan;
}

/**
 * What removing our jumps and chains from one family of a backend would
 * write, touching nothing else. It reads POSTROUTING and `chain` first and
 * the whole table only when something of ours is there, so a backend without
 * our rules costs two cheap reads.
 */
export async function planRemoval(
  client: NatTableClient,
  chain: string,
  signal?: AbortSignal,
): Promise<Plan> {
  const ours = parseNatTable((await listOurs(client, chain, signal)).join(""));
  if (ownJumpTargets(ours).size === 0 && !ours.chains.has(chain)) return inSync;
  const foreign = foreignRuleOf(ours, chain);
  if (foreign !== undefined) throw new ForeignChainError(chain, client.family, foreign);
  return planCleanup(chain, parseNatTable(await client.listTable(signal)), client.family);
}

/**
 * The iptables dataplane of one backend: our chain and POSTROUTING jump
 * through that backend's tools. A steady resync is two listings per family,
 * not even parsed when they are what the last reconcile verified.
 */
export function iptablesDataplane(
  clients: Readonly<Record<Family, NatTableClient>>,
  chain: string,
  label = `iptables (${clients.ipv4.mode})`,
  onAnotherAgent: AnotherAgentHandler = () => {},
): Dataplane {
  const verified: VerifiedListings = new Map();
  // A chain of ours under another name is removed once; when it comes back, another
  // ip-masq-agent on the node manages it, and removing it again would start a tug of war.
  const removed: Record<Family, Set<string>> = { ipv4: new Set(), ipv6: new Set() };
  const others: Record<Family, Set<string>> = { ipv4: new Set(), ipv6: new Set() };
  const plan = async (desired: DesiredChain, signal?: AbortSignal): Promise<DataplanePlan> => {
    const { family } = desired;
    const client = clients[family];
    const first = await planFamily(desired, client, signal, verified, {
      othersChains: others[family],
    });
    const back = staleChainsOf(first).filter((name) => removed[family].has(name));
    if (back.length === 0) return first;
    for (const name of back) {
      others[family].add(name);
      onAnotherAgent(family, name);
    }
    return await planFamily(desired, client, signal, verified, { othersChains: others[family] });
  };
  return {
    label,
    plan,
    apply: async (family, plan, signal) => {
      if (plan.payload === null) return;
      await clients[family].restore(plan.payload, signal);
      for (const name of staleChainsOf(plan)) removed[family].add(name);
    },
    planRemoval: (family, signal) => planRemoval(clients[family], chain, signal),
  };
}

/** Told once per chain and family when a chain of ours we removed came back. */
export type AnotherAgentHandler = (family: Family, chain: string) => void;

function staleChainsOf(plan: DataplanePlan): string[] {
  return plan.drift.flatMap((drift) =>
    drift.kind === "stale-chain" && drift.chain !== undefined ? [drift.chain] : []
  );
}
