/**
 * Reads the live nat table and plans the one `iptables-restore --noflush` transaction that
 * brings our chain and POSTROUTING jump to the desired state, touching nothing else.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import { ForeignChainError } from "../base/errors.ts";
import { NatTransaction } from "./restore_input.ts";
import {
  chainRuleLines,
  exceptionComment,
  insertAtTop,
  iptablesQuote,
  jumpComment,
  jumpRuleLine,
  kubeProxyMarkComment,
  masqueradeComment,
  returnComment,
  sourceExemptionComment,
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
  const rules = new Map<string, string[]>();
  // In iptables-save output only the *nat section is ours to read; a -S listing has no sections.
  let inNat = !/^\*/m.test(listing);
  for (const line of listing.split("\n")) {
    if (line.startsWith("*")) inNat = line === "*nat";
    else if (!inNat || line.startsWith("#")) continue;
    else if (line === "COMMIT") inNat = false;
    else if (line.startsWith(":")) chains.add(line.slice(1).split(" ")[0]);
    else if (line.startsWith("-N ") || line.startsWith("-P ")) chains.add(line.split(" ")[1]);
    else if (line.startsWith("-A ")) {
      const chain = line.split(" ")[1];
      chains.add(chain);
      const list = rules.get(chain) ?? [];
      list.push(line);
      rules.set(chain, list);
    }
  }
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

/** A POSTROUTING rule we wrote (either spelling), for whichever chain name it names. */
interface OwnJump {
  readonly line: string;
  readonly chain: string;
  readonly quoted: boolean;
}

const jumpPattern = new RegExp(
  String.raw`^-A POSTROUTING -m comment --comment "(\\")?` +
    escapeRegExp(jumpComment("\u0000")).replace("\u0000", String.raw`(\S+)`) +
    String.raw`(\\")?" -m addrtype ! --dst-type LOCAL -j (\S+)$`,
);

function ownJumps(live: LiveNatTable): OwnJump[] {
  const jumps: OwnJump[] = [];
  for (const line of live.rules.get("POSTROUTING") ?? []) {
    const match = jumpPattern.exec(line);
    if (!match) continue;
    const [, openQuote, commentChain, closeQuote, target] = match;
    if (commentChain !== target || Boolean(openQuote) !== Boolean(closeQuote)) continue;
    jumps.push({ line, chain: target, quoted: Boolean(openQuote) });
  }
  return jumps;
}

/** The chain names our POSTROUTING jumps lead to (either spelling). */
export function ownJumpTargets(live: LiveNatTable): Set<string> {
  return new Set(ownJumps(live).map((jump) => jump.chain));
}

/** What the caller knows beyond the live table. */
export interface ReconcileOptions {
  /**
   * Chains reached by a jump in our spelling that another ip-masq-agent on the node manages
   * (they came back after we removed them): left alone, jump and chain.
   */
  readonly othersChains?: ReadonlySet<string>;
}

/**
 * The first rule in `chain` that makes it another tool's, or undefined when it is ours to write:
 * missing, empty, only our rules (by comment), or reached by our jump and holding a rule of ours
 * (someone inserted into our chain: drift to repair). Others' chains are never touched.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { foreignRuleOf, parseNatTable } from "./plan.ts";
 *
 * const kubeProxy = parseNatTable(
 *   "-N KUBE-POSTROUTING\n-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n",
 * );
 * assert.equal(
 *   foreignRuleOf(kubeProxy, "KUBE-POSTROUTING"),
 *   "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
 * );
 * assert.equal(foreignRuleOf(kubeProxy, "IP-MASQ-AGENT"), undefined);
 * ```
 */
export function foreignRuleOf(live: LiveNatTable, chain: string): string | undefined {
  const rules = live.rules.get(chain) ?? [];
  const foreign = rules.find((rule) => !isOwnChainRule(rule));
  if (foreign === undefined) return undefined;
  const reachedByOurJump = ownJumps(live).some((jump) => jump.chain === chain);
  return reachedByOurJump && rules.some(isOwnChainRule) ? undefined : foreign;
}

