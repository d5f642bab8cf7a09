/**
 * Reading the live nat table from `iptables-save -t nat` and planning the one
 * `iptables-restore --noflush` transaction that brings our chain and our
 * POSTROUTING jump to the desired state, touching nothing else. When the live
 * state already matches, the plan is empty and nothing is written.
 *
 * @module
 */

import {
  chainRuleLines,
  type DesiredChain,
  jumpComment,
  jumpRuleLine,
  masqueradeComment,
  quote,
  returnComment,
} from "./rules.ts";

export interface LiveNatTable {
  /** Every chain declared in the table, built-in or not. */
  readonly chains: ReadonlySet<string>;
  /** `-A CHAIN ...` lines by chain, in order. */
  readonly rules: ReadonlyMap<string, readonly string[]>;
}

/** Parses the `*nat` section of `iptables-save` output; no section means an empty table. */
export function parseNatTable(saveOutput: string): LiveNatTable {
  const chains = new Set<string>();
  const rules = new Map<string, string[]>();
  let inNat = false;
  for (const line of saveOutput.split("\n")) {
    if (line.startsWith("*")) inNat = line === "*nat";
    else if (!inNat || line.startsWith("#")) continue;
    else if (line === "COMMIT") inNat = false;
    else if (line.startsWith(":")) chains.add(line.slice(1).split(" ")[0]);
    else if (line.startsWith("-A ")) {
      const chain = line.split(" ")[1];
      const list = rules.get(chain) ?? [];
      list.push(line);
      rules.set(chain, list);
    }
  }
  return { chains, rules };
}

export type DriftKind =
  | "chain-missing"
  | "chain-differs"
  | "jump-missing"
  | "jump-duplicate"
  | "jump-quoted"
  | "stale-chain";

export interface Drift {
  readonly kind: DriftKind;
  readonly message: string;
}

export interface Plan {
  /** What differs from the desired state; empty means in sync. */
  readonly drift: readonly Drift[];
  /** The restore input that fixes all of it at once, or null when nothing is to be written. */
  readonly payload: string | null;
}

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

/** Plans the reconcile of one family. Pure: same inputs, same plan. */
export function planReconcile(desired: DesiredChain, live: LiveNatTable): Plan {
  const drift: Drift[] = [];
  const lines: string[] = [];
  const chain = desired.chain;
  const wantedRules = chainRuleLines(desired);
  const liveRules = live.rules.get(chain) ?? [];

  if (!live.chains.has(chain)) {
    drift.push({ kind: "chain-missing", message: `chain ${chain} does not exist` });
  } else if (!sameLines(wantedRules, liveRules)) {
    drift.push({
      kind: "chain-differs",
      message: describeChainDiff(chain, wantedRules, liveRules),
    });
  }
  if (drift.length > 0) lines.push(`:${chain} - [0:0]`, ...wantedRules);

  const jumps = ownJumps(live);
  const ours = jumps.filter((jump) => jump.chain === chain);
  const keep = ours.find((jump) => !jump.quoted);
  for (const jump of ours) {
    if (jump === keep) continue;
    drift.push(
      jump.quoted
        ? {
          kind: "jump-quoted",
          message: `POSTROUTING jump to ${chain} uses the old quoted comment; rewriting it`,
        }
        : { kind: "jump-duplicate", message: `POSTROUTING has a duplicate jump to ${chain}` },
    );
    lines.push(deleteLine(jump.line));
  }
  if (!keep) {
    if (ours.length === 0) {
      drift.push({ kind: "jump-missing", message: `POSTROUTING has no jump to ${chain}` });
    }
    lines.push(jumpRuleLine(chain));
  }

  for (const stale of staleChains(live, jumps, chain)) {
    drift.push({
      kind: "stale-chain",
      message: `removing ${stale.chain}, left by an earlier --masq-chain` +
        (stale.removable ? "" : " (jump only: the chain holds rules we did not write)"),
    });
    lines.push(...stale.lines);
  }

  return { drift, payload: lines.length === 0 ? null : transaction(lines) };
}

/** Removes every jump and chain of ours for any chain name, touching nothing else. */
export function planCleanup(chain: string, live: LiveNatTable): Plan {
  const drift: Drift[] = [];
  const lines: string[] = [];
  const jumps = ownJumps(live);
  const chainNames = new Set([chain, ...jumps.map((jump) => jump.chain)]);
  for (const name of chainNames) {
    const removal = chainRemoval(live, jumps, name);
    if (removal.lines.length === 0) continue;
    drift.push({ kind: "stale-chain", message: `removing ${name}` });
    lines.push(...removal.lines);
  }
  return { drift, payload: lines.length === 0 ? null : transaction(lines) };
}

function staleChains(live: LiveNatTable, jumps: readonly OwnJump[], chain: string) {
  const names = new Set(jumps.map((jump) => jump.chain).filter((name) => name !== chain));
  return [...names].map((name) => ({ chain: name, ...chainRemoval(live, jumps, name) }));
}

/**
 * Deletes our jumps to `name`, then the chain itself, but only when every rule
 * in it carries one of our comments and nothing else refers to it; another
 * tool's chain that happens to share the name is never touched.
 */
function chainRemoval(live: LiveNatTable, jumps: readonly OwnJump[], name: string) {
  const lines = jumps.filter((jump) => jump.chain === name).map((jump) => deleteLine(jump.line));
  const ownJumpLines = new Set(jumps.map((jump) => jump.line));
  const chainRules = live.rules.get(name) ?? [];
  const allOurs = chainRules.every((rule) => isOwnChainRule(rule));
  const referencedElsewhere = [...live.rules.values()].flat().some((rule) =>
    !ownJumpLines.has(rule) && (rule.endsWith(` -j ${name}`) || rule.includes(` -j ${name} `) ||
      rule.endsWith(` -g ${name}`) || rule.includes(` -g ${name} `))
  );
  const removable = live.chains.has(name) && allOurs && !referencedElsewhere;
  if (removable) lines.push(`:${name} - [0:0]`, `-X ${name}`);
  return { lines, removable };
}

function isOwnChainRule(rule: string): boolean {
  return rule.includes(` -m comment --comment ${quote(returnComment)} `) ||
    rule.includes(` -m comment --comment ${quote(masqueradeComment)} `);
}

function deleteLine(appendLine: string): string {
  return `-D ${appendLine.slice(3)}`;
}

function transaction(lines: readonly string[]): string {
  return ["*nat", ...lines, "COMMIT", ""].join("\n");
}

function sameLines(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((line, index) => line === b[index]);
}

function describeChainDiff(chain: string, wanted: readonly string[], live: readonly string[]) {
  // Sets, not Array.includes: a chain may hold tens of thousands of rules.
  const liveSet = new Set(live);
  const wantedSet = new Set(wanted);
  const missing = wanted.filter((line) => !liveSet.has(line));
  const unexpected = live.filter((line) => !wantedSet.has(line));
  const parts = [];
  if (missing.length > 0) parts.push(`${missing.length} missing: ${summarize(missing)}`);
  if (unexpected.length > 0) {
    parts.push(`${unexpected.length} unexpected: ${summarize(unexpected)}`);
  }
  if (parts.length === 0) parts.push("rules out of order");
  return `chain ${chain} differs (${parts.join("; ")})`;
}

function summarize(lines: readonly string[]): string {
  const shown = lines.slice(0, 3).map((line) => line.slice(3));
  return shown.join(" | ") + (lines.length > 3 ? ` | ... ${lines.length - 3} more` : "");
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
