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

/** One difference found, for the logs and `--check`; `Kind` is the dataplane's own words. */
export interface DataplaneDrift<Kind extends string = string> {
  /** The dataplane's own name for the kind of difference. */
  readonly kind: Kind;
  /** What differs, in words an operator can act on; text read from the node is quoted. */
  readonly message: string;
  /** iptables `stale-chain`: the chain of ours under another name that the plan removes. */
  readonly chain?: string;
}

/** What a read found and the one transaction that fixes all of it. */
export interface DataplanePlan<Kind extends string = string> {
  /** What differs; empty means in sync. */
  readonly drift: readonly DataplaneDrift<Kind>[];
  /** The transaction's input, or null when nothing is to be written. */
  readonly payload: string | null;
}

/**
 * How the rules a chain holds differ from the wanted ones, as both dataplanes say it:
 * `N missing: ...; M unexpected: ...` (three shown, then how many more), `rules out of order`,
 * or undefined when they are the same. `show` writes one rule for a message.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ruleListDifference } from "./dataplane.ts";
 *
 * const show = (rule: string) => rule;
 * assert.equal(ruleListDifference(["a", "b"], ["a", "b"], show), undefined);
 * assert.equal(ruleListDifference(["a", "b"], ["b", "a"], show), "rules out of order");
 * assert.equal(ruleListDifference(["a", "b"], ["a", "c"], show), "1 missing: b; 1 unexpected: c");
 * ```
 */
export function ruleListDifference(
  wanted: readonly string[],
  live: readonly string[],
  show: (rule: string) => string,
): string | undefined {
  if (wanted.length === live.length && wanted.every((rule, index) => rule === live[index])) {
    return undefined;
  }
  // Sets, not Array.includes: a chain may hold tens of thousands of rules.
  const liveSet = new Set(live);
  const wantedSet = new Set(wanted);
  const missing = wanted.filter((rule) => !liveSet.has(rule));
  const unexpected = live.filter((rule) => !wantedSet.has(rule));
  const list = (rules: readonly string[]) =>
    rules.slice(0, 3).map((rule) => show(rule)).join(" | ") +
    (rules.length > 3 ? ` | ... ${rules.length - 3} more` : "");
  const parts: string[] = [];
  if (missing.length > 0) parts.push(`${missing.length} missing: ${list(missing)}`);
  if (unexpected.length > 0) parts.push(`${unexpected.length} unexpected: ${list(unexpected)}`);
  return parts.length > 0 ? parts.join("; ") : "rules out of order";
}

/** What one family's reconcile found and did. */
export interface FamilyOutcome {
  /** The family reconciled. */
  readonly family: Family;
  /** What was found, and what was written (`payload`), if anything. */
  readonly plan: DataplanePlan;
}

/**
 * One dataplane: read our live state of a family and plan, then apply. `Plan` is what its
 * `plan` makes and its `apply` takes (a composite's plan carries its parts).
 *
 * Reading and planning are one call on purpose: what is read depends on what the first read
 * finds (iptables reads the whole nat table only when a stale chain of ours is there, and never
 * after finding another tool's chain under `--masq-chain`), and a steady resync compares the
 * bytes read with the last verified ones before parsing anything. The planning itself is pure
 * and tested apart: `planReconcile` (iptables/plan.ts), `planNftReconcile` (nftables/plan.ts).
 */
export interface Dataplane<Plan extends DataplanePlan = DataplanePlan> {
  /** For messages: `nftables`, `iptables (nft)`, ... */
  readonly label: string;
  /** Reads what is ours in `desired.family` and plans what brings it to `desired`. */
  plan(desired: DesiredChain, signal?: AbortSignal): Promise<Plan>;
  /** Writes a plan this dataplane made; nothing when its payload is null. */
  apply(family: Family, plan: Plan, signal?: AbortSignal): Promise<void>;
  /** Reads what is ours in `family` and plans removing all of it, touching nothing else. */
  planRemoval(family: Family, signal?: AbortSignal): Promise<Plan>;
}

/** The plan of a family that is in sync: nothing differs, nothing to write. */
export const inSync: DataplanePlan<never> = { drift: [], payload: null };

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

/**
 * A composite plan: the chosen dataplane's, then the removals from the retired ones.
 */
export interface SwitchingPlan extends DataplanePlan {
  /** Each dataplane's own plan, the chosen one's first. */
  readonly parts: readonly { readonly dataplane: Dataplane; readonly plan: DataplanePlan }[];
}

function switchingPlan(chosen: Dataplane, parts: SwitchingPlan["parts"]): SwitchingPlan {
  const writes = parts.filter((part) => part.plan.payload !== null);
  return {
    drift: parts.flatMap(({ dataplane, plan }) =>
      plan.drift.map((drift) =>
        dataplane === chosen
          ? drift
          : { kind: drift.kind, message: `${dataplane.label}: ${drift.message}` }
      )
    ),
    // One part's transaction as it is; several under their labels (a comment line in both
    // iptables-restore and nft -f input), so the payload always says what apply writes.
    payload: writes.length <= 1
      ? writes[0]?.plan.payload ?? null
      : writes.map((part) => `# ${part.dataplane.label}\n${part.plan.payload}`).join(""),
    parts,
  };
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
): Dataplane<SwitchingPlan> {
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
      return switchingPlan(chosen, parts);
    },
    apply: async (family, plan, signal) => {
      for (const part of plan.parts) {
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
    planRemoval: async (family, signal) =>
      switchingPlan(chosen, [{
        dataplane: chosen,
        plan: await chosen.planRemoval(family, signal),
      }]),
  };
}
