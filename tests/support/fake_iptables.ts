/**
 * A faithful in-memory `NatTableClient`, in the spirit of knftables' fake: it
 * holds one nat table with iptables semantics, prints it as
 * `iptables-save -t nat` does, and applies `iptables-restore --noflush` input
 * line by line, each `COMMIT` all or nothing. Where the legacy and nft
 * backends differ, it takes the stricter behaviour, so a payload it accepts
 * works on both; it also rejects an unterminated quote, which both swallow.
 *
 * What it models, each checked against iptables v1.8.9 (nf_tables):
 * - the built-in chains PREROUTING, INPUT, OUTPUT, POSTROUTING with policies,
 *   user chains printed sorted by name, rules in order;
 * - `:CHAIN - [0:0]` creates a user chain or flushes an existing one; on a
 *   built-in chain it only sets the policy;
 * - `-A`, `-I [n]`, `-R n`, `-D n`, `-D <spec>` (first identical rule, or
 *   "Bad rule (does a matching rule exist in that chain?)"), `-F`, `-N`,
 *   `-X` (fails on a missing, built-in, referenced or non-empty chain), `-P`;
 * - rule specs as iptables stores them: the restore tokenizer's quoting,
 *   `-s -d -i -o -p` printed first in that order, addresses masked and given
 *   a prefix, `/0` dropped, the implicit `-m tcp` after `-p tcp --dport`,
 *   `statistic --probability` rounded to its 31-bit fraction, comments quoted
 *   as `xtables_save_string` quotes them; unknown matches and targets fail.
 *
 * It counts calls, records every restore payload, can fail the next calls
 * with the xtables lock or a generic error, and lets a test play "another
 * program" changing the table (drift) without counting that as our write.
 *
 * @module
 */

import type { Family } from "../../lib/core/cidr.ts";
import { type IptablesMode, iptablesTools } from "../../lib/core/iptables_mode.ts";
import { IptablesError, type NatTableClient, restoreArgs } from "../../lib/host/iptables.ts";

export const builtinChains = ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"] as const;

export interface FakeNatTableOptions {
  readonly family?: Family;
  /** Which backend's tools the error messages name; nft by default. */
  readonly mode?: IptablesMode;
  /** Restore input applied at construction, as if another program had written it. */
  readonly seed?: string;
  /** Each listing and restore takes this long (a timer that honours the abort signal). */
  readonly latencyMs?: number;
}

export interface FakeCall {
  /** `list`: `-t nat -S [CHAIN]`; `restore`: one `iptables-restore --noflush`. */
  readonly op: "list" | "restore";
  /** The chain a `list` call asked for; undefined for the whole table. */
  readonly chain?: string;
  /** `performance.now()` when the call started. */
  readonly at: number;
  readonly payload?: string;
  /** Set when the call failed (injected or rejected input). */
  readonly error?: IptablesError;
}

export type InjectedFailure = "lock" | "failed";

export class FakeNatTable implements NatTableClient {
  readonly family: Family;
  readonly mode: IptablesMode;
  readonly calls: FakeCall[] = [];
  /** How long each listing and restore takes; tests may change it between calls. */
  latencyMs: number;
  #table = new NatTable();
  readonly #failures: Record<FakeCall["op"], InjectedFailure[]> = { list: [], restore: [] };

  constructor(options: FakeNatTableOptions = {}) {
    this.family = options.family ?? "ipv4";
    this.mode = options.mode ?? "nft";
    this.latencyMs = options.latencyMs ?? 0;
    if (options.seed !== undefined) this.external(options.seed);
  }

  /** Every `-S` listing, whatever it listed. */
  get listCalls(): number {
    return this.calls.filter((call) => call.op === "list").length;
  }

  /**
   * How many times the table was read for a reconcile: each starts by listing
   * POSTROUTING (then our chain), so this counts reconciles of this family.
   */
  get reconcileReads(): number {
    return this.calls.filter((call) => call.op === "list" && call.chain === "POSTROUTING").length;
  }

  get restoreCalls(): number {
    return this.calls.filter((call) => call.op === "restore").length;
  }

  /** Every restore payload we were handed, failed ones included, in order. */
  get payloads(): string[] {
    return this.calls.flatMap((call) => (call.op === "restore" ? [call.payload ?? ""] : []));
  }

  /** The next `count` restores fail before touching the table. */
  failNextRestores(count: number, failure: InjectedFailure): void {
    for (let i = 0; i < count; i++) this.#failures.restore.push(failure);
  }

  /** The next `count` listings fail. */
  failNextReads(count: number, failure: InjectedFailure): void {
    for (let i = 0; i < count; i++) this.#failures.list.push(failure);
  }

  /** Drops any failures still queued: the lock "is released". */
  clearFailures(): void {
    this.#failures.list.length = 0;
    this.#failures.restore.length = 0;
  }

