/**
 * The dataplane seam the loop, `--check`, `--explain` and `--cleanup` drive without knowing which
 * one it is: read what is ours for one family, plan purely, apply (only the loop and `--cleanup`).
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import type { DesiredChain } from "./chain.ts";
import { ToolError } from "../base/tool.ts";

/** The dataplanes `--dataplane` chooses from. */
export type DataplaneName = "iptables" | "nftables";

/** One difference found, for the logs and `--check`. */
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
 * How a chain's rules differ from the wanted ones, in both dataplanes' words; undefined when the
 * same. `show` writes one rule for a message.
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

/** One dataplane: `Live` is what its reads return, `Plan` what its plans make. */
export interface Dataplane<Live = unknown, Plan extends DataplanePlan = DataplanePlan> {
  /** For messages: `nftables`, `iptables (nft)`, ... */
  readonly label: string;
  /** Reads what planning needs; throws `ForeignChainError` on another tool's chain. */
  read(desired: DesiredChain, signal?: AbortSignal): Promise<Live>;
  /** What brings `live` to `desired`. Pure: no reads, no writes. */
  plan(desired: DesiredChain, live: Live): Plan;
  /** Reads what is ours in `family`, and what its removal must know about the rest. */
  readForRemoval(family: Family, signal?: AbortSignal): Promise<Live>;
  /** What removes everything of ours `live` shows, touching nothing else. Pure. */
  planRemoval(family: Family, live: Live): Plan;
  /** Writes the plan's transaction, if any, and remembers what was in sync (VerifiedReads). */
  apply(family: Family, plan: Plan, signal?: AbortSignal): Promise<void>;
}

/**
 * Per family, the desired chain and the bytes a read found in sync with it: a read of the same
 * bytes for the same desired object (kept while the config is unchanged) skips parsing, so a
 * steady resync costs the reads only.
 */
export class VerifiedReads<Listing> {
  readonly #verified = new Map<Family, { desired: DesiredChain; listing: Listing }>();
  readonly #lastRead = new Map<Family, { desired: DesiredChain; listing: Listing }>();

  /** `same` compares two listings. */
  constructor(private readonly same: (a: Listing, b: Listing) => boolean) {}

  /** Records a read; true when it is what was verified for `desired`. */
  read(family: Family, desired: DesiredChain, listing: Listing): boolean {
    this.#lastRead.set(family, { desired, listing });
    const last = this.#verified.get(family);
    return last !== undefined && last.desired === desired && this.same(last.listing, listing);
  }

  /** Forgets the last read of `family` (nothing to verify: our table is missing). */
  forget(family: Family): void {
    this.#lastRead.delete(family);
  }

  /** After an apply: the last read is verified when nothing was written. */
  settle(family: Family, wrote: boolean): void {
    const read = this.#lastRead.get(family);
    this.#lastRead.delete(family);
    if (wrote) this.#verified.delete(family);
    else if (read !== undefined) this.#verified.set(family, read);
  }

  /** What is verified for `family`, for tests and logs. */
  get(family: Family): { readonly desired: DesiredChain; readonly listing: Listing } | undefined {
    return this.#verified.get(family);
  }

  /** How many families are verified. */
  get size(): number {
    return this.#verified.size;
  }
}

/** The plan of a family that is in sync: nothing differs, nothing to write. */
export const inSync: DataplanePlan<never> = { drift: [], payload: null };

/** Reads `desired.family` and plans: what `--check` and `--explain` ask, writing nothing. */
export async function readAndPlan<Plan extends DataplanePlan>(
  dataplane: Dataplane<unknown, Plan>,
  desired: DesiredChain,
  signal?: AbortSignal,
): Promise<Plan> {
  return dataplane.plan(desired, await dataplane.read(desired, signal));
}

/** Reads `family` and plans removing all of ours there, writing nothing. */
export async function readAndPlanRemoval<Plan extends DataplanePlan>(
  dataplane: Dataplane<unknown, Plan>,
  family: Family,
  signal?: AbortSignal,
): Promise<Plan> {
  return dataplane.planRemoval(family, await dataplane.readForRemoval(family, signal));
}

