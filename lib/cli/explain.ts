/**
 * `--explain`: the configuration's answer for one destination and why (the deciding CIDR with its
 * file, line and key), whether the live nat table agrees and why not. Pure: the listing is input.
 *
 * @module
 */

import { type IpAddress, isLoopback } from "../net/address.ts";
import type { Cidr, Family } from "../net/cidr.ts";
import { decide, type DecidingItem, type Decision, type Verdict } from "../policy/decision.ts";
import { readOnlyWording } from "./one_shot.ts";
import { ForeignChainError } from "../base/errors.ts";
import { type LiveOutcome, traceLive } from "../iptables/live_trace.ts";
import type { EffectiveConfig } from "../config/merge.ts";
import { iptablesMarkText, nftInterfaceName } from "../settings/output.ts";
import { type DesiredChain, kubeProxyMarkOf } from "../policy/chain.ts";
import { type LiveNatTable, planReconcile } from "../iptables/plan.ts";
import { formatLocation, type Located } from "../base/source.ts";

/**
 * One family's live table: read, judged whole by its dataplane's own planner (nftables: in sync
 * means it renders the desired state, so the decision's answer), or unavailable with the reason.
 */
export type LiveTableView =
  | { readonly kind: "read"; readonly backend: string; readonly table: LiveNatTable }
  | { readonly kind: "planned"; readonly backend: string; readonly drift: readonly string[] }
  | { readonly kind: "unavailable"; readonly reason: string };

/**
 * How the live answer compares with the configuration's: the verdicts the live rules can reach
 * (one unless uncertain), the rule that decides on the first path, why the answer differs or may,
 * and what `--check` would repair (our jump, our chain), whether or not it changes this answer.
 */
export type LiveAnswer =
  | { readonly status: "unavailable"; readonly reason: string }
  | {
    readonly status: "agrees" | "differs" | "uncertain";
    readonly backend: string;
    readonly verdicts: readonly (Verdict | "unknown")[];
    readonly decidedBy: string;
    readonly reasons: readonly string[];
    readonly drift: readonly string[];
  };

/** The answer for one destination. */
export interface Explanation extends Pick<ExplainInput, "destination"> {
  /** The source assumed: `--explain-source`, when of the destination's family. */
  readonly source?: IpAddress;
  /** The destination's family: whose table decides. */
  readonly family: Family;
  /** Undefined when the family is not enabled: the agent leaves its traffic alone. */
  readonly decision?: Decision;
  /** One line: what decided, with where it came from. */
  readonly because: string;
  /** The config key of the deciding item, if it has one. */
  readonly key?: string;
  /** The CIDR that decided and its place in the config, if a CIDR decided. */
  readonly cidr?: Located<Cidr>;
  /** What the answer depends on that was not given. */
  readonly notes: readonly string[];
  /** What the live table does with the packet, compared with `decision`. */
  readonly live: LiveAnswer;
}

/** What explaining one destination needs. */
export interface ExplainInput {
  /** The merged configuration (it says what to call the defaults). */
  readonly effective: EffectiveConfig;
  /** The desired chain of each enabled family. */
  readonly desired: readonly DesiredChain[];
  /** The address to explain. */
  readonly destination: IpAddress;
  /** `--explain-source`: applies to destinations of its family only. */
  readonly source?: IpAddress;
  /** The destination family's live table; undefined when the family is not enabled. */
  readonly live?: LiveTableView;
  /** `--dataplane`: how the notes name the deciding rule; absent means iptables. */
  readonly dataplane?: "iptables" | "nftables";
}

/**
 * The configuration's answer for `destination`, and the live table's.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseIpAddress } from "../net/address.ts";
 * import { desiredChains } from "../policy/desired.ts";
 * import { explain } from "./explain.ts";
 * import { mergeConfigs } from "../config/merge.ts";
 *
 * const { config } = mergeConfigs([], { nomasqAllReservedRanges: false });
 * const flags = { masqChain: "IP-MASQ-AGENT", enableIpv6: false, randomFully: true, toPorts: [] };
 * const destination = parseIpAddress("10.1.2.3");
 * assert.ok(destination.ok);
 * const desired = desiredChains(config, flags, { ipv4: true, ipv6: true });
 * const answer = explain({ effective: config, desired, destination: destination.value });
 * assert.equal(answer.decision?.verdict, "keep source");
 * assert.match(answer.because, /^default \(no config file present\): 10\.0\.0\.0\/8/);
 * ```
 */
