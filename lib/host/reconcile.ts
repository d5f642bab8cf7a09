/**
 * Applying a desired state: read the live nat table per family, plan with the
 * pure core, and write the one transaction that fixes what differs (or
 * nothing).
 *
 * @module
 */

import type { Family } from "../core/cidr.ts";
import type { DesiredChain } from "../core/rules.ts";
import { parseNatTable, type Plan, planReconcile } from "../core/ruleset.ts";
import type { NatTableClient } from "./iptables.ts";

export interface FamilyOutcome {
  readonly family: Family;
  readonly plan: Plan;
}

/** Reads the family's nat table once and plans what would bring it to `desired`. */
export async function planFamily(
  desired: DesiredChain,
  client: NatTableClient,
  signal?: AbortSignal,
): Promise<Plan> {
  return planReconcile(desired, parseNatTable(await client.save(signal)));
}

/** Reads each family's nat table once and writes only where the plan says so. */
export async function applyDesired(
  desired: readonly DesiredChain[],
  clients: Readonly<Record<Family, NatTableClient>>,
  signal?: AbortSignal,
): Promise<FamilyOutcome[]> {
  const outcomes: FamilyOutcome[] = [];
  for (const chain of desired) {
    const client = clients[chain.family];
    const plan = await planFamily(chain, client, signal);
    if (plan.payload !== null) await client.restore(plan.payload, signal);
    outcomes.push({ family: chain.family, plan });
  }
  return outcomes;
}