  async listChain(chain: string, signal?: AbortSignal): Promise<string | null> {
    await this.#list(["-t", "nat", "-S", chain], chain, signal);
    return this.#table.chains.has(chain) ? this.#table.listing([chain]) : null;
  }

  async listTable(signal?: AbortSignal): Promise<string> {
    await this.#list(["-t", "nat", "-S"], undefined, signal);
    return this.#table.listing();
  }

  /** The table as `iptables-save -t nat` prints it, comment lines included (not counted). */
  save(): string {
    const now = ctime(new Date());
    const header = `${this.#tools.main.replace(/-(nft|legacy)$/, "")}-save v1.8.9 (${
      this.mode === "nft" ? "nf_tables" : "legacy"
    })`;
    return `# Generated by ${header} on ${now}\n${this.dump()}# Completed on ${now}\n`;
  }

  get #tools() {
    return iptablesTools(this.mode, this.family);
  }

  async #list(args: readonly string[], chain: string | undefined, signal?: AbortSignal) {
    const call: { op: "list"; chain?: string; at: number; error?: IptablesError } = {
      op: "list",
      chain,
      at: performance.now(),
    };
    this.calls.push(call);
    try {
      await this.#enter(this.#tools.main, args, "list", signal);
    } catch (error) {
      if (error instanceof IptablesError) call.error = error;
      throw error;
    }
  }

  async restore(payload: string, signal?: AbortSignal): Promise<void> {
    const call: { op: "restore"; at: number; payload: string; error?: IptablesError } = {
      op: "restore",
      at: performance.now(),
      payload,
    };
    this.calls.push(call);
    try {
      await this.#enter(this.#tools.restore, restoreArgs, "restore", signal);
      this.#apply(payload);
    } catch (error) {
      if (error instanceof IptablesError) call.error = error;
      throw error;
    }
  }

  /** Another program's `iptables-restore --noflush`: same semantics, not counted. */
  external(payload: string): void {
    this.#apply(payload);
  }

  /** The table as `iptables-save -t nat` prints it, without the two comment lines. */
  dump(): string {
    return this.#table.render();
  }

  /** The `-A CHAIN ...` lines of one chain, in order. */
  rules(chain: string): string[] {
    return (this.#table.chains.get(chain) ?? []).map((rule) => `-A ${chain} ${rule.text}`);
  }

  #apply(payload: string) {
    const commandLine = [this.#tools.restore, ...restoreArgs].join(" ");
    applyRestore(this.#table, payload, this.family, commandLine, (table) => this.#table = table);
  }

  async #enter(
    command: string,
    args: readonly string[],
    op: FakeCall["op"],
    signal: AbortSignal | undefined,
  ) {
    const commandLine = [command, ...args].join(" ");
    if (this.latencyMs > 0) await delay(this.latencyMs, signal);
    if (signal?.aborted) {
      throw new IptablesError(`${command} aborted`, "failed", commandLine, {
        cause: signal.reason,
      });
    }
    const failure = this.#failures[op].shift();
    if (failure === "lock") {
      throw new IptablesError(
        `${commandLine} exited with status 4: Another app is currently holding the xtables ` +
          `lock. Stopped waiting after 5s.`,
        "lock",
        commandLine,
      );
    }
    if (failure === "failed") {
      throw new IptablesError(
        `${commandLine} exited with status 1: ${command} v1.8.9 (nf_tables): injected failure`,
        "failed",
        commandLine,
      );
    }
  }
}

function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done);
  });
}

/** C's ctime(3) without the newline, as iptables-save prints it: `Sun Nov 29 17:45:11 2026`. */
function ctime(date: Date): string {
  const days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const months = [
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
  ];
  const two = (n: number) => String(n).padStart(2, "0");
  return `${days[date.getUTCDay()]} ${months[date.getUTCMonth()]} ` +
    `${String(date.getUTCDate()).padStart(2)} ${two(date.getUTCHours())}:` +
    `${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())} ${date.getUTCFullYear()}`;
}

// ---------------------------------------------------------------------------
// The table

interface Rule {
  /** The canonical spec as iptables-save prints it after `-A CHAIN `. */
  readonly text: string;
  /** The chain or target this rule jumps (`-j`) or goes (`-g`) to. */
  readonly target?: string;
}

