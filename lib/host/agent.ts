/**
 * The long-running agent: one serialized reconcile loop fed by start-up, the
 * config directory watch, SIGHUP and the periodic resync; the error policy
 * (exit on a bad config, or keep the last good one); and backoff on iptables
 * failures, where a held xtables lock never kills the agent.
 *
 * @module
 */

import type { Family } from "../core/cidr.ts";
import { ConfigError } from "../core/config_error.ts";
import type { ConfigDirContents, DirectoryWatch } from "./config_dir.ts";
import { exitCodeFor, exitCodes, formatErrorChain } from "../core/errors.ts";
import type { AgentFlags } from "../core/flags.ts";
import { IptablesError, type NatTableClient } from "./iptables.ts";
import type { Logger } from "./log.ts";
import { formatLocation } from "../core/source.ts";
import { chainRuleLines, type DesiredChain } from "../core/rules.ts";
import { desiredChains, loadConfig, type LoadedConfig } from "../core/desired.ts";
import { applyDesired, type FamilyOutcome } from "./reconcile.ts";
import { Wakeup } from "./wakeup.ts";

export interface AgentDeps {
  readonly flags: AgentFlags;
  readonly log: Logger;
  readonly readConfigDir: (dir: string) => Promise<ConfigDirContents>;
  readonly clients: Readonly<Record<Family, NatTableClient>>;
  readonly randomFullySupported: Readonly<Record<Family, boolean>>;
  /** Starts watching; returns a handle, or throws when the directory cannot be watched (yet). */
  readonly watch?: (dir: string, onChange: () => void) => Promise<DirectoryWatch>;
  /**
   * A full garbage collection (V8's `gc`, defined under `--v8-flags=--expose-gc`), run after every
   * 10th reconcile, at most once a second. Left alone, V8 collects this mostly idle agent's little
   * garbage so late that RSS climbs for thousands of reconciles (docs/benchmarks.md, item 3).
   */
  readonly collectGarbage?: () => void;
  readonly timing?: Partial<AgentTiming>;
}

export interface AgentTiming {
  /** kubelet's `..data` swap emits about six events; one reconcile should follow them all. */
  readonly debounceMs: number;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
}

/** A burst of events delays the reconcile by at most this many debounce periods. */
const maxDebounceFactor = 4;

const defaultTiming: AgentTiming = {
  debounceMs: 150,
  initialBackoffMs: 1000,
  maxBackoffMs: 30_000,
};

/**
 * `collectGarbage` runs after every `gcEveryReconciles`th reconcile, but at most once per
 * `gcMinIntervalMs`. One collection costs about 20 ms of CPU (a 5-10 ms pause), ten reconciles
 * leave well under 1 MB of garbage, and a burst of reconciles gets at most one collection a second.
 */
const gcEveryReconciles = 10;
const gcMinIntervalMs = 1000;

type ReconcileResult =
  | { kind: "applied" }
  | { kind: "config-rejected"; error: ConfigError };

export class Agent {
  readonly #deps: AgentDeps;
  readonly #timing: AgentTiming;
  readonly #wakeup = new Wakeup();
  #lastGood?: { desired: DesiredChain[]; resyncMs: number };
  #lastConfigError?: string;
  #lastConfigSummary?: string;
  #lastRules = new Map<Family, string>();
  #inSync = new Set<Family>();
  #debounce?: ReturnType<typeof setTimeout>;
  #burstStart?: number;
  #watcher?: DirectoryWatch;
  #watchFailureLogged = false;
  #reconcilesSinceGc = 0;
  #lastGcAt = -Infinity;