export function explain(input: ExplainInput): Explanation {
  const { destination } = input;
  const family = destination.family;
  const desired = input.desired.find((chain) => chain.family === family);
  const notes: string[] = [];
  const source = input.source?.family === family ? input.source : undefined;
  if (input.source && !source) {
    notes.push(`--explain-source ${input.source.text} is not ${family}: ignored for this one`);
  }
  const asked = { destination, family, ...(source ? { source } : {}) };
  if (!desired) {
    return {
      ...asked,
      because: "IPv6 is not enabled (--enable-ipv6=false): the agent writes no IPv6 rules " +
        "and leaves this traffic as it is",
      notes,
      live: { status: "unavailable", reason: "IPv6 is not enabled" },
    };
  }
  const packet = { destination, source, localDestination: isLoopback(destination) };
  const decision = decide(desired, packet);
  notes.push(...ruleNotes(desired, decision, input.dataplane === "nftables"));
  const exemptions = (desired.sourceExemptions ?? []).map(describeCidr).join(", ");
  if (!source && exemptions !== "" && !packet.localDestination) {
    notes.push(
      `unless the pod's address is in nonMasqueradeSrcCIDRs (${exemptions}): give ` +
        "--explain-source to know",
    );
  }
  const { because } = decision;
  const linkLocalKey = family === "ipv4" ? "masqLinkLocal" : "masqLinkLocalIPv6";
  const key = because.kind === "link-local" ? linkLocalKey : decidingKeys[because.kind];
  const mark = kubeProxyMarkOf(desired);
  const via = desired.outputInterface?.value;
  return {
    ...asked,
    decision,
    because: reasonLine(because, input.effective, linkLocalKey),
    ...(key ? { key } : {}),
    ...("cidr" in because ? { cidr: because.cidr } : {}),
    notes,
    live: liveAnswer(desired, decision.verdict, input.live, {
      ...packet,
      // The packet asked about is one kube-proxy did not mark (not service traffic).
      ...(mark !== undefined ? { kubeProxyMark: { mark, marked: false } } : {}),
      // The decision assumes the packet leaves by outputInterface; so does the trace, for a
      // plain name (a wildcard names no one interface).
      ...(via !== undefined && !via.endsWith("+") ? { outputInterface: via } : {}),
    }),
  };
}

/** The config key of each deciding item that has one (link-local's depends on the family). */
const decidingKeys: Partial<Record<DecidingItem["kind"], string>> = {
  "source-exemption": "nonMasqueradeSrcCIDRs",
  "non-masquerade": "nonMasqueradeCIDRs",
  "masquerade-exception": "masqueradeCIDRs",
  "other-interface": "outputInterface",
};

/** Notes on the deciding rule (`--postrouting-jump=insert`), `outputAddress`, `outputInterface`. */
function ruleNotes(desired: DesiredChain, decision: Decision, nftables: boolean): string[] {
  const notes: string[] = [];
  const mark = kubeProxyMarkOf(desired);
  const { because: { kind }, snatTo, onlyVia } = decision;
  // For kube-proxy-mark, the reason line says it all.
  if (mark !== undefined && kind !== "local-destination" && kind !== "kube-proxy-mark") {
    const markText = iptablesMarkText(mark);
    const exempted = ["source-exemption", "link-local", "non-masquerade"].includes(kind);
    notes.push(
      exempted
        ? nftables
          ? "decided by our nftables chain (--postrouting-jump=insert): it binds the source to " +
            "itself (snat to saddr) at priority srcnat - 1, before every srcnat chain " +
            "(iptables' nat POSTROUTING, kube-proxy's), and the first binding is final: no " +
            "later masquerade of another tool applies"
          : "decided by our chain's ACCEPT rule (--postrouting-jump=insert): ACCEPT ends nat " +
            "POSTROUTING for the packet, so no later rule of another tool can masquerade it"
        : nftables
        ? "decided by our nftables chain's masquerade (--postrouting-jump=insert: priority " +
          "srcnat - 1, before every srcnat chain)"
        : "decided by our chain's last rules (--postrouting-jump=insert: our jump is first in " +
          "POSTROUTING)",
      `traffic kube-proxy marked for masquerade (mark ${markText}/${markText}: service ` +
        "hairpin and external service traffic) leaves our chain by its first rule and " +
        "kube-proxy's own rule masquerades it",
    );
  }
  if (snatTo) {
    notes.push(
      `SNAT to ${snatTo.value.text} (outputAddress${desired.family === "ipv6" ? "IPv6" : ""} at ` +
        `${formatLocation(snatTo.at)}), not the node's address`,
    );
  }
  if (onlyVia) {
    const name = onlyVia.value;
    notes.push(
      `only when it leaves by ${name}${nftables ? ` (oifname "${nftInterfaceName(name)}")` : ""} ` +
        `(outputInterface at ${formatLocation(onlyVia.at)}); by any other interface our rules ` +
        "leave its source as it is",
    );
  }
  return notes;
}

