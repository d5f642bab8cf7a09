/**
 * Rule specs as iptables stores and prints them: the restore tokenizer's
 * quoting, the canonical order and spelling of matches and targets, and
 * `xtables_save_string` quoting (see ../fake_iptables.ts).
 *
 * @module
 */

import type { Family } from "../../../lib/net/cidr.ts";
import { RestoreProblem } from "./restore_problem.ts";
import { normalizeAddress } from "./addresses.ts";
import type { NatTable, Rule } from "./table.ts";

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

export function parseRule(tokens: readonly string[], family: Family, table: NatTable): Rule {
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
      if (name === "DROP") {
        // Both backends refuse it in userspace, whatever the chain.
        throw new RestoreProblem(
          'The "nat" table is not intended for filtering, the use of DROP is therefore inhibited.',
        );
      }
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
