/**
 * The fake's nat table with iptables semantics, and `iptables-restore`'s
 * transactions and commands applied to it (see ../fake_iptables.ts).
 *
 * @module
 */

import type { Family } from "../../../lib/net/cidr.ts";
import { ToolError } from "../../../lib/base/tool.ts";
import { RestoreProblem } from "./restore_problem.ts";
import { parseRule, tokenize } from "./rule_spec.ts";

/** The nat table's built-in chains, in the order iptables prints them. */
export const builtinChains = ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"] as const;

export interface Rule {
  /** The canonical spec as iptables-save prints it after `-A CHAIN `. */
  readonly text: string;
  /** The chain or target this rule jumps (`-j`) or goes (`-g`) to. */
  readonly target?: string;
}

export class NatTable {
  readonly policies = new Map<string, string>(builtinChains.map((chain) => [chain, "ACCEPT"]));
  readonly chains = new Map<string, Rule[]>(builtinChains.map((chain) => [chain, []]));

  clone(): NatTable {
    const copy = new NatTable();
    for (const [chain, policy] of this.policies) copy.policies.set(chain, policy);
    copy.chains.clear();
    for (const [chain, rules] of this.chains) copy.chains.set(chain, [...rules]);
    return copy;
  }

  isBuiltin(chain: string): boolean {
    return this.policies.has(chain);
  }

  userChains(): string[] {
    return [...this.chains.keys()].filter((chain) => !this.isBuiltin(chain))
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /**
   * `iptables -t nat -S [CHAIN...]`: `-P CHAIN POLICY` for a built-in chain,
   * `-N CHAIN` for a user chain, then the rules; the whole table lists every
   * declaration first, as iptables does.
   */
  listing(chains: readonly string[] = [...builtinChains, ...this.userChains()]): string {
    const declarations = chains.map((chain) =>
      this.isBuiltin(chain) ? `-P ${chain} ${this.policies.get(chain)}` : `-N ${chain}`
    );
    const rules = chains.flatMap((chain) =>
      (this.chains.get(chain) ?? []).map((rule) => `-A ${chain} ${rule.text}`)
    );
    return [...declarations, ...rules].map((line) => `${line}\n`).join("");
  }

  render(): string {
    const order = [...builtinChains, ...this.userChains()];
    const lines = ["*nat"];
    for (const chain of order) {
      lines.push(`:${chain} ${this.policies.get(chain) ?? "-"} [0:0]`);
    }
    for (const chain of order) {
      for (const rule of this.chains.get(chain) ?? []) lines.push(`-A ${chain} ${rule.text}`);
    }
    lines.push("COMMIT");
    return lines.join("\n") + "\n";
  }
}

const maxChainNameLength = 28;

/**
 * iptables-restore: each `*table ... COMMIT` block is one transaction, handed
 * to `commit` as it completes; a failure later leaves earlier ones applied.
 */
export function applyRestore(
  start: NatTable,
  payload: string,
  family: Family,
  commandLine: string,
  commit: (table: NatTable) => void,
): void {
  const tool = commandLine.split(" ")[0];
  let committed = start;
  let working: NatTable | undefined;
  const lines = payload.split("\n");
  const fail = (lineNumber: number, reason: string): never => {
    throw new ToolError(
      `${commandLine} exited with status 1: ${tool}: line ${lineNumber} failed: ${reason}`,
      "failed",
      commandLine,
    );
  };
  for (const [index, raw] of lines.entries()) {
    const lineNumber = index + 1;
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("*")) {
      if (working) fail(lineNumber, "COMMIT expected before a new table");
      if (line !== "*nat") fail(lineNumber, `the fake holds only the nat table, not ${line}`);
      working = committed.clone();
      continue;
    }
    if (!working) fail(lineNumber, "not inside a table (missing *nat)");
    const table = working as NatTable;
    if (line === "COMMIT") {
      committed = table;
      commit(table);
      working = undefined;
      continue;
    }
    try {
      if (line.startsWith(":")) declareChain(table, line.slice(1));
      else runCommand(table, tokenize(line), family);
    } catch (error) {
      if (error instanceof RestoreProblem) fail(lineNumber, error.message);
      throw error;
    }
  }
  if (working) {
    const lastLine = lines.at(-1) === "" ? lines.length : lines.length + 1;
    throw new ToolError(
      `${commandLine} exited with status 1: ${tool}: COMMIT expected at line ${lastLine}`,
      "failed",
      commandLine,
    );
  }
}

function checkChainName(name: string) {
  if (name.length > maxChainNameLength) {
    throw new RestoreProblem(`chain name \`${name}' too long (must be under 29 chars)`);
  }
  if (name === "" || name.startsWith("-") || name.startsWith("!") || /\s/.test(name)) {
    throw new RestoreProblem(`invalid chain name \`${name}'`);
  }
}

