/**
 * The dataplane seam: what the reconcile loop, `--check` and `--cleanup`
 * drive, without knowing which one it is. A dataplane reads what is ours for
 * one family, plans against the desired state, and applies the plan; the
 * iptables one wraps reconcile.ts (POSTROUTING and our chain, one
 * `iptables-restore` transaction), the nftables one our own table (one
 * `nft -j list table`, one `nft -f` transaction).
 *
 * {@link switchingDataplane} composes the chosen dataplane with the ones the
 * node may still carry rules of (the other dataplane, after a switch): each
 * reconcile installs the chosen one's rules first and removes the others'
 * right after, in the same reconcile, until a read finds nothing of ours
 * there; from then on only the chosen dataplane is read.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import type { DesiredChain } from "../iptables/render.ts";
import { parseNftTable } from "../nftables/parse.ts";
import { planNftReconcile, planNftRemoval } from "../nftables/plan.ts";
import { type NftDesired, nftDesired } from "../nftables/render.ts";
import { IptablesError, type NatTableClient } from "../iptables/client.ts";
import type { NftClient } from "../nftables/client.ts";
import { planFamily, planRemoval, type VerifiedListings } from "../iptables/dataplane.ts";

/** The dataplanes `--dataplane` chooses from. */
export type DataplaneName = "iptables" | "nftables";

/** One difference found, for the logs and `--check`. */
export interface DataplaneDrift {
  /** The dataplane's own name for the kind of difference. */
  readonly kind: string;
  /** What differs, in words an operator can act on. */
  readonly message: string;
}

/** What a read found and what would fix it; a dataplane may attach what it needs to apply. */
export interface DataplanePlan {
  /** What differs; empty means in sync. */
  readonly drift: readonly DataplaneDrift[];
  /** The transaction's input, or null when nothing is to be written. */
  readonly payload: string | null;
}

/** What one family's reconcile found and did. */
export interface FamilyOutcome {
  /** The family reconciled. */
  readonly family: Family;
  /** What was found, and what was written (`payload`), if anything. */
  readonly plan: DataplanePlan;
}

/** One dataplane: read our live state of a family, plan, apply. */
export interface Dataplane {
  /** For messages: `nftables`, `iptables (nft)`, ... */
  readonly label: string;
  /** Reads what is ours in `desired.family` and plans what brings it to `desired`. */
  plan(desired: DesiredChain, signal?: AbortSignal): Promise<DataplanePlan>;
  /** Writes a plan this dataplane made; nothing when its payload is null. */
  apply(family: Family, plan: DataplanePlan, signal?: AbortSignal): Promise<void>;
  /** Reads what is ours in `family` and plans removing all of it, touching nothing else. */
  planRemoval(family: Family, signal?: AbortSignal): Promise<DataplanePlan>;
}

const inSync: DataplanePlan = { drift: [], payload: null };

/**
 * Plans every family, then applies the plans: the one reconcile step of the loop. Planning all
 * first means a family that cannot be planned (another tool's chain under `--masq-chain`) stops
 * the reconcile before anything is written for any family.
 */
export async function applyDesired(
  desired: readonly DesiredChain[],
  dataplane: Dataplane,
  signal?: AbortSignal,
): Promise<FamilyOutcome[]> {
  const outcomes: FamilyOutcome[] = [];
  for (const chain of desired) {
    outcomes.push({ family: chain.family, plan: await dataplane.plan(chain, signal) });
  }
  for (const { family, plan } of outcomes) {
    if (plan.payload !== null) await dataplane.apply(family, plan, signal);
  }
  return outcomes;
}

/** Plans and applies the removal of everything of ours in `family`. */
export async function removeAll(
  dataplane: Dataplane,
  family: Family,
  signal?: AbortSignal,
): Promise<DataplanePlan> {
  const plan = await dataplane.planRemoval(family, signal);
  if (plan.payload !== null) await dataplane.apply(family, plan, signal);
  return plan;
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
    drift.kind === "stale-chain" && "chain" in drift && typeof drift.chain === "string"
      ? [drift.chain]
      : []
  );
}

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

/**
 * A node without the retired dataplane's tools has no rules of ours there.
 * Any other failure to read it is reported and leaves it to the next
 * reconcile: the chosen dataplane's own rules never wait for the other one.
 */
async function retiredRemoval(
  dataplane: Dataplane,
  family: Family,
  onError: RetiredErrorHandler,
  signal?: AbortSignal,
): Promise<DataplanePlan | undefined> {
  try {
    return await dataplane.planRemoval(family, signal);
  } catch (error) {
    if (error instanceof IptablesError && error.failure === "missing") return inSync;
    if (signal?.aborted) throw error;
    onError(dataplane.label, family, error);
    return undefined;
  }
}

/** Told when a retired dataplane could not be read or cleaned (the agent logs a warning). */
export type RetiredErrorHandler = (label: string, family: Family, error: unknown) => void;

/** A composite plan: the chosen dataplane's, then the removals from the retired ones. */
interface SwitchingPlan extends DataplanePlan {
  readonly parts: readonly { readonly dataplane: Dataplane; readonly plan: DataplanePlan }[];
}

/**
 * `chosen`, plus the removal of our rules from each of `retired` in the same
 * reconcile, after `chosen`'s own write: the node is never without masquerade
 * rules. A retired dataplane found empty for a family is not read again for
 * it; the drift of a removal names the dataplane it came from.
 */
export function switchingDataplane(
  chosen: Dataplane,
  retired: readonly Dataplane[],
  onRetiredError: RetiredErrorHandler = () => {},
): Dataplane {
  if (retired.length === 0) return chosen;
  const clean = new Map<Dataplane, Set<Family>>(retired.map((dataplane) => [dataplane, new Set()]));
  return {
    label: chosen.label,
    plan: async (desired, signal) => {
      const own = await chosen.plan(desired, signal);
      const parts = [{ dataplane: chosen, plan: own }];
      for (const dataplane of retired) {
        if (clean.get(dataplane)?.has(desired.family)) continue;
        const removal = await retiredRemoval(dataplane, desired.family, onRetiredError, signal);
        if (removal === undefined) continue;
        if (removal.payload === null) clean.get(dataplane)?.add(desired.family);
        else parts.push({ dataplane, plan: removal });
      }
      if (parts.length === 1) return own;
      const plan: SwitchingPlan = {
        drift: parts.flatMap(({ dataplane, plan }) =>
          plan.drift.map((drift) =>
            dataplane === chosen
              ? drift
              : { kind: drift.kind, message: `${dataplane.label}: ${drift.message}` }
          )
        ),
        payload: parts.map((part) => part.plan.payload ?? "").join(""),
        parts,
      };
      return plan;
    },
    apply: async (family, plan, signal) => {
      const parts = (plan as Partial<SwitchingPlan>).parts;
      if (!parts) return await chosen.apply(family, plan, signal);
      for (const part of parts) {
        if (part.dataplane === chosen) {
          await chosen.apply(family, part.plan, signal);
          continue;
        }
        try {
          await part.dataplane.apply(family, part.plan, signal);
          clean.get(part.dataplane)?.add(family);
        } catch (error) {
          if (signal?.aborted) throw error;
          onRetiredError(part.dataplane.label, family, error);
        }
      }
    },
    planRemoval: (family, signal) => chosen.planRemoval(family, signal),
  };
}
