/**
 * What the loop logs, as a pure step from (what was logged, what happened) to (lines, record):
 * each thing once until it changes; a write is "rules written" after a change, "drift repaired"
 * when the rules were in sync. A steady resync logs nothing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { logChanges, nothingLogged } from "./log_changes.ts";
 * const rejected = { kind: "rejected", error: "bad CIDR", keepingLastGood: true } as const;
 * const first = logChanges(nothingLogged, rejected);
 * assert.equal(first.lines[0].level, "error");
 * assert.deepEqual(logChanges(first.logged, rejected).lines, []); // not logged twice
 * ```
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import type { ConfigDirContents } from "../config/directory.ts";
import type { EffectiveConfig } from "../config/merge.ts";
import { ignoredEntryMessage } from "../config/parse.ts";
import { formatLocation, type Located } from "../base/source.ts";
import type { DesiredChain } from "../policy/chain.ts";
import type { DataplaneName, FamilyOutcome } from "../policy/dataplane.ts";
import type { LoadedConfig } from "../policy/desired.ts";
import { chainRuleLines } from "../iptables/render.ts";

/** One line for the logger: `log[level](message, fields)`. */
export interface LogLine {
  /** The logger method: debug lines appear from `--v=2` on. */
  readonly level: "debug" | "info" | "warn" | "error";
  /** The message. */
  readonly message: string;
  /** Structured fields, if any. */
  readonly fields?: Readonly<Record<string, unknown>>;
}

/** What was logged already. */
export interface Logged {
  /** The ignored entries warned about: once per name for the agent's lifetime. */
  readonly ignoredEntries: ReadonlySet<string>;
  /** The rejection last logged; undefined while the configuration is valid. */
  readonly configError?: string;
  /** The configuration as last logged. */
  readonly config?: string;
  /** Each family's desired chain as last logged ({@link chainIdentity}). */
  readonly chains: Readonly<Partial<Record<Family, string>>>;
  /** Families in sync since their desired chain last changed: a write there repairs drift. */
  readonly inSync: ReadonlySet<Family>;
}

/** Before the first reconcile. */
export const nothingLogged: Logged = { ignoredEntries: new Set(), chains: {}, inSync: new Set() };

/** What happened in a reconcile, in the order the loop sees it. */
export type LogEvent =
  | { readonly kind: "read"; readonly configDir: string; readonly contents: ConfigDirContents }
  | {
    /** Bytes other than the last good ones loaded into these desired chains. */
    readonly kind: "loaded";
    readonly configDir: string;
    readonly loaded: LoadedConfig;
    readonly desired: readonly DesiredChain[];
    readonly resyncIntervalMs: number;
    /** The iptables dataplane's rules are also logged in `iptables-save` syntax at `--v=2`. */
    readonly dataplane: DataplaneName;
  }
  | { readonly kind: "valid" }
  | { readonly kind: "rejected"; readonly error: string; readonly keepingLastGood: boolean }
  | { readonly kind: "applied"; readonly outcomes: readonly FamilyOutcome[] };

/** The lines to log for `event`, and the record that remembers them. */
export function logChanges(
  logged: Logged,
  event: LogEvent,
): { readonly lines: LogLine[]; readonly logged: Logged } {
  switch (event.kind) {
    case "read":
      return ignoredEntriesRead(logged, event.configDir, event.contents);
    case "loaded":
      return configLoaded(logged, event);
    case "valid":
      if (logged.configError === undefined) return { lines: [], logged };
      return {
        lines: [line("info", "the configuration is valid again")],
        logged: { ...logged, configError: undefined },
      };
    case "rejected":
      return {
        lines: logged.configError === event.error ? [] : [line(
          "error",
          event.keepingLastGood
            ? "configuration rejected; keeping the last good configuration applied"
            : "configuration rejected; no rules are applied until the configuration is valid",
          { error: event.error },
        )],
        logged: { ...logged, configError: event.error },
      };
    case "applied":
      return applied(logged, event.outcomes);
  }
}

/** A desired chain without provenance: a CIDR moved to another line or file is the same chain. */
export function chainIdentity(chain: DesiredChain): string {
  // Every Located value's provenance is its `at`; addresses are bigints, which JSON lacks.
  return JSON.stringify(
    chain,
    (key, value) => key === "at" ? undefined : typeof value === "bigint" ? value.toString() : value,
  );
}

function ignoredEntriesRead(logged: Logged, configDir: string, contents: ConfigDirContents) {
  const names = contents.kind === "files" ? contents.ignored ?? [] : [];
  const unwarned = names.filter((name) => !logged.ignoredEntries.has(name));
  if (unwarned.length === 0) return { lines: [], logged };
  return {
    lines: unwarned.map((name) =>
      line("warn", ignoredEntryMessage(configDir, name), { ignored: name })
    ),
    logged: { ...logged, ignoredEntries: new Set([...logged.ignoredEntries, ...unwarned]) },
  };
}

