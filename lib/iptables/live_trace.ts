/**
 * What the live nat table would do with one packet: a tracer over POSTROUTING and our chain
 * as `iptables -t nat -S` lists them. A match whose answer does not follow from the packet
 * (`-p`, an unknown `-m`, ...) "cannot be evaluated": the tracer follows both ways and returns
 * every outcome it reaches. A jump to any other chain is an outcome of its own ("unknown").
 *
 * @module
 */

import { inCidr, type IpAddress } from "../net/address.ts";
import { parseCidr } from "../net/cidr.ts";
import type { Verdict } from "../policy/decision.ts";
import { interfaceMatches } from "../settings/output.ts";
import type { LiveNatTable } from "./plan.ts";

/** The packet as the live rules see it. */
export interface TracedPacket {
  /** Where it goes. */
  readonly destination: IpAddress;
  /** Where it comes from; undefined: some pod, address not given. */
  readonly source?: IpAddress;
  /** Whether the destination is one of the node's addresses (assumed not, unless loopback). */
  readonly localDestination: boolean;
  /** The kube-proxy bit and whether the packet has it: `-m mark` on exactly it is evaluated. */
  readonly kubeProxyMark?: { readonly mark: number; readonly marked: boolean };
  /** The interface the packet leaves by, when known; `-o NAME` is then evaluated. */
  readonly outputInterface?: string;
}

/** One way the live rules can end for the packet. */
export interface LiveOutcome {
  /** What happens to the source; unknown for a jump to a chain that was not read. */
  readonly verdict: Verdict | "unknown";
  /** The deciding rule as listed, or the chain policy. */
  readonly rule: string;
  /** Where that rule is, relative to our jump. */
  readonly stage: "before our jump" | "our chain" | "after our jump" | "policy";
  /** The matches on the way that could not be evaluated and were taken as satisfied. */
  readonly assumed: readonly string[];
  /** Why the verdict is unknown (a jump to an unread chain, an unknown target). */
  readonly unknownBecause?: string;
}

