/**
 * Parses the live nat table and plans one `iptables-restore --noflush` that fixes only our rules.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import { ForeignChainError } from "../base/errors.ts";
import { NatTransaction } from "./restore_input.ts";
import {
  chainRuleLines,
  insertAtTop,
  isOwnChainRule,
  jumpComment,
  jumpRuleLine,
} from "./render.ts";
import { type DesiredChain } from "../policy/chain.ts";
import {
  type DataplaneDrift,
  type DataplanePlan,
  ruleListDifference,
} from "../policy/dataplane.ts";

/** The parts of the live nat table a plan looks at. */
export interface LiveNatTable {
  /** Every chain declared in the table, built-in or not. */
  readonly chains: ReadonlySet<string>;
  /** `-A CHAIN ...` lines by chain, in order. */
  readonly rules: ReadonlyMap<string, readonly string[]>;
}

/**
 * Parses the nat table as `iptables -t nat -S [CHAIN]` lists it (concatenated listings too) or
 * as `iptables-save` prints it (only its `*nat` section counts).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseNatTable } from "./plan.ts";
 * const live = parseNatTable("-P POSTROUTING ACCEPT\n-N IP-MASQ-AGENT\n-A IP-MASQ-AGENT -j RETURN\n");
 * assert.ok(live.chains.has("IP-MASQ-AGENT"));
 * assert.deepEqual(live.rules.get("IP-MASQ-AGENT"), ["-A IP-MASQ-AGENT -j RETURN"]);
 * ```
 */
export function parseNatTable(listing: string): LiveNatTable {
  const chains = new Set<string>();
  const appends: string[] = [];
  // In iptables-save output only the *nat section is ours to read; a -S listing has no sections.
  let inNat = !/^\*/m.test(listing);
  for (const line of listing.split("\n")) {
    if (line.startsWith("*")) inNat = line === "*nat";
    else if (!inNat || line.startsWith("#")) continue;
    else if (line === "COMMIT") inNat = false;
    else if (line.startsWith(":")) chains.add(line.slice(1).split(" ")[0]);
    else if (line.startsWith("-N ") || line.startsWith("-P ")) chains.add(line.split(" ")[1]);
    else if (line.startsWith("-A ")) appends.push(line);
  }
  const rules = Map.groupBy(appends, (line) => line.split(" ")[1]);
  for (const chain of rules.keys()) chains.add(chain);
  return { chains, rules };
}

/** What can differ between our live rules and the desired ones. */
export type DriftKind =
  | "chain-missing"
  | "chain-differs"
  | "jump-missing"
  | "jump-duplicate"
  | "jump-quoted"
  | "jump-not-first"
  | "stale-chain";

/** One difference, for the logs and `--check`. */
export type Drift = DataplaneDrift<DriftKind>;

/** What a reconcile found and the one `iptables-restore` transaction that fixes it. */
export type Plan = DataplanePlan<DriftKind>;

// Our jump, its comment quoted at both ends or at neither, to the chain the comment names.
const jumpPattern = new RegExp(
  String.raw`^-A POSTROUTING -m comment --comment "(\\")?` +
    RegExp.escape(jumpComment("\u0000")).replace("\u0000", String.raw`(\S+)`) +
    String.raw`\1" -m addrtype ! --dst-type LOCAL -j \2$`,
);

/** The POSTROUTING rules we wrote (either spelling), for whichever chain name they name. */
function ownJumps(live: LiveNatTable): { line: string; chain: string; quoted: boolean }[] {
  return (live.rules.get("POSTROUTING") ?? []).flatMap((line) => {
    const [, quote, chain] = jumpPattern.exec(line) ?? [];
    return chain ? [{ line, chain, quoted: quote !== undefined }] : [];
  });
}

/** The chain names our POSTROUTING jumps lead to (either spelling). */
export function ownJumpTargets(live: LiveNatTable): Set<string> {
  return new Set(ownJumps(live).map((jump) => jump.chain));
}

/**
 * Throws {@link ForeignChainError} when `chain` is another tool's. It is ours to write when
 * missing, empty, only our rules (by comment), or reached by our jump and holding a rule of ours
 * (someone inserted into our chain: drift to repair). Others' chains are never touched.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseNatTable, refuseForeignChain } from "./plan.ts";
 * const live = parseNatTable("-N KUBE-POSTROUTING\n-A KUBE-POSTROUTING -j RETURN\n");
 * assert.throws(() => refuseForeignChain(live, "KUBE-POSTROUTING", "ipv4"), /KUBE-POSTROUTING/);
 * refuseForeignChain(live, "IP-MASQ-AGENT", "ipv4");
 * ```
 */
export function refuseForeignChain(live: LiveNatTable, chain: string, family: Family): void {
  const rules = live.rules.get(chain) ?? [];
  const foreign = rules.find((rule) => !isOwnChainRule(rule));
  if (foreign === undefined) return;
  const reachedByOurJump = ownJumps(live).some((jump) => jump.chain === chain);
  if (!reachedByOurJump || !rules.some(isOwnChainRule)) {
    throw new ForeignChainError(chain, family, foreign);
  }
}