function configLoaded(logged: Logged, event: Extract<LogEvent, { kind: "loaded" }>) {
  const { loaded: { effective, findings, directoryMissing }, configDir, resyncIntervalMs } = event;
  // Every entry in full: any change logs the configuration again (the defaults note never did).
  const whole = configSummary(effective, resyncIntervalMs, Infinity);
  delete whole.nonMasqueradeCIDRsFrom;
  const config = JSON.stringify(whole);
  if (config === logged.config) return { lines: [], logged };
  const lines: LogLine[] = [];
  const info = (message: string, fields?: Record<string, unknown>) =>
    lines.push(line("info", message, fields));
  if (directoryMissing) {
    info(`config directory ${configDir} does not exist; using the defaults`);
  } else if (effective.files.length === 0) {
    info(`no ip-masq* file in ${configDir}; using the defaults`);
  } else if (effective.defaultNonMasqueradeCidrs) {
    info(
      "no config file names nonMasqueradeCIDRs; the default nonMasqueradeCIDRs stand " +
        `(${effective.nonMasqueradeCidrs.map((cidr) => cidr.value.text).join(", ")})`,
    );
  }
  // The whole list at --v=0 was one line of 183 KB at 10,000 CIDRs: 8 per list here; --v=2
  // logs every CIDR and rule below, one line each, with the file and line it came from.
  const summary = configSummary(effective, resyncIntervalMs, 8);
  info("effective configuration", { config: JSON.stringify(summary) });
  for (const { message, kind } of findings) lines.push(line("warn", message, { finding: kind }));
  const chains = { ...logged.chains };
  const inSync = new Set(logged.inSync);
  for (const chain of event.desired) {
    const identity = chainIdentity(chain);
    if (chains[chain.family] === identity) continue;
    chains[chain.family] = identity;
    inSync.delete(chain.family);
    lines.push(...desiredChainLines(chain, event.dataplane));
  }
  return { lines, logged: { ...logged, config, chains, inSync } };
}

/** One line saying what the chain does, then at `--v=2` every CIDR with where it came from. */
function desiredChainLines(chain: DesiredChain, dataplane: DataplaneName): LogLine[] {
  const { outputAddress: address, outputInterface: via } = chain;
  const lines = [line(
    "info",
    `desired ${chain.family} rules: ${chain.exemptions.length} ` +
      `${chain.postroutingJump === "insert" ? "ACCEPT" : "RETURN"}, then ` +
      (address ? `SNAT to ${address.value.text}` : "MASQUERADE") +
      (via ? ` by ${via.value}` : ""),
  )];
  const debug = (message: string, from?: Located<unknown>) =>
    lines.push(line("debug", message, from && { from: formatLocation(from.at) }));
  if (address) debug(`  SNAT to ${address.value.text}`, address);
  if (via) debug(`  only by ${via.value}`, via);
  const debugEach = (what: string, cidrs: readonly Located<{ readonly text: string }>[] = []) => {
    for (const cidr of cidrs) debug(`  ${what} ${cidr.value.text}`, cidr);
  };
  debugEach("RETURN source", chain.sourceExemptions);
  debugEach("RETURN", chain.exemptions);
  debugEach("MASQUERADE exception", chain.masqueradeExceptions);
  // The nftables dataplane's rules are not iptables lines; `--dry-run` prints its table.
  if (dataplane === "iptables") chainRuleLines(chain).forEach((rule) => debug(`  ${rule}`));
  return lines;
}

function applied(logged: Logged, outcomes: readonly FamilyOutcome[]) {
  const steady = outcomes.every(({ family, plan }) =>
    plan.payload === null && logged.inSync.has(family)
  );
  if (steady) return { lines: [], logged };
  const lines = outcomes.filter(({ plan }) => plan.payload !== null).map(({ family, plan }) => {
    const what = plan.drift.map((drift) => drift.message).join("; ");
    return logged.inSync.has(family)
      ? line("warn", `drift repaired (${family}): ${what}`)
      : line("info", `rules written (${family}): ${what}`);
  });
  const inSync = new Set([...logged.inSync, ...outcomes.map(({ family }) => family)]);
  return { lines, logged: { ...logged, inSync } };
}

/** A line, without `fields` when it has none. */
function line(level: LogLine["level"], message: string, fields?: Record<string, unknown>): LogLine {
  return fields ? { level, message, fields } : { level, message };
}

/**
 * The effective configuration for the `--v=0` log: each list's first `shown` entries and how
 * many there are. Unset keys are undefined: JSON leaves them out, as the line always has.
 */
function configSummary(effective: EffectiveConfig, resyncIntervalMs: number, shown: number) {
  const firstShown = (items: readonly string[], more = "") =>
    items.length <= shown
      ? items
      : [...items.slice(0, shown), `... ${items.length - shown} more${more}`];
  const list = (cidrs: readonly Located<{ readonly text: string }>[]) =>
    firstShown(cidrs.map((cidr) => cidr.value.text), ` (${cidrs.length} in all; --v=2 lists them)`);
  const { masqueradeCidrs: masquerade, nonMasqueradeSrcCidrs: sources } = effective;
  return {
    files: firstShown(effective.files),
    nonMasqueradeCIDRs: list(effective.nonMasqueradeCidrs),
    ...(effective.defaultNonMasqueradeCidrs && effective.files.length > 0
      ? { nonMasqueradeCIDRsFrom: "defaults (no file names nonMasqueradeCIDRs)" }
      : {}),
    masqueradeCIDRs: masquerade.length === 0 ? undefined : list(masquerade),
    nonMasqueradeSrcCIDRs: sources.length === 0 ? undefined : list(sources),
    masqLinkLocal: effective.masqLinkLocal.value,
    masqLinkLocalIPv6: effective.masqLinkLocalIPv6.value,
    outputAddress: effective.outputAddress?.value.text,
    outputAddressIPv6: effective.outputAddressIPv6?.value.text,
    outputInterface: effective.outputInterface?.value,
    resyncInterval: `${resyncIntervalMs / 1000}s`,
  };
}