/** Plans the reconcile of one family; throws {@link ForeignChainError} if the chain is another's. */
export function planReconcile(
  desired: DesiredChain,
  live: LiveNatTable,
  options: ReconcileOptions = {},
): Plan {
  const drift: Drift[] = [];
  const tx = new NatTransaction();
  const chain = desired.chain;
  const foreign = foreignRuleOf(live, chain);
  if (foreign !== undefined) throw new ForeignChainError(chain, desired.family, foreign);
  const wantedRules = chainRuleLines(desired);
  const liveRules = live.rules.get(chain) ?? [];

  if (!live.chains.has(chain)) {
    drift.push({ kind: "chain-missing", message: `chain ${chain} does not exist` });
  } else {
    // Shown without the `-A CHAIN` the message already names.
    const difference = ruleListDifference(wantedRules, liveRules, (line) => line.slice(3));
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
  if (desired.postroutingJump === "insert") {
    planFirstJump(chain, live, ours, keep, drift, tx);
  } else planAppendedJump(chain, ours, keep, drift, tx);

  for (const stale of staleChains(live, jumps, chain)) {
    if (options.othersChains?.has(stale.chain)) continue;
    drift.push({
      kind: "stale-chain",
      message: `removing ${stale.chain}, left by an earlier --masq-chain` +
        (stale.removable ? "" : " (jump only: the chain holds rules we did not write)"),
      chain: stale.chain,
    });
    stale.removeInto(tx);
  }

  return { drift, payload: tx.build() };
}

function extraJumpDrift(chain: string, jump: OwnJump): Drift {
  return jump.quoted
    ? {
      kind: "jump-quoted",
      message: `POSTROUTING jump to ${chain} uses the old quoted comment; rewriting it`,
    }
    : { kind: "jump-duplicate", message: `POSTROUTING has a duplicate jump to ${chain}` };
}

/** `--postrouting-jump=append`: one jump anywhere in POSTROUTING; a missing one is appended. */
function planAppendedJump(
  chain: string,
  ours: readonly OwnJump[],
  keep: OwnJump | undefined,
  drift: Drift[],
  tx: NatTransaction,
): void {
  for (const jump of ours) {
    if (jump === keep) continue;
    drift.push(extraJumpDrift(chain, jump));
    tx.deleteRule(jump.line);
  }
  if (!keep) {
    if (ours.length === 0) {
      drift.push({ kind: "jump-missing", message: `POSTROUTING has no jump to ${chain}` });
    }
    tx.rule(jumpRuleLine(chain));
  }
}

/**
 * `--postrouting-jump=insert`: exactly one jump, and it is POSTROUTING's first rule, so that no
 * other tool's rule decides before ours. Anything else deletes every jump of ours and inserts
 * one at the top, in the same transaction; no other POSTROUTING rule moves. (Deleting all is
 * simpler than it looks wasteful: a duplicate spelled like the kept jump cannot be deleted by
 * its text without taking the first one, which may be the kept jump.)
 */
function planFirstJump(
  chain: string,
  live: LiveNatTable,
  ours: readonly OwnJump[],
  keep: OwnJump | undefined,
  drift: Drift[],
  tx: NatTransaction,
): void {
  const postrouting = live.rules.get("POSTROUTING") ?? [];
  if (keep !== undefined && ours.length === 1 && postrouting[0] === keep.line) return;
  for (const jump of ours) if (jump !== keep) drift.push(extraJumpDrift(chain, jump));
  if (ours.length === 0) {
    drift.push({ kind: "jump-missing", message: `POSTROUTING has no jump to ${chain}` });
  } else if (keep === undefined || postrouting[0] !== keep.line) {
    const position = keep === undefined ? -1 : postrouting.indexOf(keep.line);
    drift.push({
      kind: "jump-not-first",
      message: `POSTROUTING jump to ${chain} is ` +
        (position < 0 ? "not first" : `rule ${position + 1}, not first`) +
        ` (--postrouting-jump=insert); moving it to first place`,
    });
  }
  for (const jump of ours) tx.deleteRule(jump.line);
  tx.rule(insertAtTop(jumpRuleLine(chain)));
}

/**
 * Removes every jump and chain of ours for any chain name, touching nothing else. Throws a
 * {@link ForeignChainError} when `chain` (`--masq-chain`) is another tool's: `--cleanup` with
 * such a name is a mistake to report, not a no-op.
 */
export function planCleanup(chain: string, live: LiveNatTable, family: Family = "ipv4"): Plan {
  const foreign = foreignRuleOf(live, chain);
  if (foreign !== undefined) throw new ForeignChainError(chain, family, foreign);
  const drift: Drift[] = [];
  const tx = new NatTransaction();
  const jumps = ownJumps(live);
  const chainNames = new Set([chain, ...jumps.map((jump) => jump.chain)]);
  for (const name of chainNames) {
    const removal = chainRemoval(live, jumps, name);
    if (removal.jumps.length === 0 && !removal.removable) continue;
    drift.push({ kind: "stale-chain", message: `removing ${name}` });
    removal.removeInto(tx);
  }
  return { drift, payload: tx.build() };
}

function staleChains(live: LiveNatTable, jumps: readonly OwnJump[], chain: string) {
  const names = new Set(jumps.map((jump) => jump.chain).filter((name) => name !== chain));
  return [...names].map((name) => ({ chain: name, ...chainRemoval(live, jumps, name) }));
}

/** Deletes our jumps to `name`, then the chain if it holds only our rules and nothing else refers to it. */
function chainRemoval(live: LiveNatTable, jumps: readonly OwnJump[], name: string) {
  const toName = jumps.filter((jump) => jump.chain === name);
  const ownJumpLines = new Set(jumps.map((jump) => jump.line));
  const chainRules = live.rules.get(name) ?? [];
  const allOurs = chainRules.every((rule) => isOwnChainRule(rule));
  const referencedElsewhere = [...live.rules.values()].flat().some((rule) => {
    const words = rule.split(" ");
    return !ownJumpLines.has(rule) &&
      words.some((word, i) => (word === "-j" || word === "-g") && words[i + 1] === name);
  });
  const removable = live.chains.has(name) && allOurs && !referencedElsewhere;
  const removeInto = (tx: NatTransaction) => {
    for (const jump of toName) tx.deleteRule(jump.line);
    // Declaring flushes it: -X needs an empty chain.
    if (removable) tx.declareChain(name).deleteChain(name);
  };
  return { jumps: toName, removable, removeInto };
}

const ownChainComments = [
  returnComment,
  masqueradeComment,
  sourceExemptionComment,
  exceptionComment,
  kubeProxyMarkComment,
].map((comment) => ` -m comment --comment ${iptablesQuote(comment)} `);

function isOwnChainRule(rule: string): boolean {
  return ownChainComments.some((comment) => rule.includes(comment));
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
