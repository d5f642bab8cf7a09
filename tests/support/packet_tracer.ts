/**
 * A small packet tracer over the rules of our chain as rendered
 * (`chainRuleLines`): first match wins, as in netfilter. It knows exactly
 * the shapes we render (`-s`, `-d`, `-o`, `-p`, `-m comment`, `-m statistic`,
 * `-m mark`, `-j RETURN`, `-j ACCEPT`, `-j MASQUERADE ...`,
 * `-j SNAT --to-source ...`) and fails loudly on anything else, so a
 * rendering change cannot slip past it. Deliberately independent of
 * lib/policy/decision.ts and lib/iptables/live_trace.ts: the property test holds
 * the rendered rules and the decision function to each other through it.
 *
 * @module
 */

import { parseCidr } from "../../lib/net/cidr.ts";

/** A packet on its way through our chain. */
export interface TracerPacket {
  /** The destination address as a number, of the chain's family. */
  readonly destination: bigint;
  /** The source address as a number. */
  readonly source: bigint;
  /** The IP protocol, as `-p` names it. */
  readonly protocol: "tcp" | "udp" | "sctp" | "icmp";
  /** Whether each `-m statistic` match fires (each new connection draws anew). */
  readonly statisticFires: boolean;
  /** The interface it leaves by (`-o`; a final `+` in the rule is a prefix wildcard). */
  readonly outputInterface?: string;
  /** Its fwmark (`-m mark --mark V/M`); 0 when not given. */
  readonly mark?: number;
}

/** How our chain ends for a packet, and the address a SNAT rewrites the source to. */
export interface TraceOutcome {
  /** The deciding target; `END` when no rule matched (only possible with `-o` rules). */
  readonly target: "RETURN" | "ACCEPT" | "MASQUERADE" | "SNAT" | "END";
  /** `--to-source` without its ports (IPv6 brackets dropped). */
  readonly toSource?: string;
}

/** Splits like iptables-restore: whitespace separates, double quotes group. */
function words(line: string): string[] {
  const out: string[] = [];
  let current = "";
  let quoted = false;
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "\\" && quoted) {
      current += line[++i];
      continue;
    }
    if (c === '"') {
      quoted = !quoted;
      inWord = true;
      continue;
    }
    if (c === " " && !quoted) {
      if (inWord) out.push(current);
      current = "";
      inWord = false;
      continue;
    }
    current += c;
    inWord = true;
  }
  if (inWord) out.push(current);
  return out;
}

function inside(text: string, address: bigint): boolean {
  const cidr = parseCidr(text);
  if (!cidr.ok) throw new Error(`tracer: bad CIDR ${text}`);
  const bits = cidr.value.family === "ipv4" ? 32 : 128;
  const hostBits = BigInt(bits - cidr.value.prefix);
  return (address >> hostBits) === (cidr.value.address >> hostBits);
}

/** What our chain does with `packet`: the first rule that matches decides. */
export function traceChain(
  lines: readonly string[],
  packet: TracerPacket,
): "masquerade" | "keep source" {
  const { target } = traceOutcome(lines, packet);
  return target === "MASQUERADE" || target === "SNAT" ? "masquerade" : "keep source";
}

/** The target that decides for `packet` in our chain, first match wins. */
export function traceOutcome(lines: readonly string[], packet: TracerPacket): TraceOutcome {
  for (const line of lines) {
    const w = words(line);
    if (w[0] !== "-A") throw new Error(`tracer: not a rule: ${line}`);
    let matches = true;
    let target: string | undefined;
    let toSource: string | undefined;
    for (let i = 2; i < w.length && target === undefined; i++) {
      switch (w[i]) {
        // The value is read first: `&&=` would skip reading it once a match has failed.
        case "-s": {
          const value = w[++i];
          matches = inside(value, packet.source) && matches;
          break;
        }
        case "-d": {
          const value = w[++i];
          matches = inside(value, packet.destination) && matches;
          break;
        }
        case "-p": {
          const value = w[++i];
          matches = value === packet.protocol && matches;
          break;
        }
        case "-o": {
          const value = w[++i];
          const name = packet.outputInterface;
          if (name === undefined) throw new Error(`tracer: -o needs the packet's interface`);
          matches = (value.endsWith("+") ? name.startsWith(value.slice(0, -1)) : name === value) &&
            matches;
          break;
        }
        case "-m":
          if (w[i + 1] === "comment" && w[i + 2] === "--comment") i += 3;
          else if (w[i + 1] === "statistic") {
            if (w[i + 2] !== "--mode" || w[i + 3] !== "random" || w[i + 4] !== "--probability") {
              throw new Error(`tracer: unexpected statistic match: ${line}`);
            }
            matches = packet.statisticFires && matches;
            i += 5;
          } else if (w[i + 1] === "mark" && w[i + 2] === "--mark") {
            const [value, mask] = w[i + 3].split("/").map(Number);
            matches = (((packet.mark ?? 0) & mask) >>> 0) === value && matches;
            i += 3;
          } else throw new Error(`tracer: unexpected match -m ${w[i + 1]}: ${line}`);
          break;
        case "-j":
          target = w[++i];
          if (target === "SNAT") {
            if (w[i + 1] !== "--to-source") throw new Error(`tracer: SNAT without --to-source`);
            const to = w[i + 2];
            toSource = to.startsWith("[")
              ? to.slice(1, to.indexOf("]"))
              : to.split(":").length === 2
              ? to.split(":")[0]
              : to;
          }
          break;
        default:
          throw new Error(`tracer: unexpected word ${JSON.stringify(w[i])}: ${line}`);
      }
    }
    if (!matches) continue;
    if (target === "RETURN" || target === "ACCEPT" || target === "MASQUERADE") return { target };
    if (target === "SNAT") return { target, toSource };
    throw new Error(`tracer: unexpected target ${target}: ${line}`);
  }
  // Only a last rule limited to an interface lets a packet leave the chain unmatched.
  if (!/ -o /.test(lines.at(-1) ?? "")) {
    throw new Error("tracer: fell off the end of our chain (the last rule must masquerade)");
  }
  return { target: "END" };
}
