/**
 * The long-running agent: one serialized reconcile loop woken by start-up, the config watch,
 * SIGHUP and the resync timer; the bad-config policy; retries as backoff.ts decides them.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import { ConfigError } from "../base/problems.ts";
import type { ConfigDirContents, watchConfigDir } from "../config/directory.ts";
import { sameConfigDirContents } from "../config/identity.ts";
import { decideRetry, initialRetryState, type RetryPolicy } from "./backoff.ts";
import { exitCodeFor, exitCodes, formatErrorChain } from "../base/errors.ts";
import type { AgentFlags } from "../settings/flags.ts";
import { defaultGcPolicy, gcAfterReconcile, gcCollected, initialGcState } from "./gc_schedule.ts";
import { ToolError } from "../base/tool.ts";
import type { Logger } from "../base/log.ts";
import type { DesiredChain } from "../policy/chain.ts";
import { desiredChains, loadConfig, type StartupLoad } from "../policy/desired.ts";
import { changedSettings, type CommandLine, type SettingKey } from "../settings/keys.ts";
import { applyDesired, type Dataplane } from "../policy/dataplane.ts";
import { type Clock, systemClock } from "../base/clock.ts";
import { ConfigWatch, type DebouncePolicy, defaultDebouncePolicy } from "./config_watch.ts";
import { logChanges, type LogEvent, nothingLogged } from "./log_changes.ts";

/** What the agent needs from the host; each effect is a seam a test can replace. */
export interface AgentDeps {
  /** Parsed once at start, with the config's settings applied; fixed while the agent runs. */
  readonly flags: AgentFlags;
  /** As given; when a load's settings differ from `flags`, it exits (1, rules kept) to restart. */
  readonly commandLine?: CommandLine;
  /** The config as main.ts loaded it at start: the first reconcile of the same bytes takes it. */
  readonly startupLoad?: StartupLoad;
  /** Where changes are logged. */
  readonly log: Logger;
  /** Reads the config directory's `ip-masq*` entries. */
  readonly readConfigDir: (dir: string) => Promise<ConfigDirContents>;
  /** The rules it programs: the loop never asks which dataplane. */
  readonly dataplane: Dataplane;
  /** Whether MASQUERADE `--random-fully` works, probed once per family at start. */
  readonly randomFullySupported: Readonly<Record<Family, boolean>>;
  /** Starts the config directory watch. */
  readonly watch?: typeof watchConfigDir;
  /** A full garbage collection (V8's `gc` under `--expose-gc`), run as gc_schedule.ts says. */
  readonly collectGarbage?: () => void;
  /** Overrides of the loop's delays. */
  readonly timing?: Partial<AgentTiming>;
  /** The system clock unless a test drives the agent in virtual time. */
  readonly clock?: Clock;
}

/** The loop's delays; tests shorten them. */
export type AgentTiming =
  & Pick<DebouncePolicy, "quietMs">
  & Pick<RetryPolicy, "initialBackoffMs" | "maxBackoffMs">;

/** Reconciles the rules with the config directory: once (`--once`), or in a loop until aborted. */
export class Agent {
  readonly #deps: AgentDeps;
  readonly #timing: AgentTiming;
  readonly #clock: Clock;
  readonly #wakeup: Wakeup;
  readonly #configWatch?: ConfigWatch;
  #lastGood?: { contents: ConfigDirContents; desired: DesiredChain[]; resyncIntervalMs: number };
  #startupLoad?: StartupLoad;
  #logged = nothingLogged;
  #gc = initialGcState;

  /** Does nothing until `run()` or `once()`. */
  constructor(deps: AgentDeps) {
    this.#deps = deps;
    this.#startupLoad = deps.startupLoad;
    this.#timing = {
      quietMs: defaultDebouncePolicy.quietMs,
      initialBackoffMs: 1000,
      maxBackoffMs: 30_000,
      ...deps.timing,
    };
    this.#clock = deps.clock ?? systemClock;
    this.#wakeup = new Wakeup(this.#clock);
    if (deps.watch) {
      this.#configWatch = new ConfigWatch({
        dir: deps.flags.configDir,
        watch: deps.watch,
        log: deps.log,
        clock: this.#clock,
        debounce: { ...defaultDebouncePolicy, quietMs: this.#timing.quietMs },
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
      const rejected = await this.#reconcile(signal, false);
      return rejected ? this.#rejectConfig(rejected) : exitCodes.ok;
    } catch (error) {
      return this.#fatal(error, signal);
    }
  }

