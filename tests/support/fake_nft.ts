/**
 * An in-memory `NftClient`: our tables of both families, written by the
 * `nft -f` input the agent sends (parsed with nft's rules for what we emit:
 * `table` blocks with sets and one chain, `delete table`, `add element`,
 * `delete element`, each input one all-or-nothing transaction) and listed as
 * `nft -j list table` prints them (nft 1.0.6's JSON: a modulus of 2^31
 * printed as a negative number, bare addresses for /32 and /128 elements,
 * no `elem` key on an empty set). Written independently of
 * lib/nftables/parse.ts, so the two can disagree. As nft does, it masks an
 * element's host bits, takes an element already present without error, adds
 * to a set or chain declared again, and lists `to :7-7` as a range.
 * tests/root/fake_conformance_test.ts checks it against the real nft.
 *
 * Like fake_iptables.ts it counts calls, records payloads, can fail the next
 * calls, and lets a test play another program editing the table (drift,
 * hostile content) without counting that as our write.
 *
 * @module
 */

import type { Family } from "../../lib/net/cidr.ts";
import { applyArgs, listTableArgs, type NftClient } from "../../lib/nftables/client.ts";
import { ToolError } from "../../lib/base/tool.ts";

type Json = Record<string, unknown>;

interface FakeSet {
  name: string;
  type: string;
  flags: string[];
  elements: { start: bigint; end: bigint }[];
  /** Properties a foreign writer added (timeout, comment, ...). */
  extra: Json;
}

interface FakeChain {
  name: string;
  base?: { type: string; hook: string; prio: number; policy: string };
  /** Each rule's JSON expressions. */
  rules: { expr: unknown[]; comment?: string }[];
}

interface FakeTable {
  sets: FakeSet[];
  chains: FakeChain[];
  /** Other objects a foreign writer added, as listed entries. */
  others: Json[];
}

export interface FakeNftCall {
  readonly op: "list" | "apply";
  readonly family?: Family;
  readonly payload?: string;
  readonly error?: ToolError;
}

class Problem extends Error {}