const describeCidr = (cidr: Located<Cidr>) => `${cidr.value.text} at ${formatLocation(cidr.at)}`;

function reasonLine(because: DecidingItem, effective: EffectiveConfig, linkLocalKey: string) {
  const defaults = effective.files.length === 0
    ? "default (no config file present)"
    : "default (no config file names nonMasqueradeCIDRs)";
  switch (because.kind) {
    case "local-destination":
      return "local destination: an address of this node, which our POSTROUTING jump skips " +
        "(-m addrtype ! --dst-type LOCAL)";
    case "source-exemption":
      return `nonMasqueradeSrcCIDRs ${describeCidr(because.cidr)} holds the source`;
    case "link-local":
      return `link-local: ${because.cidr.value.text} keeps the source unless ${linkLocalKey} ` +
        "is true";
    case "non-masquerade":
      return because.builtInDefault
        ? `${defaults}: ${because.cidr.value.text} ` +
          because.cidr.at.file.replace(/^\(default: (.*)\)$/, "($1)")
        : `nonMasqueradeCIDRs ${describeCidr(because.cidr)}`;
    case "masquerade-exception": {
      // A configured exemption with its place; a built-in one with its description.
      const { narrows } = because;
      const inside = narrows.at.line !== undefined
        ? `nonMasqueradeCIDRs ${describeCidr(narrows)}`
        : `${narrows.value.text} ${narrows.at.file}`;
      return `masqueradeCIDRs ${describeCidr(because.cidr)}, inside ${inside} (the longest ` +
        "prefix decides)";
    }
    case "kube-proxy-mark": {
      const mark = iptablesMarkText(because.mark);
      return `kube-proxy marked it for masquerade (mark ${mark}/${mark}, ` +
        "--kube-proxy-masquerade-bit): our chain's first rule returns it, and kube-proxy's " +
        "own rule masquerades it (--postrouting-jump=insert)";
    }
    case "other-interface":
      return `it leaves by another interface than outputInterface ` +
        `${because.outputInterface.value} at ${formatLocation(because.outputInterface.at)}`;
    case "no-exemption":
      return effective.defaultNonMasqueradeCidrs
        ? `${defaults}: in none of the default non-masquerade ranges, so the last rule ` +
          "masquerades it"
        : `in no nonMasqueradeCIDRs range of ${effective.files.join(", ")}, so the last ` +
          "rule masquerades it";
  }
}

function liveAnswer(
  desired: DesiredChain,
  verdict: Verdict,
  view: LiveTableView | undefined,
  packet: Parameters<typeof traceLive>[2],
): LiveAnswer {
  if (view === undefined) return { status: "unavailable", reason: "not read" };
  if (view.kind === "unavailable") return { status: "unavailable", reason: view.reason };
  if (view.kind === "planned") {
    const inSync = view.drift.length === 0;
    const drifted = view.drift.map(readOnlyWording).join("; ");
    return {
      status: inSync ? "agrees" : "uncertain",
      backend: view.backend,
      drift: view.drift,
      verdicts: inSync ? [verdict] : [verdict, "unknown"],
      decidedBy: `our ${view.backend} table, ` +
        `${inSync ? "in sync with" : "which differs from"} the configuration`,
      reasons: inSync ? [] : [
        `our ${view.backend} table drifted (${drifted}); --explain does not evaluate its rules ` +
        "one by one, and the agent's next reconcile repairs it (--check shows what differs)",
      ],
    };
  }
  let drift: string[];
  try {
    drift = planReconcile(desired, view.table).drift.map((item) => readOnlyWording(item.message));
  } catch (error) {
    // --masq-chain names another tool's chain: nothing of ours to compare with.
    if (error instanceof ForeignChainError) return { status: "unavailable", reason: error.message };
    throw error;
  }
  const outcomes = traceLive(view.table, desired.chain, packet);
  const verdicts = [...new Set(outcomes.map((outcome) => outcome.verdict))];
  const first = outcomes[0];
  // Credit the rule that decides whatever the unevaluated matches say (the source, when
  // --explain-source is not given): a `-s` rule decides only for some pods.
  const decidedBy = outcomes.find((outcome) => outcome.assumed.length === 0)?.rule ??
    `a rule whose match cannot be evaluated here (it depends on the source or on ` +
      `${first.assumed.join(", ")}): ${first.rule}`;
  const agrees = verdicts.length === 1 && verdicts[0] === verdict;
  const status = agrees ? "agrees" : verdicts.includes(verdict) ? "uncertain" : "differs";
  // When it agrees, no outcome reaches another verdict: no reasons.
  const reasons = status === "differs"
    ? [whyDifferent(first, desired.chain, drift)]
    : outcomes.filter((outcome) => outcome.verdict !== verdict).map(whyMaybe);
  return { status, backend: view.backend, verdicts, decidedBy, drift, reasons };
}