  constructor(deps: AgentDeps) {
    this.#deps = deps;
    this.#timing = { ...defaultTiming, ...deps.timing };
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
    let failingSince: number | undefined;
    let backoffMs = this.#timing.initialBackoffMs;
    try {
      while (!signal.aborted) {
        await this.#ensureWatch();
        let delayMs: number;
        try {
          const result = await this.#reconcile(signal, { keepLastGood: !flags.exitOnConfigError });
          if (result.kind === "config-rejected") return this.#rejectConfig(result.error);
          failingSince = undefined;
          backoffMs = this.#timing.initialBackoffMs;
          // Only now: a resyncInterval in the config just read applies to this very wait.
          delayMs = this.#resyncMs();
        } catch (error) {
          if (signal.aborted) break;
          if (!(error instanceof IptablesError) || error.failure === "missing") {
            return this.#fatal(error, signal);
          }
          const now = Date.now();
          if (error.failure === "lock") {
            log.warn(`the xtables lock is held by another program; retrying in ${backoffMs} ms`, {
              error: error.message,
            });
          } else {
            failingSince ??= now;
            const budgetLeft = failingSince + this.#resyncMs() - now;
            if (budgetLeft <= 0) {
              log.error(
                `giving up: iptables kept failing for one resync interval (${this.#resyncMs()} ms)`,
                { error: formatErrorChain(error) },
              );
              return exitCodes.runtime;
            }
            log.warn(`applying rules failed; retrying in ${Math.min(backoffMs, budgetLeft)} ms`, {
              error: formatErrorChain(error),
            });
            backoffMs = Math.min(backoffMs, budgetLeft);
          }
          delayMs = backoffMs;
          backoffMs = Math.min(backoffMs * 2, this.#timing.maxBackoffMs);
        }
        this.#collectGarbage();
        await this.#wakeup.wait(delayMs, signal);
      }
      return exitCodes.ok;
    } finally {
      clearTimeout(this.#debounce);
      this.#watcher?.close();
    }
  }

  #collectGarbage() {
    const collect = this.#deps.collectGarbage;
    if (!collect || ++this.#reconcilesSinceGc < gcEveryReconciles) return;
    if (performance.now() - this.#lastGcAt < gcMinIntervalMs) return;
    collect();
    this.#reconcilesSinceGc = 0;
    this.#lastGcAt = performance.now();
  }

  #resyncMs(): number {
    return this.#lastGood?.resyncMs ?? this.#deps.flags.resyncInterval * 1000;
  }

  async #reconcile(
    signal: AbortSignal,
    policy: { keepLastGood: boolean },
  ): Promise<ReconcileResult> {
    const { flags, log } = this.#deps;
    let desired: DesiredChain[];
    try {
      const loaded = loadConfig(await this.#deps.readConfigDir(flags.configDir), flags);
      desired = desiredChains(loaded.effective, flags, this.#deps.randomFullySupported);
      const resyncMs = loaded.effective.resyncInterval?.value ?? flags.resyncInterval * 1000;
      this.#logConfigChange(loaded, desired, resyncMs);
      this.#lastGood = { desired, resyncMs };
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
    this.#logOutcomes(await applyDesired(desired, this.#deps.clients, signal));
    return { kind: "applied" };
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
    }
    log.info("effective configuration", { config: summary });
    for (const finding of findings) log.warn(finding.message, { finding: finding.kind });
    for (const chain of desired) {
      const rules = chainRuleLines(chain);
      if (this.#lastRules.get(chain.family) === rules.join("\n")) continue;
      this.#lastRules.set(chain.family, rules.join("\n"));
      this.#inSync.delete(chain.family);
      log.info(`desired ${chain.family} rules: ${chain.exemptions.length} RETURN, then MASQUERADE`);
      chain.exemptions.forEach((cidr) =>
        log.debug(`  RETURN ${cidr.value.text}`, { from: formatLocation(cidr.at) })
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

  async #ensureWatch() {
    if (!this.#deps.watch) return;
    const dir = this.#deps.flags.configDir;
    if (this.#watcher) {
      if (!(await this.#watcher.isStale())) return;
      this.#watcher.close();
      this.#watcher = undefined;
      this.#deps.log.info(`${dir} was removed or replaced; watching it anew`);
    }
    try {
      this.#watcher = await this.#deps.watch(dir, () => {
        // Each event restarts the quiet period, but a stream of events that never pauses must not
        // postpone the reconcile forever: the first event of a burst bounds the wait.
        const now = Date.now();
        this.#burstStart ??= now;
        const ceiling = this.#burstStart + maxDebounceFactor * this.#timing.debounceMs - now;
        clearTimeout(this.#debounce);
        this.#debounce = setTimeout(() => {
          this.#burstStart = undefined;
          this.#wakeup.fire();
        }, Math.max(0, Math.min(this.#timing.debounceMs, ceiling)));
      });
      if (this.#watchFailureLogged) this.#deps.log.info(`watching ${dir} for changes again`);
      this.#watchFailureLogged = false;
    } catch (error) {
      if (!this.#watchFailureLogged) {
        this.#deps.log.warn(
          `cannot watch ${dir}; changes apply at the next resync (retrying each resync)`,
          { error: formatErrorChain(error) },
        );
      }
      this.#watchFailureLogged = true;
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
