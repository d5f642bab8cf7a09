/**
 * The config directory watch and its debounce, a pure step: kubelet's `..data` swap emits about
 * six events within a few milliseconds, and one reconcile should follow them all. Each event
 * restarts the quiet period, but a burst's first event bounds the wait at `maxPeriods` of them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { debounceStep, idleDebounce } from "./config_watch.ts";
 * const policy = { quietMs: 150, maxPeriods: 4 };
 * const first = debounceStep(idleDebounce, "changed", 0, policy);
 * assert.equal(first.armMs, 150);
 * const late = debounceStep(first.state, "changed", 500, policy);
 * assert.equal(late.armMs, 100); // the burst began at 0: fire by 600 at the latest
 * ```
 *
 * @module
 */

import { formatErrorChain } from "../base/errors.ts";
import type { CancelTimer, Clock } from "../base/clock.ts";
import type { DirectoryWatch, watchConfigDir } from "../config/directory.ts";
import type { Logger } from "../base/log.ts";

/** How long the directory must be quiet, and how long a burst may postpone the reconcile. */
export interface DebouncePolicy {
  /** The quiet period. */
  readonly quietMs: number;
  /** The most quiet periods a burst may last from its first event. */
  readonly maxPeriods: number;
}

/** kubelet's swap settles well within 150 ms; a burst waits at most 600 ms. */
export const defaultDebouncePolicy: DebouncePolicy = { quietMs: 150, maxPeriods: 4 };

/** Whether a burst is open, and since when. */
export interface DebounceState {
  /** When the current burst's first event came; null while none is open. */
  readonly burstStartedAt: number | null;
}

/** No burst open. */
export const idleDebounce: DebounceState = { burstStartedAt: null };

/** `changed`: an event arrived. `fired`: the armed timer went off. */
export type DebounceEvent = "changed" | "fired";

/** The step after `event` at `now`: a timer in `armMs` (null: none) replaces any armed one. */
export function debounceStep(
  state: DebounceState,
  event: DebounceEvent,
  now: number,
  policy: DebouncePolicy,
): { readonly state: DebounceState; readonly armMs: number | null; readonly settle: boolean } {
  if (event === "fired") return { state: idleDebounce, armMs: null, settle: true };
  const burstStartedAt = state.burstStartedAt ?? now;
  const ceilingMs = burstStartedAt + policy.maxPeriods * policy.quietMs - now;
  const armMs = Math.max(0, Math.min(policy.quietMs, ceilingMs));
  return { state: { burstStartedAt }, armMs, settle: false };
}

/** What the watch needs. */
export interface ConfigWatchDeps {
  /** The config directory (`--config-dir`). */
  readonly dir: string;
  /** Starts a watch of the directory; throws when it cannot be watched (yet). */
  readonly watch: typeof watchConfigDir;
  /** Where watch failures and renewals are logged. */
  readonly log: Logger;
  /** The debounce's timers. */
  readonly clock: Clock;
  /** The debounce policy. */
  readonly debounce: DebouncePolicy;
  /** Once per settled burst of changes. */
  readonly onSettled: () => void;
}

/** The config directory's watch, kept alive across removal; one `onSettled` per burst of events. */
export class ConfigWatch {
  readonly #deps: ConfigWatchDeps;
  #watcher?: DirectoryWatch;
  #failureLogged = false;
  #debounce: DebounceState = idleDebounce;
  #cancelTimer?: CancelTimer;
  #closed = false;

  /** Watches nothing until the first `ensure()`. */
  constructor(deps: ConfigWatchDeps) {
    this.#deps = deps;
  }

  /** Watches the directory if it is not watched yet, or no longer (removed or replaced). */
  async ensure(): Promise<void> {
    const { dir, log } = this.#deps;
    if (this.#closed) return;
    if (this.#watcher) {
      if (!(await this.#watcher.isStale())) return;
      this.#watcher.close();
      this.#watcher = undefined;
      log.info(`${dir} was removed or replaced; watching it anew`);
    }
    try {
      const watcher = await this.#deps.watch(dir, () => this.#step("changed"));
      if (this.#closed) return watcher.close();
      this.#watcher = watcher;
      if (this.#failureLogged) log.info(`watching ${dir} for changes again`);
      this.#failureLogged = false;
    } catch (error) {
      if (this.#failureLogged) return;
      this.#failureLogged = true;
      log.warn(
        `cannot watch ${dir}; changes apply at the next resync (retrying each resync)`,
        { error: formatErrorChain(error) },
      );
    }
  }

  /** Stops the watch for good and forgets a burst in progress. */
  close(): void {
    this.#closed = true;
    this.#cancelTimer?.();
    this.#watcher?.close();
    this.#watcher = undefined;
  }

  #step(event: DebounceEvent) {
    // The watcher's event stream may still deliver what was queued before close().
    if (this.#closed) return;
    const { clock, debounce, onSettled } = this.#deps;
    const step = debounceStep(this.#debounce, event, clock.now(), debounce);
    this.#debounce = step.state;
    this.#cancelTimer?.();
    this.#cancelTimer = step.armMs === null
      ? undefined
      : clock.setTimer(step.armMs, () => this.#step("fired"));
    if (step.settle) onSettled();
  }
}
