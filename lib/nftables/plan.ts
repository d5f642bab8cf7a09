/**
 * Planning one family's nftables reconcile: when only set elements differ (a config change), just
 * those are deleted and added; any other difference replaces the whole table.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import { type AddressInterval, formatInterval, sameIntervals } from "../net/intervals.ts";
import type { LiveNftRead, LiveNftTable } from "./parse.ts";
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
import { type DataplanePlan, inSync, ruleListDifference } from "../policy/dataplane.ts";

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
    const more = structural.length > 4 ? `; ... ${structural.length - 4} more` : "";
    const summary = structural.slice(0, 4).join("; ") + more;
    return replace("table-differs", `${table} differs (${summary}); replacing it`);
  }
  const changes = desired.sets.flatMap((set): NftElementChange[] => {
    const elements = live.table.sets.find((candidate) => candidate.name === set.name)?.elements;
    if (!elements || sameIntervals(elements, set.elements)) return [];
    const liveKeys = new Set(elements.map(key));
    const wantedKeys = new Set(set.elements.map(key));
    return [{
      set: set.name,
      remove: elements.filter((element) => !wantedKeys.has(key(element))),
      add: set.elements.filter((element) => !liveKeys.has(key(element))),
    }];
  });
  if (changes.length === 0) return inSync;
  const message = changes.map((change) => describeChange(desired.family, change)).join("; ");
  return {
    drift: [{ kind: "elements-differ", message }],
    payload: renderNftElementChanges(desired.family, changes),
  };
}

/** Removes our table of `family` when it exists, whatever it holds. */
export function planNftRemoval(family: Family, live: LiveNftRead): NftPlan {
  if (live.kind === "missing") return inSync;
  return {
    drift: [{ kind: "table-present", message: `removing ${nftTableSpec(family)}` }],
    payload: renderNftRemoval(family),
  };
}

// A set element as a string, to find the differences of two lists (hex: cheaper than decimal).
const key = (interval: AddressInterval) =>
  `${interval.start.toString(16)}-${interval.end.toString(16)}`;

/** Everything but set elements: sets, chains, rules, and nothing else in the table. */
function structuralDifferences(desired: NftDesired, live: LiveNftTable): string[] {
  const differences = live.others.map((other) => `unexpected ${other}`);
  const addressType = nftAddressType(desired.family);
  for (const { name } of desired.sets) {
    const set = live.sets.find((candidate) => candidate.name === name);
    const setDiffers = (what: string) => differences.push(`set ${name} ${what}`);
    if (!set) setDiffers("missing");
    else {
      // Flags are sorted strings: only `["interval"]` joins to "interval".
      const flags = set.flags.join(",");
      if (set.type !== addressType) setDiffers(`has type ${quoteInput(set.type)}`);
      if (flags !== "interval") setDiffers(`has flags ${quoteInput(flags)}`);
      if (set.extras.length > 0) setDiffers(`has ${quoteInput(set.extras.join(","))}`);
      if (set.elements === null) setDiffers("holds elements we never write");
    }
  }
  const wantedSets = new Set(desired.sets.map(({ name }) => name));
  for (const { name } of live.sets) {
    if (!wantedSets.has(name)) differences.push(`unexpected set ${quoteInput(name)}`);
  }
  const chain = live.chains.find((candidate) => candidate.name === nftChainName);
  const priority = desired.priority ?? srcnatPriority;
  const chainDiffers = (what: string) => differences.push(`chain ${nftChainName} ${what}`);
  if (!chain) chainDiffers("missing");
  else {
    const base = chain.type === "nat" && chain.hook === "postrouting" &&
      chain.priority === priority && chain.policy === "accept";
    const expected = priority === srcnatPriority
      ? "srcnat chain"
      : `chain at priority srcnat - ${srcnatPriority - priority} (--postrouting-jump=insert)`;
    if (!base) chainDiffers(`is not a nat postrouting ${expected}`);
    if (chain.extras.length > 0) chainDiffers(`has ${quoteInput(chain.extras.join(","))}`);
    // Rules read back may hold a writer's text: shown quoted and bounded.
    const rules = ruleListDifference(desired.rules, chain.rules, quoteInput);
    if (rules) differences.push(`chain ${nftChainName}: ${rules}`);
  }
  for (const { name } of live.chains) {
    if (name !== nftChainName) differences.push(`unexpected chain ${quoteInput(name)}`);
  }
  return differences;
}

function describeChange(family: Family, { set, add, remove }: NftElementChange): string {
  const list = (elements: readonly AddressInterval[]) => {
    const shown = elements.slice(0, 3).map((element) => formatInterval(family, element));
    return shown.join(", ") + (elements.length > 3 ? `, ... ${elements.length - 3} more` : "");
  };
  const parts: string[] = [];
  if (add.length > 0) parts.push(`${add.length} missing: ${list(add)}`);
  if (remove.length > 0) parts.push(`${remove.length} unexpected: ${list(remove)}`);
  return `set ${set} differs (${parts.join("; ")})`;
}