class NatTable {
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

/** Thrown inside one restore; becomes an IptablesError naming the line. */
class RestoreProblem extends Error {}

const maxChainNameLength = 28;

/**
 * iptables-restore: each `*table ... COMMIT` block is one transaction, handed
 * to `commit` as it completes; a failure later leaves earlier ones applied.
 */
function applyRestore(
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
    throw new IptablesError(
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
    throw new IptablesError(
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
      if (policy !== "ACCEPT" && policy !== "DROP") {
        throw new RestoreProblem(`Bad policy name \`${policy}'`);
      }
      table.policies.set(chain, policy);
      return;
    }
    default:
      throw new RestoreProblem(`unknown option "${word}"`);
  }
}

// ---------------------------------------------------------------------------
// Tokens and rule specs

/** iptables-restore's `add_param_to_argv`: quotes group, `\` escapes only inside quotes. */
export function tokenize(line: string): string[] {
  const tokens: string[] = [];
  let current = "";
  let started = false;
  let quoted = false;
  let escaped = false;
  for (const character of line) {
    if (quoted) {
      if (escaped) {
        current += character;
        escaped = false;
      } else if (character === "\\") escaped = true;
      else if (character === '"') {
        quoted = false;
        tokens.push(current);
        current = "";
        started = false;
      } else current += character;
      continue;
    }
    if (character === '"') {
      quoted = true;
      started = true;
    } else if (/\s/.test(character)) {
      if (started) tokens.push(current);
      current = "";
      started = false;
    } else {
      current += character;
      started = true;
    }
  }
  if (quoted) throw new RestoreProblem("Unterminated quote");
  if (started) tokens.push(current);
  return tokens;
}

/** libxtables' `xtables_save_string`. */
export function saveString(value: string): string {
  if (/^[A-Za-z0-9_-]+$/.test(value)) return value;
  return `"${value.replace(/["\\']/g, (character) => `\\${character}`)}"`;
}

const basicOrder = ["-s", "-d", "-i", "-o", "-p"] as const;
type BasicOption = (typeof basicOrder)[number];

const optionAliases: Record<string, string> = {
  "--source": "-s",
  "--src": "-s",
  "--destination": "-d",
  "--dst": "-d",
  "--in-interface": "-i",
  "--out-interface": "-o",
  "--protocol": "-p",
  "--match": "-m",
  "--jump": "-j",
  "--goto": "-g",
};

const knownMatches = new Set([
  "addrtype",
  "comment",
  "connmark",
  "conntrack",
  "iprange",
  "limit",
  "mark",
  "multiport",
  "owner",
  "physdev",
  "set",
  "state",
  "statistic",
  "tcp",
  "udp",
  "sctp",
  "icmp",
  "icmp6",
]);

/** Targets provided by extensions; anything else after `-j` must be a chain. */
const knownTargets = new Set([
  "ACCEPT",
  "DROP",
  "RETURN",
  "QUEUE",
  "NFQUEUE",
  "MASQUERADE",
  "SNAT",
  "DNAT",
  "REDIRECT",
  "NETMAP",
  "LOG",
  "NFLOG",
  "MARK",
  "CONNMARK",
]);

/** Arguments iptables prints through `xtables_save_string`. */
const savedAsString = new Set(["--comment", "--log-prefix", "--nflog-prefix"]);

function isBasic(option: string): option is BasicOption {
  return (basicOrder as readonly string[]).includes(option);
}

function parseRule(tokens: readonly string[], family: Family, table: NatTable): Rule {
  const basic = new Map<BasicOption, { negated: boolean; value: string }>();
  const matches: { name: string; args: string[] }[] = [];
  let target: { kind: "-j" | "-g"; name: string; args: string[] } | undefined;
  let current: string[] | undefined;
  let negate = false;
  const valueAfter = (index: number, option: string) => {
    const value = tokens[index + 1];
    if (value === undefined) throw new RestoreProblem(`option "${option}" requires an argument`);
    return value;
  };
  for (let i = 0; i < tokens.length; i++) {
    const token = optionAliases[tokens[i]] ?? tokens[i];
    if (token === "!") {
      const next = optionAliases[tokens[i + 1]] ?? tokens[i + 1];
      if (next !== undefined && isBasic(next)) negate = true;
      else if (current) current.push(token);
      else throw new RestoreProblem("Bad argument `!'");
      continue;
    }
    if (isBasic(token)) {
      if (basic.has(token)) throw new RestoreProblem(`multiple ${token} flags not allowed`);
      let value = valueAfter(i++, token);
      if (value === "!") {
        negate = true;
        value = valueAfter(i++, token);
      }
      basic.set(token, { negated: negate, value: normalizeBasic(token, value, family) });
      negate = false;
      continue;
    }
    if (token === "-m") {
      const name = valueAfter(i++, token);
      if (!knownMatches.has(name)) {
        throw new RestoreProblem(`Couldn't load match \`${name}':No such file or directory`);
      }
      current = [];
      matches.push({ name, args: current });
      continue;
    }
    if (token === "-j" || token === "-g") {
      if (target) throw new RestoreProblem(`multiple -j flags not allowed`);
      const name = valueAfter(i++, token);
      const isChain = table.chains.has(name);
      if (token === "-g" ? !isChain : !isChain && !knownTargets.has(name)) {
        throw new RestoreProblem(`Chain '${name}' does not exist`);
      }
      current = [];
      target = { kind: token, name, args: current };
      continue;
    }
    if (!current && token.startsWith("--") && basic.has("-p")) {
      // `-p tcp --dport 80` loads the tcp match implicitly, and iptables-save prints it.
      current = [];
      matches.push({ name: basic.get("-p")?.value ?? "", args: current });
    }
    if (!current) throw new RestoreProblem(`Bad argument \`${tokens[i]}'`);
    current.push(token);
  }
  if (negate) throw new RestoreProblem("Bad argument `!'");

  const parts: string[] = [];
  for (const option of basicOrder) {
    const entry = basic.get(option);
    if (!entry) continue;
    // A /0 address matches everything; iptables stores no address at all.
    if ((option === "-s" || option === "-d") && entry.value.endsWith("/0") && !entry.negated) {
      continue;
    }
    parts.push(`${entry.negated ? "! " : ""}${option} ${entry.value}`);
  }
  for (const match of matches) {
    parts.push(["-m", match.name, ...renderArgs(match.name, match.args)].join(" "));
  }
  if (target) {
    parts.push([target.kind, target.name, ...renderArgs(target.name, target.args)].join(" "));
  }
  return { text: parts.join(" "), target: target?.name };
}

function renderArgs(extension: string, args: readonly string[]): string[] {
  return args.map((arg, index) => {
    const option = args[index - 1];
    if (extension === "statistic" && option === "--probability") return probability(arg);
    if (option !== undefined && savedAsString.has(option)) return saveString(arg);
    return /^[^\s"'\\]+$/.test(arg) ? arg : saveString(arg);
  });
}

/** The statistic match keeps a 31-bit fraction and prints it with 11 decimals. */
function probability(text: string): string {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0 || value > 1) {
    throw new RestoreProblem(`--probability must be between 0 and 1, got ${text}`);
  }
  return (Math.round(value * 0x80000000) / 0x80000000).toFixed(11);
}

function normalizeBasic(option: BasicOption, value: string, family: Family): string {
  if (option === "-p") return value.toLowerCase();
  if (option === "-i" || option === "-o") return value;
  return normalizeAddress(value, family);
}

// ---------------------------------------------------------------------------
// Addresses, written independently of lib/core/cidr.ts so the fake can disagree with it

function normalizeAddress(text: string, family: Family): string {
  const slash = text.indexOf("/");
  const host = slash < 0 ? text : text.slice(0, slash);
  const bits = family === "ipv4" ? 32 : 128;
  const address = family === "ipv4" ? parseIpv4(host) : parseIpv6(host);
  if (address === undefined) throw new RestoreProblem(`host/network \`${host}' not found`);
  const prefixText = slash < 0 ? String(bits) : text.slice(slash + 1);
  const prefix = /^\d+$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= bits)) {
    throw new RestoreProblem(`invalid mask \`${prefixText}' specified`);
  }
  const all = (1n << BigInt(bits)) - 1n;
  const network = address & (all ^ ((1n << BigInt(bits - prefix)) - 1n));
  return `${family === "ipv4" ? formatIpv4(network) : formatIpv6(network)}/${prefix}`;
}

