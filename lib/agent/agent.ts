/**
 * The long-running agent: one serialized reconcile loop fed by start-up, the
 * config directory watch (config_watch.ts), SIGHUP and the periodic resync;
 * the error policy (exit on a bad config, or keep the last good one); and
 * retries on iptables failures as agent/backoff.ts decides them, where a held
 * xtables lock never kills the agent. Time comes from the injected clock.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import { ConfigError } from "../config/problems.ts";
import { type ConfigDirContents, warnIgnoredEntries } from "../config/directory.ts";
import { sameConfigDirContents } from "../config/identity.ts";
import { decideRetry, type FailureKind, initialRetryState, type RetryState } from "./backoff.ts";
import { defaultDebouncePolicy } from "./debounce.ts";
import { exitCodeFor, exitCodes, formatErrorChain } from "../base/errors.ts";
import type { AgentFlags } from "../config/flags.ts";
import {
  defaultGcPolicy,
  gcAfterReconcile,
  gcCollected,
  type GcState,
  initialGcState,
} from "./gc_schedule.ts";
import { ToolError } from "../base/tool.ts";
import type { Logger } from "../base/log.ts";
import { formatLocation } from "../base/source.ts";
import { chainRuleLines } from "../iptables/render.ts";
import { type DesiredChain } from "../policy/chain.ts";
import { desiredChains, loadConfig, type LoadedConfig } from "../policy/desired.ts";
import { changedSettings, type CommandLine, type SettingKey } from "../config/settings.ts";
import { applyDesired, type Dataplane, type FamilyOutcome } from "../policy/dataplane.ts";
import { type Clock, systemClock } from "../base/clock.ts";
import { ConfigWatch, type StartWatch } from "./config_watch.ts";
import { Wakeup } from "./wakeup.ts";

/** What the agent needs from the host; each effect is a seam a test can replace. */
export interface AgentDeps {
  /**
   * Parsed once at start, with the config's settings applied; they never change while the agent
   * runs.
   */
  readonly flags: AgentFlags;
  /**
   * The command line as given. With it, each config load resolves the files' settings
   * (`masqChain`, `toPorts`, ...) again, and when they no longer match `flags` the agent exits
   * (status 1, the rules left in place) so that its restart composes itself from the new ones.
   */
  readonly commandLine?: CommandLine;
  /** Changes only: what is logged once is not logged again until it changes. */
  readonly log: Logger;
  /** Reads the config directory's `ip-masq*` entries (config_dir.ts `readConfigDir`). */
  readonly readConfigDir: (dir: string) => Promise<ConfigDirContents>;
  /** The nat table of each family, in whatever iptables mode main.ts chose. */
  /** The rules it programs: iptables or nftables (dataplane.ts); the loop never asks which. */
  readonly dataplane: Dataplane;
  /** Whether MASQUERADE `--random-fully` works, probed once per family at start. */
  readonly randomFullySupported: Readonly<Record<Family, boolean>>;
  /** Starts watching; returns a handle, or throws when the directory cannot be watched (yet). */
  readonly watch?: StartWatch;
  /**
   * A full garbage collection (V8's `gc`, defined under `--v8-flags=--expose-gc`), run as
   * agent/gc_schedule.ts says: after every 10th reconcile, at most once a second.
   */
  readonly collectGarbage?: () => void;
  /** Overrides of the loop's delays; the defaults otherwise. */
  readonly timing?: Partial<AgentTiming>;
  /** The system clock unless a test drives the agent in virtual time. */
  readonly clock?: Clock;
}

/** The loop's delays; tests shorten them, production uses the defaults. */
export interface AgentTiming {
  /** The debounce's quiet period (agent/debounce.ts). */
  readonly debounceMs: number;
  /** The first retry's delay after an iptables failure (agent/backoff.ts). */
  readonly initialBackoffMs: number;
  /** Retry delays double up to this. */
  readonly maxBackoffMs: number;
}

const defaultTiming: AgentTiming = {
  debounceMs: defaultDebouncePolicy.quietMs,
  initialBackoffMs: 1000,
  maxBackoffMs: 30_000,
};

type ReconcileResult =
  | { kind: "applied" }
  | { kind: "config-rejected"; error: ConfigError };

/** The last configuration that loaded: what was read, and what it made. */
interface LastGood {
  readonly contents: ConfigDirContents;
  readonly desired: DesiredChain[];
  readonly resyncMs: number;
}

/**
 * Reconciles the nat table with the config directory: once (`--once`), or in
 * a loop until aborted. Only `run()` and `once()` touch the table, one
 * reconcile at a time.
 */