export class FakeNft implements NftClient {
  readonly calls: FakeNftCall[] = [];
  /** Each call takes this long (a timer that honours the abort signal). */
  latencyMs = 0;
  #tables = new Map<Family, FakeTable>();
  readonly #failures: Record<FakeNftCall["op"], ("failed" | "missing")[]> = {
    list: [],
    apply: [],
  };

  get listCalls(): number {
    return this.calls.filter((call) => call.op === "list").length;
  }

  get applyCalls(): number {
    return this.calls.filter((call) => call.op === "apply").length;
  }

  get payloads(): string[] {
    return this.calls.flatMap((call) => (call.op === "apply" ? [call.payload ?? ""] : []));
  }

  failNextApplies(count: number, failure: "failed" | "missing" = "failed"): void {
    for (let i = 0; i < count; i++) this.#failures.apply.push(failure);
  }

  failNextLists(count: number, failure: "failed" | "missing" = "failed"): void {
    for (let i = 0; i < count; i++) this.#failures.list.push(failure);
  }

  clearFailures(): void {
    this.#failures.list.length = 0;
    this.#failures.apply.length = 0;
  }

  async listTable(family: Family, signal?: AbortSignal): Promise<string | null> {
    const call: { op: "list"; family: Family; error?: ToolError } = { op: "list", family };
    this.calls.push(call);
    try {
      await this.#enter(["nft", ...listTableArgs(family)].join(" "), "list", signal);
    } catch (error) {
      if (error instanceof ToolError) call.error = error;
      throw error;
    }
    return this.list(family);
  }

  async apply(payload: string, signal?: AbortSignal): Promise<void> {
    const call: { op: "apply"; payload: string; error?: ToolError } = { op: "apply", payload };
    this.calls.push(call);
    const commandLine = ["nft", ...applyArgs].join(" ");
    try {
      await this.#enter(commandLine, "apply", signal);
      this.#transaction(payload, commandLine);
    } catch (error) {
      if (error instanceof ToolError) call.error = error;
      throw error;
    }
  }

  /** Another program's `nft -f`: same semantics, not counted. */
  external(payload: string): void {
    this.#transaction(payload, "nft -f (external)");
  }

  /** Another program edits the table directly (what `nft -f` of ours never writes). */
  edit(family: Family, change: (table: FakeTableView) => void): void {
    const table = this.#tables.get(family);
    if (!table) throw new Error(`no ${family} table to edit`);
    change(table as FakeTableView);
  }

  /** Whether our table of `family` exists. */
  has(family: Family): boolean {
    return this.#tables.has(family);
  }

  /** The listing without counting it: what `nft -j list table` would print, or null. */
  list(family: Family): string | null {
    const table = this.#tables.get(family);
    return table ? listing(family, table) : null;
  }

  /** The destination set's elements as nft prints them, for assertions. */
  elements(family: Family, set = "nonmasq-dst"): string[] {
    const found = this.#tables.get(family)?.sets.find((candidate) => candidate.name === set);
    return found ? found.elements.map((element) => elementText(family, element)) : [];
  }

  async #enter(commandLine: string, op: FakeNftCall["op"], signal?: AbortSignal) {
    if (this.latencyMs > 0) await delay(this.latencyMs, signal);
    if (signal?.aborted) {
      throw new ToolError("nft aborted", "failed", commandLine, { cause: signal.reason });
    }
    const failure = this.#failures[op].shift();
    if (failure === "missing") {
      throw new ToolError("nft not found: install nftables", "missing", commandLine);
    }
    if (failure === "failed") {
      throw new ToolError(
        `${commandLine} exited with status 1: Error: injected failure`,
        "failed",
        commandLine,
      );
    }
  }

  #transaction(payload: string, commandLine: string) {
    const working = new Map([...this.#tables].map(([family, table]) => [family, clone(table)]));
    const lines = payload.split("\n");
    try {
      for (let i = 0; i < lines.length; i++) {
        const line = lines[i].trim();
        if (line === "" || line.startsWith("#")) continue;
        let match: RegExpExecArray | null;
        if ((match = /^table (ip6?) ip-masq-agent$/.exec(line))) {
          const family = familyOf(match[1]);
          if (!working.has(family)) working.set(family, { sets: [], chains: [], others: [] });
        } else if ((match = /^delete table (ip6?) ip-masq-agent$/.exec(line))) {
          const family = familyOf(match[1]);
          if (!working.delete(family)) throw new Problem("No such file or directory");
        } else if ((match = /^table (ip6?) ip-masq-agent \{$/.exec(line))) {
          const family = familyOf(match[1]);
          const table = working.get(family) ?? { sets: [], chains: [], others: [] };
          working.set(family, table);
          i = readBlock(lines, i + 1, family, table);
        } else if (
          (match = /^(add|delete) element (ip6?) ip-masq-agent (\S+) \{ (.*) \}$/.exec(line))
        ) {
          const family = familyOf(match[2]);
          const set = working.get(family)?.sets.find((candidate) => candidate.name === match![3]);
          if (!set) throw new Problem("No such file or directory");
          const elements = match[4].split(",").map((text) => parseElement(family, text.trim()));
          if (match[1] === "delete") {
            for (const element of elements) {
              const index = set.elements.findIndex((candidate) =>
                candidate.start === element.start && candidate.end === element.end
              );
              if (index < 0) throw new Problem("Could not process rule: No such file or directory");
              set.elements.splice(index, 1);
            }
          } else addElements(set, elements);
        } else throw new Problem(`syntax error: ${line.slice(0, 60)}`);
      }
    } catch (error) {
      if (error instanceof Problem) {
        throw new ToolError(
          `${commandLine} exited with status 1: Error: ${error.message}`,
          "failed",
          commandLine,
        );
      }
      throw error;
    }
    this.#tables = working;
  }
}

/** What `edit` hands a test: the table's parts, to change as another program would. */
export type FakeTableView = FakeTable;

function familyOf(word: string): Family {
  return word === "ip" ? "ipv4" : "ipv6";
}

function clone(table: FakeTable): FakeTable {
  return {
    sets: table.sets.map((set) => ({ ...set, flags: [...set.flags], elements: [...set.elements] })),
    chains: table.chains.map((chain) => ({ ...chain, rules: [...chain.rules] })),
    others: [...table.others],
  };
}

function readBlock(lines: string[], from: number, family: Family, table: FakeTable): number {
  let i = from;
  for (; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "}") return i;
    let match: RegExpExecArray | null;
    if ((match = /^set (\S+) \{$/.exec(line))) {
      // Declaring a set that exists adds to it (nft's `add`); its type and flags must match.
      const existing = table.sets.find((candidate) => candidate.name === match![1]);
      const set: FakeSet = existing ??
        { name: match[1], type: "", flags: [], elements: [], extra: {} };
      const declared = { type: set.type, flags: set.flags.join(",") };
      if (!existing) table.sets.push(set);
      let collecting = false;
      const pending: string[] = [];
      for (i++; i < lines.length; i++) {
        const inner = lines[i].trim();
        if (collecting) {
          if (inner === "}") {
            collecting = false;
            addElements(set, pending.map((text) => parseElement(family, text)));
            continue;
          }
          pending.push(...inner.split(",").map((text) => text.trim()).filter((text) => text));
          continue;
        }
        if (inner === "}") break;
        if ((match = /^type (\S+)$/.exec(inner))) set.type = match[1];
        else if ((match = /^flags (\S+)$/.exec(inner))) set.flags = match[1].split(",");
        else if (inner === "elements = {") collecting = true;
        else throw new Problem(`unexpected set line: ${inner}`);
      }
      if (existing && (declared.type !== set.type || declared.flags !== set.flags.join(","))) {
        throw new Problem(`Could not process rule: File exists (set ${set.name} redeclared)`);
      }
      continue;
    }
    if ((match = /^chain (\S+) \{$/.exec(line))) {
      // Declaring a chain that exists appends its rules to it, as nft does.
      const existing = table.chains.find((candidate) => candidate.name === match![1]);
      const chain: FakeChain = existing ?? { name: match[1], rules: [] };
      if (!existing) table.chains.push(chain);
      for (i++; i < lines.length; i++) {
        const inner = lines[i].trim();
        if (inner === "}") break;
        // `srcnat - 1`: --postrouting-jump=insert (issue 17).
        const base = /^type nat hook postrouting priority srcnat( - 1)?; policy accept;$/.exec(
          inner,
        );
        if (base) {
          const prio = base[1] ? 99 : 100;
          chain.base = { type: "nat", hook: "postrouting", prio, policy: "accept" };
        } else chain.rules.push({ expr: ruleExpressions(family, inner) });
      }
      continue;
    }
    throw new Problem(`unexpected table line: ${line}`);
  }
  throw new Problem("unterminated table block");
}

function addElements(set: FakeSet, elements: { start: bigint; end: bigint }[]) {
  for (const element of elements) {
    // Adding an element that is already there is no error (nft's `add`, not `create`).
    if (set.elements.some((other) => other.start === element.start && other.end === element.end)) {
      continue;
    }
    if (set.elements.some((other) => other.start <= element.end && element.start <= other.end)) {
      throw new Problem("conflicting intervals specified");
    }
    set.elements.push(element);
  }
  set.elements.sort((a, b) => (a.start < b.start ? -1 : 1));
}

// --- addresses, independent of lib/net/cidr.ts

function bitsOf(family: Family): number {
  return family === "ipv4" ? 32 : 128;
}

function parseAddress(family: Family, text: string): bigint {
  if (family === "ipv4") {
    const parts = text.split(".");
    if (parts.length !== 4 || parts.some((part) => !/^\d{1,3}$/.test(part) || Number(part) > 255)) {
      throw new Problem(`bad address ${text}`);
    }
    return parts.reduce((sum, part) => (sum << 8n) | BigInt(part), 0n);
  }
  const halves = text.split("::");
  if (halves.length > 2) throw new Problem(`bad address ${text}`);
  const groups = (half: string) => (half === "" ? [] : half.split(":"));
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const all = [...head, ...Array(fill).fill("0"), ...tail];
  if (all.length !== 8 || all.some((group) => !/^[0-9a-f]{1,4}$/i.test(group))) {
    throw new Problem(`bad address ${text}`);
  }
  return all.reduce((sum, group) => (sum << 16n) | BigInt(`0x${group}`), 0n);
}

function formatAddress(family: Family, address: bigint): string {
  if (family === "ipv4") {
    return [24n, 16n, 8n, 0n].map((shift) => String((address >> shift) & 0xffn)).join(".");
  }
  const groups = Array.from(
    { length: 8 },
    (_, i) => Number((address >> BigInt(16 * (7 - i))) & 0xffffn),
  );
  let best = { start: -1, length: 1 };
  for (let start = 0; start < 8; start++) {
    let length = 0;
    while (start + length < 8 && groups[start + length] === 0) length++;
    if (length > best.length) best = { start, length };
  }
  const hex = groups.map((group) => group.toString(16));
  if (best.start < 0) return hex.join(":");
  return `${hex.slice(0, best.start).join(":")}::${hex.slice(best.start + best.length).join(":")}`;
}

function parseElement(family: Family, text: string): { start: bigint; end: bigint } {
  const bits = bitsOf(family);
  if (text.includes("-") && !text.includes("/")) {
    const [first, last] = text.split("-");
    const start = parseAddress(family, first);
    const end = parseAddress(family, last);
    if (end < start) throw new Problem(`bad range ${text}`);
    return { start, end };
  }
  const [address, prefixText] = text.split("/");
  const prefix = prefixText === undefined ? bits : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits) {
    throw new Problem(`bad prefix ${text}`);
  }
  const size = 1n << BigInt(bits - prefix);
  // nft masks an address with host bits set to its prefix, silently.
  const start = parseAddress(family, address) / size * size;
  return { start, end: start + size - 1n };
}

function elementJson(family: Family, element: { start: bigint; end: bigint }): unknown {
  const size = element.end - element.start + 1n;
  if ((size & (size - 1n)) === 0n && element.start % size === 0n) {
    const len = bitsOf(family) - (size.toString(2).length - 1);
    const addr = formatAddress(family, element.start);
    return len === bitsOf(family) ? addr : { prefix: { addr, len } };
  }
  return { range: [formatAddress(family, element.start), formatAddress(family, element.end)] };
}

function elementText(family: Family, element: { start: bigint; end: bigint }): string {
  const json = elementJson(family, element);
  if (typeof json === "string") return json;
  const value = json as { prefix?: { addr: string; len: number }; range?: string[] };
  return value.prefix ? `${value.prefix.addr}/${value.prefix.len}` : value.range!.join("-");
}

// --- rules: the text we write, as nft's JSON expressions

function ruleExpressions(family: Family, text: string): unknown[] {
  const words = text.split(" ");
  const expr: unknown[] = [];
  const ip = family === "ipv4" ? "ip" : "ip6";
  for (let i = 0; i < words.length;) {
    const rest = words.slice(i);
    if (rest[0] === "fib" && rest[1] === "daddr" && rest[2] === "type" && rest[3] === "local") {
      expr.push({
        match: { op: "==", left: { fib: { result: "type", flags: ["daddr"] } }, right: "local" },
      });
      i += 4;
    } else if (rest[0] === ip && (rest[1] === "daddr" || rest[1] === "saddr") && rest[2]) {
      const value = rest[2].startsWith("@")
        ? rest[2]
        : elementJson(family, parseElement(family, rest[2]));
      expr.push({
        match: { op: "==", left: { payload: { protocol: ip, field: rest[1] } }, right: value },
      });
      i += 3;
    } else if (rest[0] === "meta" && rest[1] === "l4proto" && rest[2]) {
      expr.push({ match: { op: "==", left: { meta: { key: "l4proto" } }, right: rest[2] } });
      i += 3;
    } else if (
      rest[0] === "numgen" && rest[1] === "random" && rest[2] === "mod" && rest[4] === "<"
    ) {
      // nft 1.0.6 prints the modulus as a signed 32-bit integer.
      const mod = Number(rest[3]) | 0;
      expr.push({
        match: {
          op: "<",
          left: { numgen: { mode: "random", mod, offset: 0 } },
          right: Number(rest[5]),
        },
      });
      i += 6;
    } else if (rest[0] === "meta" && rest[1] === "mark" && rest[2] === "&" && rest[4] === "==") {
      // As nft 1.0.6 lists it (issue 17's kube-proxy mark check).
      expr.push({
        match: {
          op: "==",
          left: { "&": [{ meta: { key: "mark" } }, Number(rest[3])] },
          right: Number(rest[5]),
        },
      });
      i += 6;
    } else if (rest[0] === "oifname" && rest[1]) {
      expr.push({
        match: { op: "==", left: { meta: { key: "oifname" } }, right: rest[1].slice(1, -1) },
      });
      i += 2;
    } else if (rest[0] === "snat" && rest[1] === "to") {
      const body: Json = {};
      if (rest[2] === ip && rest[3] === "saddr") {
        body.addr = { payload: { protocol: ip, field: "saddr" } };
        i += 4;
      } else {
        // `ADDR[:FIRST-LAST]`; IPv6 with ports as `[ADDR]:FIRST-LAST`.
        const ports = family === "ipv4"
          ? /^([^:]+)(?::(\d+)-(\d+))?$/.exec(rest[2])!
          : /^\[?([^\]]*?)\]?(?::(\d+)-(\d+))?$/.exec(rest[2])!;
        body.addr = ports[1];
        if (ports[2] !== undefined) body.port = { range: [Number(ports[2]), Number(ports[3])] };
        i += 3;
      }
      if (words[i] === "fully-random") {
        body.flags = "fully-random";
        i += 1;
      }
      expr.push({ snat: body });
    } else if (rest[0] === "return") {
      expr.push({ return: null });
      i += 1;
    } else if (rest[0] === "masquerade") {
      const body: Json = {};
      i += 1;
      if (words[i] === "to") {
        // `:7` lists as a port, `:7-7` as a range, even of one port.
        const [first, last] = words[i + 1].slice(1).split("-").map(Number);
        body.port = last === undefined ? first : { range: [first, last] };
        i += 2;
      }
      if (words[i] === "fully-random") {
        body.flags = "fully-random";
        i += 1;
      }
      expr.push({ masquerade: Object.keys(body).length === 0 ? null : body });
    } else throw new Problem(`the fake does not know the expression at: ${rest.join(" ")}`);
  }
  return expr;
}