function whyDifferent(outcome: LiveOutcome, chain: string, drift: readonly string[]): string {
  const jumpDrift = drift.filter((message) => /POSTROUTING/.test(message));
  const chainDrift = drift.filter((message) => !/POSTROUTING/.test(message));
  switch (outcome.stage) {
    case "before our jump":
      return jumpDrift.some((message) => /no jump/.test(message))
        ? `our jump is missing (${jumpDrift.join("; ")}), and a rule of another tool decides: ` +
          outcome.rule
        : `a POSTROUTING rule of another tool before our jump decides first: ${outcome.rule}`;
    case "our chain":
      return `our chain ${chain} drifted (${chainDrift.join("; ") || "it differs"}): ` +
        `${outcome.rule} decides`;
    case "after our jump":
      return `our chain ${chain} returns, then a later POSTROUTING rule of another tool ` +
        `decides: ${outcome.rule}`;
    case "policy":
      return jumpDrift.length > 0
        ? `our jump is missing or misplaced (${jumpDrift.join("; ")}): nothing of ours sees ` +
          `the packet, and ${outcome.rule}`
        : outcome.rule;
  }
}

function whyMaybe(outcome: LiveOutcome): string {
  const where = outcome.stage === "our chain" ? "in our chain" : `(${outcome.stage})`;
  return outcome.verdict === "unknown"
    ? `may decide first: ${outcome.unknownBecause} ${where}: ${outcome.rule}`
    : `may decide first: cannot evaluate ${outcome.assumed.join(", ")} ${where}: ` +
      `${outcome.rule} (${outcome.verdict})`;
}

/** The explanation as text lines: the answer, why, and the live comparison. */
export function formatExplanation(explanation: Explanation): string {
  const { destination, decision, live } = explanation;
  const from = explanation.source ? ` from ${explanation.source.text}` : "";
  const lines = [
    `${destination.text}${from} (${explanation.family}): ${decision?.verdict ?? "not managed"}`,
    `  because: ${explanation.because}`,
    ...explanation.notes.map((note) => `  note: ${note}`),
  ];
  if (live.status === "unavailable") {
    return [...lines, `  live: not compared: ${live.reason}`].join("\n");
  }
  const verdicts = live.verdicts.join(" or ");
  const summary = live.status === "agrees"
    ? `same answer (${verdicts}), decided by ${live.decidedBy}`
    : live.status === "differs"
    ? `DIFFERENT answer: ${verdicts}`
    : `may differ: ${verdicts}`;
  lines.push(`  live (${live.backend}): ${summary}`);
  for (const reason of live.reasons) lines.push(`    ${reason}`);
  for (const drift of live.drift) lines.push(`    differs (the agent repairs it): ${drift}`);
  return lines.join("\n");
}

/** The explanation as one JSON-ready object (`--log-format=json`). */
export function explanationObject(explanation: Explanation): Record<string, unknown> {
  const { cidr, decision } = explanation;
  return {
    destination: explanation.destination.text,
    ...(explanation.source ? { source: explanation.source.text } : {}),
    family: explanation.family,
    verdict: decision?.verdict ?? "not managed",
    because: {
      kind: decision?.because.kind ?? "family-disabled",
      text: explanation.because,
      ...(explanation.key ? { key: explanation.key } : {}),
      // A SourceLocation is file, then line and column when known.
      ...(cidr ? { cidr: cidr.value.text, ...cidr.at } : {}),
    },
    ...(decision?.snatTo ? { snatTo: decision.snatTo.value.text } : {}),
    ...(decision?.onlyVia ? { outputInterface: decision.onlyVia.value } : {}),
    notes: explanation.notes,
    live: explanation.live,
  };
}