export class Agent {
  readonly #deps: AgentDeps;
  readonly #timing: AgentTiming;
  readonly #clock: Clock;
  readonly #wakeup: Wakeup;
  readonly #configWatch?: ConfigWatch;
  #lastGood?: LastGood;
  #lastConfigError?: string;
  #lastConfigSummary?: string;
  #lastRules = new Map<Family, string>();
  readonly #warnedIgnored = new Set<string>();
  #inSync = new Set<Family>();
  #gc: GcState = initialGcState;

  /** Does nothing until `run()` or `once()`. */
  constructor(deps: AgentDeps) {
    this.#deps = deps;
    this.#timing = { ...defaultTiming, ...deps.timing };
    this.#clock = deps.clock ?? systemClock;
    this.#wakeup = new Wakeup(this.#clock);
    if (deps.watch) {
      this.#configWatch = new ConfigWatch({
        dir: deps.flags.configDir,
        watch: deps.watch,
        log: deps.log,
        clock: this.#clock,
        debounce: { ...defaultDebouncePolicy, quietMs: this.#timing.debounceMs },
        onSettled: () => this.#wakeup.fire(),
      });
    }
  }

  /** SIGHUP and tests: reconcile as soon as the current one (if any) is done. */
  requestReconcile(): void {
    this.#wakeup.fire();
  }

  /** Reconciles once; the exit code of `--once`. */
  async once(signal: AbortSignal): Promise<number> {
    try {
      const result = await this.#reconcile(signal, { keepLastGood: false });
      if (result.kind === "config-rejected") return this.#rejectConfig(result.error);
      return exitCodes.ok;
    } catch (error) {
      return this.#fatal(error, signal);
    }
  }

  /** Runs until `signal` aborts (exit 0) or a failure the policy does not survive. */
  async run(signal: AbortSignal): Promise<number> {
    const { flags, log } = this.#deps;
    let retry: RetryState = initialRetryState(this.#timing);
    try {
      while (!signal.aborted) {
        await this.#configWatch?.ensure();
        let delayMs: number;
        try {
          const result = await this.#reconcile(signal, { keepLastGood: !flags.exitOnConfigError });
          if (result.kind === "config-rejected") return this.#rejectConfig(result.error);
          retry = initialRetryState(this.#timing);
          // Only now: a resyncInterval in the config just read applies to this very wait.
          delayMs = this.#resyncMs();
        } catch (error) {
          if (signal.aborted) break;
          if (error instanceof SettingsChangedError) {
            log.warn(error.message);
            return exitCodes.runtime;
          }
          const decision = decideRetry(retry, failureKind(error), this.#clock.now(), {
            ...this.#timing,
            budgetMs: this.#resyncMs(),
          });
          if (decision.action === "fatal") return this.#fatal(error, signal);
          if (decision.action === "give-up") {
            log.error(
              `giving up: iptables kept failing for one resync interval (${decision.budgetMs} ms)`,
              { error: formatErrorChain(error) },
            );
            return exitCodes.runtime;
          }
          if (decision.reason === "lock") {
            log.warn(
              `the xtables lock is held by another program; retrying in ${decision.delayMs} ms`,
              { error: error instanceof Error ? error.message : String(error) },
            );
          } else {
            log.warn(`applying rules failed; retrying in ${decision.delayMs} ms`, {
              error: formatErrorChain(error),
            });
          }
          retry = decision.state;
          delayMs = decision.delayMs;
        }
        this.#collectGarbageOnSchedule();
        await this.#wakeup.wait(delayMs, signal);
      }
      return exitCodes.ok;
    } finally {
      this.#configWatch?.close();
    }
  }

  #collectGarbageOnSchedule() {
    const collect = this.#deps.collectGarbage;
    if (!collect) return;
    const step = gcAfterReconcile(this.#gc, this.#clock.now(), defaultGcPolicy);
    this.#gc = step.state;
    if (!step.collect) return;
    collect();
    this.#gc = gcCollected(this.#clock.now());
  }

  #resyncMs(): number {
    return this.#lastGood?.resyncMs ?? this.#deps.flags.resyncIntervalMs;
  }

  async #reconcile(
    signal: AbortSignal,
    policy: { keepLastGood: boolean },
  ): Promise<ReconcileResult> {
    const { flags, log } = this.#deps;
    let desired: DesiredChain[];
    try {
      const contents = await this.#deps.readConfigDir(flags.configDir);
      warnIgnoredEntries(log, flags.configDir, contents, this.#warnedIgnored);
      desired = this.#desiredFor(contents);
      if (this.#lastConfigError !== undefined) log.info("the configuration is valid again");
      this.#lastConfigError = undefined;
    } catch (error) {
      if (!(error instanceof ConfigError) || !policy.keepLastGood) {
        if (error instanceof ConfigError) return { kind: "config-rejected", error };
        throw error;
      }
      if (this.#lastConfigError !== error.message) {
        log.error(
          this.#lastGood
            ? "configuration rejected; keeping the last good configuration applied"
            : "configuration rejected; no rules are applied until the configuration is valid",
          { error: error.message },
        );
      }
      this.#lastConfigError = error.message;
      if (!this.#lastGood) return { kind: "applied" };
      desired = this.#lastGood.desired;
    }
    this.#logOutcomes(await applyDesired(desired, this.#deps.dataplane, signal));
    return { kind: "applied" };
  }

  /**
   * The desired chains for what was read. The same bytes as the last good load give the same
   * chains (the flags never change while the agent runs), so a steady resync skips validating,
   * merging, rendering and logging; anything else takes the full path and may throw ConfigError.
   */
  #desiredFor(contents: ConfigDirContents): DesiredChain[] {
    const last = this.#lastGood;
    if (last && sameConfigDirContents(last.contents, contents)) return last.desired;
    const { flags, commandLine } = this.#deps;
    const loaded = loadConfig(contents, flags, commandLine);
    const changed = loaded.settings ? changedSettings(flags, loaded.settings) : [];
    if (changed.length > 0) throw new SettingsChangedError(changed);
    const desired = desiredChains(loaded.effective, flags, this.#deps.randomFullySupported);
    const resyncMs = loaded.effective.resyncInterval?.value ?? flags.resyncIntervalMs;
    this.#logConfigChange(loaded, desired, resyncMs);
    this.#lastGood = { contents, desired, resyncMs };
    return desired;
  }

  #logConfigChange(
    loaded: LoadedConfig,
    desired: readonly DesiredChain[],
    resyncMs: number,
  ) {
    const { log, flags } = this.#deps;
    const { effective, findings } = loaded;
    const summary = JSON.stringify({
      files: effective.files,
      nonMasqueradeCIDRs: effective.nonMasqueradeCidrs.map((cidr) => cidr.value.text),
      // Only when set, so the line is unchanged for configs without them.
      ...cidrKey("masqueradeCIDRs", effective.masqueradeCidrs),
      ...cidrKey("nonMasqueradeSrcCIDRs", effective.nonMasqueradeSrcCidrs),
      ...outputKeys(effective),
      masqLinkLocal: effective.masqLinkLocal.value,
      masqLinkLocalIPv6: effective.masqLinkLocalIPv6.value,
      resyncInterval: `${resyncMs / 1000}s`,
    });
    if (summary === this.#lastConfigSummary) return;
    this.#lastConfigSummary = summary;
    if (loaded.directoryMissing) {
      log.info(`config directory ${flags.configDir} does not exist; using the defaults`);
    } else if (effective.files.length === 0) {
      log.info(`no ip-masq* file in ${flags.configDir}; using the defaults`);
    } else if (effective.defaultNonMasqueradeCidrs) {
      log.info(
        "no config file names nonMasqueradeCIDRs; the default nonMasqueradeCIDRs stand " +
          `(${effective.nonMasqueradeCidrs.map((cidr) => cidr.value.text).join(", ")})`,
      );
    }
    // The whole list at --v=0 was one line of 183 KB at 10,000 CIDRs: a summary here; --v=2
    // logs every CIDR and rule below, one line each, with the file and line it came from.
    log.info("effective configuration", { config: configSummary(effective, resyncMs) });
    for (const finding of findings) log.warn(finding.message, { finding: finding.kind });
    for (const chain of desired) {
      const rules = chainRuleLines(chain);
      if (this.#lastRules.get(chain.family) === rules.join("\n")) continue;
      this.#lastRules.set(chain.family, rules.join("\n"));
      this.#inSync.delete(chain.family);
      log.info(
        `desired ${chain.family} rules: ${chain.exemptions.length} ` +
          `${chain.postroutingJump === "insert" ? "ACCEPT" : "RETURN"}, then ` +
          (chain.outputAddress ? `SNAT to ${chain.outputAddress.value.text}` : "MASQUERADE") +
          (chain.outputInterface ? ` by ${chain.outputInterface.value}` : ""),
      );
      if (chain.outputAddress) {
        log.debug(`  SNAT to ${chain.outputAddress.value.text}`, {
          from: formatLocation(chain.outputAddress.at),
        });
      }
      if (chain.outputInterface) {
        log.debug(`  only by ${chain.outputInterface.value}`, {
          from: formatLocation(chain.outputInterface.at),
        });
      }
      chain.sourceExemptions?.forEach((cidr) =>
        log.debug(`  RETURN source ${cidr.value.text}`, { from: formatLocation(cidr.at) })
      );
      chain.exemptions.forEach((cidr) =>
        log.debug(`  RETURN ${cidr.value.text}`, { from: formatLocation(cidr.at) })
      );
      chain.masqueradeExceptions?.forEach((cidr) =>
        log.debug(`  MASQUERADE exception ${cidr.value.text}`, { from: formatLocation(cidr.at) })
      );
      rules.forEach((rule) => log.debug(`  ${rule}`));
    }
  }

  #logOutcomes(outcomes: readonly FamilyOutcome[]) {
    const { log } = this.#deps;
    for (const { family, plan } of outcomes) {
      if (plan.payload === null) {
        this.#inSync.add(family);
        continue;
      }
      const what = plan.drift.map((drift) => drift.message).join("; ");
      if (this.#inSync.has(family)) log.warn(`drift repaired (${family}): ${what}`);
      else log.info(`rules written (${family}): ${what}`);
      this.#inSync.add(family);
    }
  }

  #rejectConfig(error: ConfigError): number {
    this.#deps.log.error(`${error.message}\nthe live rules were left unchanged`);
    return exitCodes.usage;
  }

  #fatal(error: unknown, signal: AbortSignal): number {
    if (signal.aborted) return exitCodes.ok;
    this.#deps.log.error(formatErrorChain(error));
    return exitCodeFor(error);
  }
}

/** A missing tool, or an error that is not iptables', will not heal by waiting. */
function failureKind(error: unknown): FailureKind {
  if (!(error instanceof ToolError) || error.failure === "missing") return "fatal";
  return error.failure;
}

/** Issue 17's keys, only when set, so a log line is unchanged for configs without them. */
function outputKeys(effective: LoadedConfig["effective"]): Record<string, string> {
  return {
    ...(effective.outputAddress ? { outputAddress: effective.outputAddress.value.text } : {}),
    ...(effective.outputAddressIPv6
      ? { outputAddressIPv6: effective.outputAddressIPv6.value.text }
      : {}),
    ...(effective.outputInterface ? { outputInterface: effective.outputInterface.value } : {}),
  };
}

/** The CIDRs shown by name in the `--v=0` summary; beyond them, only how many more. */
const summaryCidrs = 8;

/**
 * The effective configuration for the `--v=0` log: each list's first CIDRs and how many there
 * are, so the line stays short whatever the config holds.
 */
function configSummary(effective: LoadedConfig["effective"], resyncMs: number): string {
  const list = (cidrs: readonly { readonly value: { readonly text: string } }[]) => {
    const shown = cidrs.slice(0, summaryCidrs).map((cidr) => cidr.value.text);
    return cidrs.length <= summaryCidrs ? shown : [
      ...shown,
      `... ${cidrs.length - summaryCidrs} more (${cidrs.length} in all; --v=2 lists them)`,
    ];
  };
  const files = effective.files.length <= summaryCidrs ? effective.files : [
    ...effective.files.slice(0, summaryCidrs),
    `... ${effective.files.length - summaryCidrs} more`,
  ];
  return JSON.stringify({
    files,
    nonMasqueradeCIDRs: list(effective.nonMasqueradeCidrs),
    ...(effective.defaultNonMasqueradeCidrs && effective.files.length > 0
      ? { nonMasqueradeCIDRsFrom: "defaults (no file names nonMasqueradeCIDRs)" }
      : {}),
    ...(effective.masqueradeCidrs.length === 0
      ? {}
      : { masqueradeCIDRs: list(effective.masqueradeCidrs) }),
    ...(effective.nonMasqueradeSrcCidrs.length === 0
      ? {}
      : { nonMasqueradeSrcCIDRs: list(effective.nonMasqueradeSrcCidrs) }),
    masqLinkLocal: effective.masqLinkLocal.value,
    masqLinkLocalIPv6: effective.masqLinkLocalIPv6.value,
    ...outputKeys(effective),
    resyncInterval: `${resyncMs / 1000}s`,
  });
}

function cidrKey(key: string, cidrs: readonly { readonly value: { readonly text: string } }[]) {
  return cidrs.length === 0 ? {} : { [key]: cidrs.map((cidr) => cidr.value.text) };
}

/** The config now sets a setting the running agent was composed from to another value. */
class SettingsChangedError extends Error {
  override readonly name = "SettingsChangedError";
  constructor(readonly keys: readonly SettingKey[]) {
    super(
      `the configuration changed ${keys.join(", ")}, which the agent reads only at start: ` +
        "exiting so that it restarts with the new value (the rules stay in place until then)",
    );
  }
}