/** `:NAME POLICY [packets:bytes]` */
function declareChain(table: NatTable, declaration: string) {
  const [name, policy, counters, ...rest] = declaration.split(/\s+/);
  if (policy === undefined) throw new RestoreProblem("chain policy missing");
  if (rest.length > 0 || (counters !== undefined && !/^\[\d+:\d+\]$/.test(counters))) {
    throw new RestoreProblem(`bad chain declaration :${declaration}`);
  }
  checkChainName(name);
  if (table.isBuiltin(name)) {
    if (policy === "ACCEPT" || policy === "DROP") table.policies.set(name, policy);
    else if (policy !== "-") throw new RestoreProblem(`bad built-in chain policy ${policy}`);
    return;
  }
  if (policy !== "-") {
    throw new RestoreProblem(
      `Can't set policy \`${policy}' on \`${name}': Bad built-in chain name`,
    );
  }
  table.chains.set(name, []);
}

const noSuchChain = "No chain/target/match by that name.";

function existingChain(table: NatTable, name: string | undefined): Rule[] {
  if (name === undefined) throw new RestoreProblem("option requires a chain name");
  const rules = table.chains.get(name);
  if (!rules) throw new RestoreProblem(noSuchChain);
  return rules;
}

function ruleIndex(text: string | undefined, max: number, what: string): number | undefined {
  if (text === undefined || !/^\d+$/.test(text)) return undefined;
  const index = Number(text);
  if (index < 1 || index > max) throw new RestoreProblem(`Index of ${what} too big.`);
  return index - 1;
}

const commandAliases: Record<string, string> = {
  "--append": "-A",
  "--insert": "-I",
  "--replace": "-R",
  "--delete": "-D",
  "--flush": "-F",
  "--zero": "-Z",
  "--new-chain": "-N",
  "--new": "-N",
  "--delete-chain": "-X",
  "--policy": "-P",
};

function runCommand(table: NatTable, tokens: readonly string[], family: Family) {
  const [word, chain, ...rest] = tokens;
  const command = commandAliases[word] ?? word;
  switch (command) {
    case "-A": {
      existingChain(table, chain).push(parseRule(rest, family, table));
      return;
    }
    case "-I": {
      const rules = existingChain(table, chain);
      const at = ruleIndex(rest[0], rules.length + 1, "insertion");
      const spec = at === undefined ? rest : rest.slice(1);
      rules.splice(at ?? 0, 0, parseRule(spec, family, table));
      return;
    }
    case "-R": {
      const rules = existingChain(table, chain);
      const at = ruleIndex(rest[0], rules.length, "replacement");
      if (at === undefined) throw new RestoreProblem("-R needs a rule number");
      rules[at] = parseRule(rest.slice(1), family, table);
      return;
    }
    case "-D": {
      const rules = existingChain(table, chain);
      let at = rest.length === 1 ? ruleIndex(rest[0], rules.length, "deletion") : undefined;
      if (at === undefined) {
        const wanted = parseRule(rest, family, table).text;
        at = rules.findIndex((rule) => rule.text === wanted);
        if (at < 0) {
          throw new RestoreProblem("Bad rule (does a matching rule exist in that chain?).");
        }
      }
      rules.splice(at, 1);
      return;
    }
    case "-F": {
      if (chain === undefined) { for (const rules of table.chains.values()) rules.length = 0; }
      else existingChain(table, chain).length = 0;
      return;
    }
    case "-Z": {
      if (chain !== undefined) existingChain(table, chain);
      return;
    }
    case "-N": {
      if (chain === undefined) throw new RestoreProblem("-N needs a chain name");
      checkChainName(chain);
      if (table.chains.has(chain)) throw new RestoreProblem("Chain already exists.");
      table.chains.set(chain, []);
      return;
    }
    case "-X": {
      if (chain === undefined) throw new RestoreProblem("the fake needs -X with a chain name");
      const rules = existingChain(table, chain);
      if (table.isBuiltin(chain)) throw new RestoreProblem(`cannot delete built-in chain ${chain}`);
      const referenced = [...table.chains.values()].some((list) =>
        list.some((rule) => rule.target === chain)
      );
      if (referenced || rules.length > 0) {
        throw new RestoreProblem(`CHAIN_DEL failed (Device or resource busy): chain ${chain}`);
      }
      table.chains.delete(chain);
      return;
    }
    case "-P": {
      existingChain(table, chain);
      const [policy] = rest;
      if (!table.isBuiltin(chain)) throw new RestoreProblem("Bad built-in chain name.");
      if (policy === "DROP") {
        // `-P` refuses it in nat (a `:CHAIN DROP` declaration does not; checked on both backends).
        throw new RestoreProblem(
          'The "nat" table is not intended for filtering, the use of DROP is therefore inhibited.',
        );
      }
      if (policy !== "ACCEPT") throw new RestoreProblem(`Bad policy name \`${policy}'`);
      table.policies.set(chain, policy);
      return;
    }
    default:
      throw new RestoreProblem(`unknown option "${word}"`);
  }
}