/** Splits like iptables-restore: space or tab separates, double quotes group, `\"` is a quote. */
function ruleWords(line: string): { readonly text: string; readonly quoted: boolean }[] {
  // A word: unquoted characters and quoted runs (to the closing quote or the end of the line).
  const words = line.match(/(?:[^ \t"]|"(?:\\["\\]|[^"\\]|\\)*(?:"|$))+/g) ?? [];
  return words.map((word) => ({
    text: word.replace(quotedRun, (_, inner: string) => inner.replace(/\\(["\\])/g, "$1")),
    quoted: word.includes('"'),
  }));
}

const quotedRun = /"((?:\\["\\]|[^"\\]|\\)*)(?:"|$)/g;

type Match = (packet: TracedPacket) => boolean | { readonly unknown: string };
type ModuleOption = { readonly negated: boolean; readonly name: string; readonly values: string[] };

/** `-A CHAIN ...`'s matches and `-j`/`-g` target; a word it cannot place "cannot evaluate". */
function parseRule(line: string) {
  const words = ruleWords(line).slice(2);
  const matches: Match[] = [];
  let target: { readonly goto: boolean; readonly name: string } | undefined;
  let i = 0;
  while (i < words.length) {
    const negated = words[i].text === "!" && !words[i].quoted;
    if (negated) i++;
    const option = words[i]?.text;
    if (option === undefined) break;
    if (option === "-j" || option === "--jump" || option === "-g" || option === "--goto") {
      target = { goto: option === "-g" || option === "--goto", name: words[i + 1]?.text ?? "" };
      break; // target options follow; they do not change whether the rule matches
    }
    if (option === "-m" || option === "--match") {
      const module = words[i + 1]?.text ?? "";
      const options: ModuleOption[] = [];
      i += 2;
      const optionsAt = i;
      while (i < words.length) {
        const neg = words[i].text === "!" && !words[i].quoted;
        const next = words[i + (neg ? 1 : 0)];
        if (!next || next.quoted || !next.text.startsWith("--")) break;
        i += neg ? 2 : 1;
        const start = i;
        while (i < words.length && (words[i].quoted || !/^(-|!$)/.test(words[i].text))) i++;
        const values = words.slice(start, i).map((word) => word.text);
        options.push({ negated: neg, name: next.text, values });
      }
      const shown = ["-m", module, ...words.slice(optionsAt, i).map((word) => word.text)];
      matches.push(moduleMatch(module, options, shown.join(" ")));
      continue;
    }
    const value = words[i + 1]?.text ?? "";
    i += 2;
    const shown = `${negated ? "! " : ""}${option} ${value}`;
    const unknown = option === "-p" ? `${shown} (depends on the protocol)` : shown;
    matches.push(topLevelMatch(option, value, negated, shown) ?? (() => ({ unknown })));
  }
  return { matches, target };
}

/** `-s`, `-d` or `-o` (long names too); undefined for any other option. */
function topLevelMatch(option: string, value: string, negated: boolean, shown: string) {
  if (option === "-o" || option === "--out-interface") {
    // `+` is every interface; a name needs the route, which the agent may not read.
    if (value === "+") return () => !negated;
    return (packet: TracedPacket) =>
      packet.outputInterface === undefined
        ? { unknown: `${shown} (the interface the packet leaves by is not known)` }
        : interfaceMatches(value, packet.outputInterface) !== negated;
  }
  const isSource = option === "-s" || option === "--source";
  if (!isSource && option !== "-d" && option !== "--destination") return undefined;
  const hostPrefix = value.includes(":") ? 128 : 32;
  const cidr = parseCidr(value.includes("/") ? value : `${value}/${hostPrefix}`);
  return (packet: TracedPacket) => {
    if (!cidr.ok) return { unknown: shown };
    const address = isSource ? packet.source : packet.destination;
    if (address === undefined) return { unknown: `${shown} (give --explain-source)` };
    return inCidr(cidr.value, address) !== negated;
  };
}

function moduleMatch(module: string, options: readonly ModuleOption[], shown: string): Match {
  if (module === "comment") return () => true;
  if (module === "mark") return markMatch(options, shown);
  if (module !== "addrtype") return () => ({ unknown: shown });
  return (packet) => {
    for (const option of options) {
      const types = (option.values[0] ?? "").split(",");
      // A forwarded pod packet's source is never an address of the node.
      const actual = option.name === "--dst-type"
        ? addressType(packet.destination, packet.localDestination)
        : option.name === "--src-type"
        ? (packet.source === undefined ? "UNICAST" : addressType(packet.source, false))
        : undefined;
      if (actual === undefined || types.some((type) => !knownTypes.has(type))) {
        return { unknown: shown };
      }
      if (types.includes(actual) === option.negated) return false;
    }
    return true;
  };
}

/** `-m mark [!] --mark V/M` on exactly the kube-proxy bit, when the packet says whether it has it. */
function markMatch(options: readonly ModuleOption[], shown: string): Match {
  const [option] = options;
  const parts = options.length === 1 && option.name === "--mark" && option.values.length === 1
    ? /^(0x[0-9a-f]+|\d+)(?:\/(0x[0-9a-f]+|\d+))?$/i.exec(option.values[0])
    : null;
  const mask = Number(parts?.[2] ?? 0xffffffff);
  return (packet) => {
    const known = packet.kubeProxyMark;
    if (!parts || known === undefined || mask !== known.mark) return { unknown: shown };
    return ((known.marked ? known.mark : 0) === Number(parts[1])) !== option.negated;
  };
}

/** The address types whose presence follows from the address alone (and the local flag). */
const knownTypes = new Set(["LOCAL", "UNICAST", "MULTICAST", "BROADCAST"]);

function addressType(address: IpAddress, local: boolean): string {
  if (local) return "LOCAL";
  const multicast = address.family === "ipv4"
    ? address.address >> 28n === 0xen
    : address.address >> 120n === 0xffn;
  if (multicast) return "MULTICAST";
  return address.family === "ipv4" && address.address === 0xffffffffn ? "BROADCAST" : "UNICAST";
}

/** Targets that act and let the packet go on to the next rule. */
const nonTerminating = new Set(
  "LOG NFLOG MARK CONNMARK TRACE AUDIT CLASSIFY DSCP TOS TTL HL TCPMSS CHECKSUM ULOG".split(" "),
);
/** Targets that rewrite the source: the packet is masqueraded as far as the pod is concerned. */
const rewritesSource = new Set(["MASQUERADE", "SNAT", "NETMAP"]);

/** Every way POSTROUTING (and our chain) can end for `packet`, deduplicated, in rule order. */
export function traceLive(
  live: LiveNatTable,
  ourChain: string,
  packet: TracedPacket,
): LiveOutcome[] {
  const postrouting = live.rules.get("POSTROUTING") ?? [];
  const ours = live.rules.get(ourChain) ?? [];
  // Each rule parsed once, when the walk first reaches it.
  const parsed = new Map<string, ReturnType<typeof parseRule>>();
  const parse = (line: string) => parsed.getOrInsertComputed(line, parseRule);
  const firstJump = postrouting.findIndex((line) => parse(line).target?.name === ourChain);
  const policy: LiveOutcome[] = [{
    verdict: "keep source",
    rule: "the POSTROUTING policy (ACCEPT): no rule rewrote the source",
    stage: "policy",
    assumed: [],
  }];

  const memo = new Map<string, LiveOutcome[]>();
  /** The outcomes from rule `from` of `chain`; `returnTo` is what follows the chain's end. */
  const walk = (
    chain: string,
    rules: readonly string[],
    from: number,
    returnTo: () => LiveOutcome[],
    key: string,
  ): LiveOutcome[] => {
    const memoKey = `${key}:${from}`;
    if (memo.has(memoKey)) return memo.get(memoKey)!;
    let result: LiveOutcome[] | undefined;
    for (let index = from; index < rules.length && result === undefined; index++) {
      const line = rules[index];
      const { matches, target } = parse(line);
      const results = matches.map((match) => match(packet));
      if (results.includes(false) || !target || nonTerminating.has(target.name)) continue;
      const unknown = results.flatMap((result) => typeof result === "object" ? result.unknown : []);
      const stage: LiveOutcome["stage"] = chain === ourChain
        ? "our chain"
        : firstJump < 0 || index < firstJump
        ? "before our jump"
        : "after our jump";
      const rest = () => walk(chain, rules, index + 1, returnTo, key);
      const outcome = (verdict: Verdict | "unknown", unknownBecause?: string): LiveOutcome[] => [
        { verdict, rule: line, stage, assumed: [], ...(unknownBecause ? { unknownBecause } : {}) },
      ];
      let taken: LiveOutcome[];
      if (rewritesSource.has(target.name)) taken = outcome("masquerade");
      else if (target.name === "ACCEPT") taken = outcome("keep source");
      else if (target.name === "RETURN") {
        // Our RETURN decides, unless a later POSTROUTING rule still rewrites the source.
        taken = chain === "POSTROUTING"
          ? outcome("keep source")
          : returnTo().map((after) =>
            after.stage === "policy"
              ? { ...after, rule: line, stage, verdict: "keep source" }
              : after
          );
      } else if (chain === "POSTROUTING" && target.name === ourChain) {
        // -g does not come back: the end of our chain is then the end of POSTROUTING.
        const afterwards = target.goto ? returnTo : rest;
        taken = walk(ourChain, ours, 0, afterwards, `${ourChain}@${chain}:${index}`);
      } else {
        const what = otherTargets.has(target.name)
          ? `target ${target.name}`
          : `jumps to chain ${target.name}, which --explain does not read`;
        // A chain that returns lets POSTROUTING go on.
        taken = [...outcome("unknown", what), ...(target.goto ? [] : rest())];
      }
      const assumed = unknown.join(", ");
      result = unknown.length === 0 ? taken : [
        ...taken.map((outcome) => ({ ...outcome, assumed: [assumed, ...outcome.assumed] })),
        ...rest(),
      ];
    }
    result ??= returnTo();
    memo.set(memoKey, result);
    return result;
  };
  const outcomeKey = (outcome: LiveOutcome) =>
    `${outcome.verdict}\u0000${outcome.rule}\u0000${outcome.assumed.join("\u0000")}`;
  const outcomes = walk("POSTROUTING", postrouting, 0, () => policy, "POSTROUTING");
  return [...Map.groupBy(outcomes, outcomeKey).values()].map(([first]) => first);
}

/** Targets that are not chains and whose effect here the tracer does not model. */
const otherTargets = new Set(["DNAT", "REDIRECT", "DROP", "REJECT", "CT", "NOTRACK", "QUEUE"]);