function listing(family: Family, table: FakeTable): string {
  const nftFamily = family === "ipv4" ? "ip" : "ip6";
  const common = { family: nftFamily, table: "ip-masq-agent" };
  let handle = 1;
  const entries: unknown[] = [
    { metainfo: { version: "1.0.6", release_name: "Lester Gooch #5", json_schema_version: 1 } },
    { table: { family: nftFamily, name: "ip-masq-agent", handle: 1 } },
  ];
  for (const set of table.sets) {
    const body: Json = {
      family: nftFamily,
      name: set.name,
      table: "ip-masq-agent",
      type: set.type,
      handle: ++handle,
      flags: set.flags,
      ...set.extra,
    };
    if (set.elements.length > 0) body.elem = set.elements.map((e) => elementJson(family, e));
    entries.push({ set: body });
  }
  for (const chain of table.chains) {
    entries.push({ chain: { ...common, name: chain.name, handle: ++handle, ...chain.base } });
  }
  entries.push(...table.others);
  for (const chain of table.chains) {
    for (const rule of chain.rules) {
      const body: Json = { ...common, chain: chain.name, handle: ++handle, expr: rule.expr };
      if (rule.comment !== undefined) body.comment = rule.comment;
      entries.push({ rule: body });
    }
  }
  return JSON.stringify({ nftables: entries });
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
