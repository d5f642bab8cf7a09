/**
 * The dataplane seam: what the reconcile loop, `--check` and `--cleanup`
 * drive, without knowing which one it is. A dataplane reads what is ours for
 * one family, plans against the desired state, and applies the plan; the
 * iptables one (iptables/dataplane.ts) reads POSTROUTING and our chain and writes
 * one `iptables-restore` transaction, the nftables one (nftables/dataplane.ts)
 * our own table (one `nft -j list table`, one `nft -f` transaction).
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
import type { DesiredChain } from "./chain.ts";
import { ToolError } from "../base/tool.ts";

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

/** The plan of a family that is in sync: nothing differs, nothing to write. */
export const inSync: DataplanePlan = { drift: [], payload: null };

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
    if (error instanceof ToolError && error.failure === "missing") return inSync;
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
