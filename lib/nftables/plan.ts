/**
 * Planning one family's nftables reconcile: when only set elements differ (a config change), just
 * those are deleted and added; any other difference replaces the whole table.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import { type AddressInterval, formatInterval } from "../net/intervals.ts";
import type { LiveNftChain, LiveNftRead, LiveNftSet, LiveNftTable } from "./parse.ts";
import {
  nftAddressType,
  nftChainName,
  type NftDesired,
  type NftElementChange,
  nftTableSpec,
  renderNftElementChanges,
  renderNftRemoval,
  renderNftReplace,
  srcnatPriority,
} from "./render.ts";
import { quoteInput } from "../base/quote.ts";
import { type DataplanePlan, ruleListDifference } from "../policy/dataplane.ts";

/** What can differ between our live table and the desired one. */
export type NftDriftKind =
  | "table-missing"
  | "table-unreadable"
  | "table-differs"
  | "elements-differ"
  | "table-present";

/** What a reconcile found and the one `nft -f` transaction that fixes it. */
export type NftPlan = DataplanePlan<NftDriftKind>;

/** Plans the reconcile of one family. Pure: same inputs, same plan. */
export function planNftReconcile(desired: NftDesired, live: LiveNftRead): NftPlan {
  const table = nftTableSpec(desired.family);
  const replace = (kind: NftDriftKind, message: string): NftPlan => ({
    drift: [{ kind, message }],
    payload: renderNftReplace(desired),
  });
  if (live.kind === "missing") return replace("table-missing", `${table} does not exist`);
  if (live.kind === "unreadable") {
    return replace("table-unreadable", `${table} could not be read (${live.reason}); replacing it`);
  }
  const structural = structuralDifferences(desired, live.table);
  if (structural.length > 0) {
    return replace("table-differs", `${table} differs (${summarize(structural)}); replacing it`);
  }
  const changes = desired.sets.flatMap((set) => {
    const elements = live.table.sets.find((candidate) => candidate.name === set.name)?.elements;
    if (!elements || elements.map(key).join() === set.elements.map(key).join()) return [];
    return [elementChange(set.name, elements, set.elements)];
  });
  if (changes.length === 0) return { drift: [], payload: null };
  const message = changes.map((change) => describeChange(desired.family, change)).join("; ");
  return {
    drift: [{ kind: "elements-differ", message }],
    payload: renderNftElementChanges(desired.family, changes),
  };
}

/** Removes our table of `family` when it exists, whatever it holds. */
export function planNftRemoval(family: Family, live: LiveNftRead): NftPlan {
  if (live.kind === "missing") return { drift: [], payload: null };
  return {
    drift: [{ kind: "table-present", message: `removing ${nftTableSpec(family)}` }],
    payload: renderNftRemoval(family),
  };
}

/** Everything but set elements: sets, chains, rules, and nothing else in the table. */
function structuralDifferences(desired: NftDesired, live: LiveNftTable): string[] {
  const differences: string[] = [];
  for (const other of live.others) differences.push(`unexpected ${other}`);
  for (const set of desired.sets) {
    const found = live.sets.find((candidate) => candidate.name === set.name);
    if (!found) differences.push(`set ${set.name} missing`);
    else differences.push(...setDifferences(desired.family, found));
  }
  for (const set of live.sets) {
    if (!desired.sets.some((wanted) => wanted.name === set.name)) {
      differences.push(`unexpected set ${quoteInput(set.name)}`);
    }
  }
  const ours = live.chains.find((chain) => chain.name === nftChainName);
  if (!ours) differences.push(`chain ${nftChainName} missing`);
  else differences.push(...chainDifferences(desired, ours));
  for (const chain of live.chains) {
    if (chain.name !== nftChainName) differences.push(`unexpected chain ${quoteInput(chain.name)}`);
  }
  return differences;
}

function setDifferences(family: Family, set: LiveNftSet): string[] {
  const differences: string[] = [];
  if (set.type !== nftAddressType(family)) {
    differences.push(`set ${set.name} has type ${quoteInput(set.type)}`);
  }
  if (set.flags.length !== 1 || set.flags[0] !== "interval") {
    differences.push(`set ${set.name} has flags ${quoteInput(set.flags.join(","))}`);
  }
  if (set.extras.length > 0) {
    differences.push(`set ${set.name} has ${quoteInput(set.extras.join(","))}`);
  }
  if (set.elements === null) differences.push(`set ${set.name} holds elements we never write`);
  return differences;
}

function chainDifferences(desired: NftDesired, chain: LiveNftChain): string[] {
  const differences: string[] = [];
  const priority = desired.priority ?? srcnatPriority;
  const base = chain.type === "nat" && chain.hook === "postrouting" &&
    chain.priority === priority && chain.policy === "accept";
  if (!base) {
    differences.push(
      priority === srcnatPriority
        ? `chain ${nftChainName} is not a nat postrouting srcnat chain`
        : `chain ${nftChainName} is not a nat postrouting chain at priority srcnat - ` +
          `${srcnatPriority - priority} (--postrouting-jump=insert)`,
    );
  }
  if (chain.extras.length > 0) {
    differences.push(`chain ${nftChainName} has ${quoteInput(chain.extras.join(","))}`);
  }
  // Rules read back may hold a writer's text: shown quoted and bounded.
  const difference = ruleListDifference(desired.rules, chain.rules, quoteInput);
  if (difference) differences.push(`chain ${nftChainName}: ${difference}`);
  return differences;
}

function summarize(differences: readonly string[]): string {
  const shown = differences.slice(0, 4);
  return shown.join("; ") + (differences.length > 4 ? `; ... ${differences.length - 4} more` : "");
}

// A set element as a string, to compare lists and find differences.
const key = (interval: AddressInterval) => `${interval.start}-${interval.end}`;

function elementChange(
  set: string,
  live: readonly AddressInterval[],
  wanted: readonly AddressInterval[],
): NftElementChange {
  const liveKeys = new Set(live.map(key));
  const wantedKeys = new Set(wanted.map(key));
  return {
    set,
    remove: live.filter((element) => !wantedKeys.has(key(element))),
    add: wanted.filter((element) => !liveKeys.has(key(element))),
  };
}

function describeChange(family: Family, change: NftElementChange): string {
  const list = (elements: readonly AddressInterval[]) => {
    const shown = elements.slice(0, 3).map((element) => formatInterval(family, element));
    return shown.join(", ") + (elements.length > 3 ? `, ... ${elements.length - 3} more` : "");
  };
  const parts: string[] = [];
  if (change.add.length > 0) parts.push(`${change.add.length} missing: ${list(change.add)}`);
  if (change.remove.length > 0) {
    parts.push(`${change.remove.length} unexpected: ${list(change.remove)}`);
  }
  return `set ${change.set} differs (${parts.join("; ")})`;
}