  /** Runs until `signal` aborts (exit 0) or a failure the policy does not survive. */
  async run(signal: AbortSignal): Promise<number> {
    const { flags, log } = this.#deps;
    let retry = initialRetryState(this.#timing);
    try {
      while (!signal.aborted) {
        await this.#configWatch?.ensure();
        let delayMs: number;
        try {
          const rejected = await this.#reconcile(signal, !flags.exitOnConfigError);
          if (rejected) return this.#rejectConfig(rejected);
          retry = initialRetryState(this.#timing);
          // Only now: a resyncInterval in the config just read applies to this very wait.
          delayMs = this.#resyncIntervalMs();
        } catch (error) {
          if (signal.aborted) break;
          if (error instanceof SettingsChangedError) {
            log.warn(error.message);
            return exitCodes.runtime;
          }
          const failure = error instanceof ToolError && error.failure !== "missing"
            ? error.failure
            : "fatal";
          const decision = decideRetry(retry, failure, this.#clock.now(), {
            ...this.#timing,
            budgetMs: this.#resyncIntervalMs(),
          });
          if (decision.action === "fatal") return this.#fatal(error, signal);
          if (decision.action === "give-up") {
            log.error(
              `giving up: iptables kept failing for one resync interval (${decision.budgetMs} ms)`,
              { error: formatErrorChain(error) },
            );
            return exitCodes.runtime;
          }
          const what = decision.reason === "lock"
            ? "the xtables lock is held by another program"
            : "applying rules failed";
          log.warn(`${what}; retrying in ${decision.delayMs} ms`, {
            error: formatErrorChain(error), // a lock's ToolError has no cause: just its message
          });
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
    const step = gcAfterReconcile(this.#gc, this.#clock.now(), defaultGcPolicy);
    this.#gc = step.state;
    if (!step.collect || !this.#deps.collectGarbage) return;
    this.#deps.collectGarbage();
    this.#gc = gcCollected(this.#clock.now());
  }

  #resyncIntervalMs(): number {
    return this.#lastGood?.resyncIntervalMs ?? this.#deps.flags.resyncIntervalMs;
  }

  #log(event: LogEvent) {
    const { lines, logged } = logChanges(this.#logged, event);
    this.#logged = logged;
    for (const { level, message, fields } of lines) this.#deps.log[level](message, fields);
  }

  /** Returns the error that rejected the config, unless the last good one is kept instead. */
  async #reconcile(signal: AbortSignal, keepLastGood: boolean): Promise<ConfigError | undefined> {
    const { configDir } = this.#deps.flags;
    let desired: DesiredChain[];
    try {
      const contents = await this.#deps.readConfigDir(configDir);
      this.#log({ kind: "read", configDir, contents });
      desired = this.#desiredFor(contents);
      this.#log({ kind: "valid" });
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      if (!keepLastGood) return error;
      this.#log({ kind: "rejected", error: error.message, keepingLastGood: !!this.#lastGood });
      if (!this.#lastGood) return;
      desired = this.#lastGood.desired;
    }
    const outcomes = await applyDesired(desired, this.#deps.dataplane, signal);
    this.#log({ kind: "applied", outcomes });
  }

  /** The same bytes as the last good load give the same chains: a steady resync skips loading. */
  #desiredFor(contents: ConfigDirContents): DesiredChain[] {
    const last = this.#lastGood;
    if (last && sameConfigDirContents(last.contents, contents)) return last.desired;
    const { flags, commandLine } = this.#deps;
    const { configDir, dataplane } = flags;
    const startup = this.#startupLoad;
    this.#startupLoad = undefined;
    const loaded = startup && sameConfigDirContents(startup.contents, contents)
      ? startup.loaded
      : loadConfig(contents, flags, commandLine);
    const changed = loaded.settings ? changedSettings(flags, loaded.settings) : [];
    if (changed.length > 0) throw new SettingsChangedError(changed);
    const desired = desiredChains(loaded.effective, flags, this.#deps.randomFullySupported);
    const resyncIntervalMs = loaded.effective.resyncInterval?.value ?? flags.resyncIntervalMs;
    this.#log({ kind: "loaded", configDir, loaded, desired, resyncIntervalMs, dataplane });
    this.#lastGood = { contents, desired, resyncIntervalMs };
    return desired;
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

/** The config changed a setting the running agent was composed from. */
class SettingsChangedError extends Error {
  override readonly name = "SettingsChangedError";
  constructor(readonly keys: readonly SettingKey[]) {
    super(
      `the configuration changed ${keys.join(", ")}, which the agent reads only at start: ` +
        "exiting so that it restarts with the new value (the rules stay in place until then)",
    );
  }
}

/** The loop's wait for its next resync, which SIGHUP and the watch end early; never queued. */
export class Wakeup {
  readonly #clock: Clock;
  #pending = false;
  #wake?: () => void;

  /** Waits on `clock`. */
  constructor(clock: Clock = systemClock) {
    this.#clock = clock;
  }

  /** Ends the current wait, or makes the next one return at once; triggers never queue up. */
  fire(): void {
    this.#pending = true;
    this.#wake?.();
  }

  /** Resolves after `ms`, on `fire()`, or on abort, whichever comes first. */
  async wait(ms: number, signal: AbortSignal): Promise<void> {
    if (!this.#pending && !signal.aborted) {
      // Linked by hand: AbortSignal.any() would tie each wait's controller to the lifelong signal.
      const woken = new AbortController();
      const wake = () => woken.abort();
      signal.addEventListener("abort", wake);
      this.#wake = wake;
      await this.#clock.sleep(ms, woken.signal); // never rejects, as Clock promises
      signal.removeEventListener("abort", wake);
      this.#wake = undefined;
    }
    this.#pending = false;
  }
}