function parseIpv4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((part) => /^\d{1,3}$/.test(part))) return undefined;
  if (parts.some((part) => Number(part) > 255)) return undefined;
  return parts.reduce((sum, part) => (sum << 8n) | BigInt(part), 0n);
}

function formatIpv4(address: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((address >> shift) & 0xffn)).join(".");
}

function parseIpv6(text: string): bigint | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (half: string) => (half === "" ? [] : half.split(":"));
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  if (!all.every((group) => /^[0-9a-fA-F]{1,4}$/.test(group))) return undefined;
  return all.reduce((sum, group) => (sum << 16n) | BigInt(`0x${group}`), 0n);
}

/** inet_ntop: lowercase, the longest run of two or more zero groups (the first on a tie) as `::`. */
function formatIpv6(address: bigint): string {
  const groups = Array.from(
    { length: 8 },
    (_, index) => Number((address >> BigInt(16 * (7 - index))) & 0xffffn),
  );
  let best = { start: -1, length: 0 };
  for (let start = 0; start < 8;) {
    let length = 0;
    while (start + length < 8 && groups[start + length] === 0) length++;
    if (length > best.length) best = { start, length };
    start += Math.max(length, 1);
  }
  const hex = groups.map((group) => group.toString(16));
  if (best.length < 2) return hex.join(":");
  const head = hex.slice(0, best.start).join(":");
  const tail = hex.slice(best.start + best.length).join(":");
  return `${head}::${tail}`;
}