/**
 * Plans the reconcile of one family; throws {@link ForeignChainError} if the chain is another's.
 * `othersChains`: chains of ours another ip-masq-agent on the node manages, left alone.
 */
export function planReconcile(
  desired: DesiredChain,
  live: LiveNatTable,
  options: { readonly othersChains?: ReadonlySet<string> } = {},
): Plan {
  const drift: Drift[] = [];
  const tx = new NatTransaction();
  const chain = desired.chain;
  refuseForeignChain(live, chain, desired.family);
  const wantedRules = chainRuleLines(desired);
  if (!live.chains.has(chain)) {
    drift.push({ kind: "chain-missing", message: `chain ${chain} does not exist` });
  } else {
    // Shown without the `-A CHAIN` the message already names.
    const difference = ruleListDifference(
      wantedRules,
      live.rules.get(chain) ?? [],
      (line) => line.slice(3),
    );
    if (difference) {
      drift.push({ kind: "chain-differs", message: `chain ${chain} differs (${difference})` });
    }
  }
  if (drift.length > 0) {
    tx.declareChain(chain);
    for (const rule of wantedRules) tx.rule(rule);
  }

  const jumps = ownJumps(live);
  const ours = jumps.filter((jump) => jump.chain === chain);
  const keep = ours.find((jump) => !jump.quoted);
  // append: one jump anywhere in POSTROUTING. insert: exactly one, POSTROUTING's first rule, so no
  // other tool's rule decides before ours; else every jump of ours goes and one is inserted at the
  // top (a duplicate spelled like the kept jump cannot be deleted by its text without taking the
  // first one, which may be the kept jump).
  const insert = desired.postroutingJump === "insert";
  const postrouting = live.rules.get("POSTROUTING") ?? [];
  if (!insert || keep === undefined || ours.length !== 1 || postrouting[0] !== keep.line) {
    for (const jump of ours) {
      if (jump !== keep || insert) tx.deleteRule(jump.line);
      if (jump === keep) continue;
      const message = jump.quoted
        ? `POSTROUTING jump to ${chain} uses the old quoted comment; rewriting it`
        : `POSTROUTING has a duplicate jump to ${chain}`;
      drift.push({ kind: jump.quoted ? "jump-quoted" : "jump-duplicate", message });
    }
    if (ours.length === 0) {
      drift.push({ kind: "jump-missing", message: `POSTROUTING has no jump to ${chain}` });
    } else if (insert && (keep === undefined || postrouting[0] !== keep.line)) {
      const rule = keep === undefined ? "" : `rule ${postrouting.indexOf(keep.line) + 1}, `;
      const message = `POSTROUTING jump to ${chain} is ${rule}not first ` +
        "(--postrouting-jump=insert); moving it to first place";
      drift.push({ kind: "jump-not-first", message });
    }
    if (insert) tx.rule(insertAtTop(jumpRuleLine(chain)));
    else if (keep === undefined) tx.rule(jumpRuleLine(chain));
  }

  for (const name of new Set(jumps.map((jump) => jump.chain))) {
    if (name === chain || options.othersChains?.has(name)) continue;
    const { removable } = removeChain(live, name, tx);
    const jumpOnly = removable ? "" : " (jump only: the chain holds rules we did not write)";
    const message = `removing ${name}, left by an earlier --masq-chain${jumpOnly}`;
    drift.push({ kind: "stale-chain", message, chain: name });
  }

  return { drift, payload: tx.build() };
}

/**
 * Removes every jump and chain of ours, under any name. Throws {@link ForeignChainError} when
 * `chain` is another tool's: `--cleanup` with such a name is a mistake to report, not a no-op.
 */
export function planCleanup(chain: string, live: LiveNatTable, family: Family = "ipv4"): Plan {
  refuseForeignChain(live, chain, family);
  const drift: Drift[] = [];
  const tx = new NatTransaction();
  for (const name of new Set([chain, ...ownJumps(live).map((jump) => jump.chain)])) {
    const { jumps, removable } = removeChain(live, name, tx);
    if (jumps > 0 || removable) drift.push({ kind: "stale-chain", message: `removing ${name}` });
  }
  return { drift, payload: tx.build() };
}

/**
 * Deletes our jumps to `name`, then the chain if it holds only our rules and nothing else refers
 * to it; says how many jumps went and whether the chain did.
 */
function removeChain(live: LiveNatTable, name: string, tx: NatTransaction) {
  const jumps = ownJumps(live);
  const toName = jumps.filter((jump) => jump.chain === name);
  const ownJumpLines = new Set(jumps.map((jump) => jump.line));
  const jumpTo = new RegExp(` -[jg] ${RegExp.escape(name)}(?: |$)`);
  const referencedElsewhere = [...live.rules.values()].flat()
    .some((rule) => !ownJumpLines.has(rule) && jumpTo.test(rule));
  const removable = live.chains.has(name) && (live.rules.get(name) ?? []).every(isOwnChainRule) &&
    !referencedElsewhere;
  for (const jump of toName) tx.deleteRule(jump.line);
  // Declaring flushes it: -X needs an empty chain.
  if (removable) tx.declareChain(name).deleteChain(name);
  return { jumps: toName.length, removable };
}