/** Plans every family, then applies: one that cannot be planned stops all before any write. */
export async function applyDesired(
  desired: readonly DesiredChain[],
  dataplane: Dataplane,
  signal?: AbortSignal,
): Promise<FamilyOutcome[]> {
  const outcomes: FamilyOutcome[] = [];
  for (const chain of desired) {
    outcomes.push({ family: chain.family, plan: await readAndPlan(dataplane, chain, signal) });
  }
  for (const { family, plan } of outcomes) await dataplane.apply(family, plan, signal);
  return outcomes;
}

/** Plans and applies the removal of all of ours in `family` (e.g. the unused iptables backend). */
export async function removeAll(
  dataplane: Dataplane,
  family: Family,
  signal?: AbortSignal,
): Promise<DataplanePlan> {
  const plan = await readAndPlanRemoval(dataplane, family, signal);
  if (plan.payload !== null) await dataplane.apply(family, plan, signal);
  return plan;
}

/** What a composite read found. */
export interface SwitchingLive {
  /** The chosen dataplane's read. */
  readonly chosen: unknown;
  /** The retired dataplanes read this time (not yet found clean), and their reads. */
  readonly retired: readonly { readonly dataplane: Dataplane; readonly value: unknown }[];
}

/** A composite plan: the chosen dataplane's, then the removals from the retired ones. */
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
 * `chosen`, plus removing our rules from each of `retired` after `chosen`'s write, so the node is
 * never without masquerade rules. A retired dataplane found empty (or without tools) is not read
 * again; other failures go to `onRetiredError` and wait for the next reconcile.
 */
export function switchingDataplane(
  chosen: Dataplane,
  retired: readonly Dataplane[],
  onRetiredError: (label: string, family: Family, error: unknown) => void = () => {},
): Dataplane<SwitchingLive, SwitchingPlan> {
  const clean = new Map<Dataplane, Set<Family>>(retired.map((dataplane) => [dataplane, new Set()]));
  return {
    label: chosen.label,
    read: async (desired, signal) => {
      const live = await chosen.read(desired, signal);
      const { family } = desired;
      const parts: SwitchingLive["retired"][number][] = [];
      for (const dataplane of retired) {
        if (clean.get(dataplane)?.has(family)) continue;
        try {
          parts.push({ dataplane, value: await dataplane.readForRemoval(family, signal) });
        } catch (error) {
          if (error instanceof ToolError && error.failure === "missing") {
            clean.get(dataplane)?.add(family);
          } else if (signal?.aborted) throw error;
          else onRetiredError(dataplane.label, family, error);
        }
      }
      return { chosen: live, retired: parts };
    },
    plan: (desired, live) =>
      switchingPlan(chosen, [
        { dataplane: chosen, plan: chosen.plan(desired, live.chosen) },
        ...live.retired.flatMap(({ dataplane, value }) => {
          try {
            return [{ dataplane, plan: dataplane.planRemoval(desired.family, value) }];
          } catch (error) {
            onRetiredError(dataplane.label, desired.family, error);
            return [];
          }
        }),
      ]),
    readForRemoval: async (family, signal) => ({
      chosen: await chosen.readForRemoval(family, signal),
      retired: [],
    }),
    planRemoval: (family, live) =>
      switchingPlan(chosen, [{ dataplane: chosen, plan: chosen.planRemoval(family, live.chosen) }]),
    apply: async (family, { parts: [own, ...retiredParts] }, signal) => {
      await chosen.apply(family, own.plan, signal);
      for (const { dataplane, plan } of retiredParts) {
        try {
          if (plan.payload !== null) await dataplane.apply(family, plan, signal);
          clean.get(dataplane)?.add(family);
        } catch (error) {
          if (signal?.aborted) throw error;
          onRetiredError(dataplane.label, family, error);
        }
      }
    },
  };
}
