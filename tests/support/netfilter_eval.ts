/**
 * Two small packet evaluators, pure, for the equivalence test: one walks our
 * iptables chain as `iptables-save` lines (plus the POSTROUTING jump's
 * `! --dst-type LOCAL`), the other our nft table as the `nft -f` text we
 * render. Each gives, for a packet's destination, protocol and whether the
 * destination is local, the masquerade decision: keep the source, or
 * masquerade with the sequence of (port range, 31-bit probability) tries a
 * new connection goes through. Equal sequences mean equal port
 * distributions. Both read text, not lib/ data, so they check what the
 * kernel would be given.
 *
 * @module
 */

import { parseCidr } from "../../lib/net/cidr.ts";

export interface Packet {
  readonly family: "ipv4" | "ipv6";
  readonly destination: bigint;
  /** Checked against source exemptions (`ip saddr @set`) when given. */
  readonly source?: bigint;
  readonly protocol: "tcp" | "udp" | "sctp" | "icmp";
  /** What `fib daddr type local` and `-m addrtype --dst-type LOCAL` see. */
  readonly local: boolean;
}

export type Decision =
  | { readonly kind: "keep" }
  | {
    readonly kind: "masquerade";
    readonly randomFully: boolean;
    /** Tried in order; `stored` is the 31-bit probability of taking it, absent for "always". */
    readonly tries: readonly { readonly ports?: string; readonly stored?: number }[];
  };

interface Range {
  start: bigint;
  end: bigint;
}

function rangeOf(text: string, family: "ipv4" | "ipv6"): Range {
  const bits = family === "ipv4" ? 32 : 128;
  if (text.includes("-")) {
    const [first, last] = text.split("-");
    return { start: rangeOf(first, family).start, end: rangeOf(last, family).start };
  }
  const parsed = parseCidr(text.includes("/") ? text : `${text}/${bits}`);
  if (!parsed.ok) throw new Error(`evaluator: bad address ${text}: ${parsed.error}`);
  const size = 1n << BigInt(bits - parsed.value.prefix);
  return { start: parsed.value.address, end: parsed.value.address + size - 1n };
}

function inRange(range: Range, address: bigint): boolean {
  return address >= range.start && address <= range.end;
}

/** Follows the tries of a masquerade chain to its unconditional end. */
function finish(
  tries: { ports?: string; stored?: number }[],
  randomFully: boolean,
): Decision {
  return { kind: "masquerade", randomFully, tries };
}

/** The iptables dataplane: `chainLines` are `-A CHAIN ...` as rules.ts renders them. */
export function iptablesDecision(chainLines: readonly string[], packet: Packet): Decision {
  if (packet.local) return { kind: "keep" };
  const tries: { ports?: string; stored?: number }[] = [];
  let randomFully = false;
  for (const line of chainLines) {
    const words = line.replace(/--comment "(?:[^"\\]|\\.)*"/g, "--comment C").split(" ");
    const option = (name: string) => {
      const index = words.indexOf(name);
      return index < 0 ? undefined : words[index + 1];
    };
    const destination = option("-d");
    if (destination && !inRange(rangeOf(destination, packet.family), packet.destination)) continue;
    const protocol = option("-p");
    if (protocol && protocol !== packet.protocol) continue;
    const target = option("-j");
    if (target === "RETURN") {
      if (tries.length > 0) throw new Error("evaluator: RETURN after a probabilistic MASQUERADE");
      return { kind: "keep" };
    }
    if (target !== "MASQUERADE") throw new Error(`evaluator: unknown target in ${line}`);
    randomFully = words.includes("--random-fully");
    const probability = option("--probability");
    const stored = probability === undefined
      ? undefined
      : Math.round(Number(probability) * 0x80000000);
    tries.push({ ports: option("--to-ports")?.replace(/^(\d+)$/, "$1-$1"), stored });
    if (stored === undefined) return finish(tries, randomFully);
  }
  throw new Error("evaluator: fell off the end of the chain (no final MASQUERADE)");
}

/** The nftables dataplane: `table` is one `table ... { ... }` block as nft_ruleset.ts renders it. */
export function nftDecision(table: string, packet: Packet): Decision {
  const sets = new Map<string, Range[]>();
  const lines = table.split("\n").map((line) => line.trim());
  const rules: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const set = /^set (\S+) \{$/.exec(lines[i]);
    if (set) {
      const elements: Range[] = [];
      for (i++; lines[i] !== "}"; i++) {
        if (lines[i] === "elements = {") {
          for (i++; lines[i] !== "}"; i++) {
            elements.push(rangeOf(lines[i].replace(/,$/, ""), packet.family));
          }
        }
      }
      sets.set(set[1], elements);
      continue;
    }
    if (/^chain \S+ \{$/.test(lines[i])) {
      for (i += 2; lines[i] !== "}"; i++) rules.push(lines[i]);
    }
  }
  const ip = packet.family === "ipv4" ? "ip" : "ip6";
  const tries: { ports?: string; stored?: number }[] = [];
  let randomFully = false;
  for (const rule of rules) {
    let words = rule.split(" ");
    let matches = true;
    while (matches && words.length > 0 && words[0] !== "return" && words[0] !== "masquerade") {
      if (words[0] === "fib") {
        matches = packet.local;
        words = words.slice(4);
      } else if (words[0] === ip && (words[1] === "daddr" || words[1] === "saddr")) {
        const value = words[2];
        const address = words[1] === "daddr" ? packet.destination : packet.source;
        matches = address !== undefined &&
          (value.startsWith("@")
            ? (sets.get(value.slice(1)) ?? []).some((range) => inRange(range, address))
            : inRange(rangeOf(value, packet.family), address));
        words = words.slice(3);
      } else if (words[0] === "meta" && words[1] === "l4proto") {
        matches = words[2] === packet.protocol;
        words = words.slice(3);
      } else if (words[0] === "numgen") {
        // Taken with probability stored / 2^31 (mod is 2^31), as a try below.
        words = words.slice(0);
        break;
      } else throw new Error(`evaluator: unknown match in ${rule}`);
    }
    if (!matches) continue;
    let stored: number | undefined;
    if (words[0] === "numgen") {
      if (words[3] !== "2147483648" || words[4] !== "<") throw new Error(`evaluator: ${rule}`);
      stored = Number(words[5]);
      words = words.slice(6);
    }
    if (words[0] === "return") {
      if (tries.length > 0) throw new Error("evaluator: return after a probabilistic masquerade");
      return { kind: "keep" };
    }
    if (words[0] !== "masquerade") throw new Error(`evaluator: unknown statement in ${rule}`);
    randomFully = words.includes("fully-random");
    const to = words.indexOf("to");
    tries.push({ ports: to < 0 ? undefined : words[to + 1].slice(1), stored });
    if (stored === undefined) return finish(tries, randomFully);
  }
  throw new Error("evaluator: fell off the end of the chain (no final masquerade)");
}
