/**
 * Which iptables backend (nft or legacy) the node uses, from the evidence kubelet leaves, and each
 * backend's own tools (`iptables-nft-restore`, ...), never the plain `iptables*`: in the shipped
 * image those are the iptables-wrapper script, which cannot relink itself on a read-only root
 * filesystem and then fails every call.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";

/** An iptables backend: nf_tables through the iptables API, or the legacy x_tables one. */
export type IptablesMode = "nft" | "legacy";

const families: readonly Family[] = ["ipv4", "ipv6"];

/** The programs the agent runs for one backend and family. */
export interface IptablesTools {
  /** Lists rules (`-t nat -S [CHAIN]`) and says `--version`. */
  readonly main: string;
  /** Applies one atomic transaction. */
  readonly restore: string;
  /** Legacy; without `-t` it dumps only loaded tables (/proc/net/ip_tables_names, denied to us). */
  readonly save: string;
}

/**
 * The tools of `mode` for `family`, as Debian and distroless-iptables name them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { iptablesTools } from "./mode.ts";
 * assert.equal(iptablesTools("nft", "ipv6").restore, "ip6tables-nft-restore");
 * ```
 */
export function iptablesTools(mode: IptablesMode, family: Family): IptablesTools {
  const main = `${family === "ipv4" ? "iptables" : "ip6tables"}-${mode}`;
  return { main, restore: `${main}-restore`, save: `${main}-save` };
}

/** Every program the agent may run: the permission list must name exactly these. */
export const allIptablesTools: readonly string[] = (["nft", "legacy"] as const).flatMap((mode) =>
  families.flatMap((family) => {
    const { main, restore, save } = iptablesTools(mode, family);
    return mode === "legacy" ? [main, restore, save] : [main, restore];
  })
);

/**
 * The chains kubelet creates in its backend's mangle table (`KUBE-IPTABLES-HINT` since 1.23,
 * `KUBE-KUBELET-CANARY` before); the iptables-wrapper and Calico's auto mode look for the same.
 */
export const kubeletHintChains: readonly string[] = ["KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"];

/** A summary of `iptables-legacy-save`, never the dump: beside kube-proxy's rules, megabytes. */
export interface LegacyDump {
  /** Whether any legacy table is loaded at all. */
  readonly loaded: boolean;
  /** Whether kubelet's hint chain is in its mangle table. */
  readonly hint: boolean;
  /** How many rules (`-A` lines) it holds (of what was read, when the read stopped early). */
  readonly rules: number;
  /** The tables loaded, in dump order: `nat` among them means rules of ours may be there. */
  readonly tables: readonly string[];
  /** Why the dump could not be read (then `rules` says nothing); absent when it was read. */
  readonly failure?: string;
}

/**
 * Reads an `iptables-legacy-save` dump chunk by chunk, keeping only the summary and current line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LegacyDumpScanner } from "./mode.ts";
 * const scanner = new LegacyDumpScanner((dump) => dump.hint);
 * assert.equal(scanner.push("*nat\n-A POSTROUTING -j MASQ"), false);
 * assert.equal(scanner.push("UERADE\nCOMMIT\n*mangle\n:KUBE-IPTABLES-HINT - [0:0]\n"), true);
 * assert.equal(scanner.finish().rules, 1); // the line split between chunks counted once
 * ```
 */
export class LegacyDumpScanner {
  #partial = "";
  readonly #read = { hint: false, rules: 0, tables: [] as string[] };

  /** `enough`: whether what was read so far answers the caller's question. */
  constructor(readonly enough: (dump: LegacyDump) => boolean = () => false) {}

  /** Reads the next chunk; true once `enough` holds (the rest need not be read). */
  push(text: string): boolean {
    const lines = (this.#partial + text).split("\n");
    this.#partial = lines.pop() ?? "";
    for (const line of lines) {
      this.#line(line);
      if (this.enough(this.#summary())) return true;
    }
    return false;
  }

  /** The summary of everything pushed, a last line without its newline included. */
  finish(): LegacyDump {
    if (this.#partial !== "") this.#line(this.#partial);
    return this.#summary();
  }

  #summary(): LegacyDump {
    return { loaded: this.#read.tables.length > 0, ...this.#read, tables: [...this.#read.tables] };
  }

  #line(line: string): void {
    if (line.startsWith("*")) this.#read.tables.push(line.slice(1));
    else if (line.startsWith("-A ")) this.#read.rules++;
    else if (this.#read.tables.at(-1) === "mangle" && line.startsWith(":")) {
      this.#read.hint ||= kubeletHintChains.includes(line.slice(1).split(" ")[0]);
    }
  }
}

/**
 * Reads an `iptables-legacy-save` dump of every loaded table.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseLegacyDump } from "./mode.ts";
 * const dump = parseLegacyDump("*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n");
 * assert.deepEqual([dump.loaded, dump.hint, dump.rules], [true, true, 0]);
 * ```
 */
export function parseLegacyDump(text: string): LegacyDump {
  const scanner = new LegacyDumpScanner();
  scanner.push(text);
  return scanner.finish();
}

/**
 * What has been learned about the node; an undefined field was not probed yet. Probing stops at
 * the first decision, so a node with the nft hint costs one probe and never loads legacy modules.
 */
export interface ModeEvidence {
  /** Whether a kubelet hint chain exists in the nft backend's mangle table, per family. */
  readonly nftHint?: Partial<Record<Family, boolean>>;
  /** What `iptables-legacy-save` / `ip6tables-legacy-save` dumped, per family. */
  readonly legacy?: Partial<Record<Family, LegacyDump>>;
  /** How many rules the nft backend holds, asked only when no hint decided. */
  readonly nftRules?: number;
  /** The probes that failed, with reasons: the decision says so instead of counting 0 rules. */
  readonly readFailures?: readonly string[];
}

/** The chosen backend and, for the start-up log line, why. */
export interface ModeDecision {
  /** The backend the agent will program. */
  readonly mode: IptablesMode;
  /** Why, in words: what was found, or the flag that said so. */
  readonly evidence: string;
}

/** The next question the detection must answer, or the decision once it can be made. */
export type ModeStep =
  | { readonly kind: "decided"; readonly decision: ModeDecision }
  | { readonly kind: "probe-nft-hint"; readonly family: Family }
  | { readonly kind: "dump-legacy"; readonly family: Family }
  | { readonly kind: "count-nft-rules" };

/**
 * The detection rule as a pure step: the decision, or the next probe. Kubelet's hint in nft
 * (IPv4, IPv6), then in legacy's loaded tables, then the backend with more rules, else nft.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decideMode } from "./mode.ts";
 * assert.equal(decideMode({}).kind, "probe-nft-hint");
 * const step = decideMode({ nftHint: { ipv4: true } });
 * assert.equal(step.kind === "decided" && step.decision.mode, "nft");
 * ```
 */
export function decideMode(evidence: ModeEvidence): ModeStep {
  const decided = (mode: IptablesMode, text: string): ModeStep => ({
    kind: "decided",
    decision: { mode, evidence: text },
  });
  for (const family of families) {
    const found = evidence.nftHint?.[family];
    if (found === undefined) return { kind: "probe-nft-hint", family };
    if (found) return decided("nft", `kubelet's hint chain in the nft ${family} mangle table`);
  }
  let legacyRules = 0;
  for (const family of families) {
    const dump = evidence.legacy?.[family];
    if (dump === undefined) return { kind: "dump-legacy", family };
    if (dump.hint) {
      return decided("legacy", `kubelet's hint chain in the legacy ${family} mangle table`);
    }
    legacyRules += dump.rules;
  }
  const nftRules = evidence.nftRules;
  if (nftRules === undefined) return { kind: "count-nft-rules" };
  const failures = [
    ...(evidence.readFailures ?? []),
    ...families.flatMap((family) => evidence.legacy?.[family]?.failure ?? []),
  ];
  const counts = `${nftRules} nft rules, ${legacyRules} legacy rules`;
  const tally = failures.length === 0
    ? counts
    : `reading failed (${failures.join("; ")}), so the counts are of what could be read: ${counts}`;
  if (legacyRules > nftRules) return decided("legacy", `no kubelet hint; ${tally}`);
  if (nftRules > legacyRules) return decided("nft", `no kubelet hint; ${tally}`);
  return decided("nft", `no kubelet hint and ${tally}: the default`);
}
