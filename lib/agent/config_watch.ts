/**
 * The config directory watch as the loop sees it: start the watch (and keep
 * trying each reconcile while the directory cannot be watched), watch a
 * removed or replaced directory anew, and turn each burst of events into one
 * `onSettled` call after the debounce (agent/debounce.ts). The loop calls
 * `ensure()` before each reconcile; nothing here reconciles.
 *
 * @module
 */

import { formatErrorChain } from "../base/errors.ts";
import { type DebouncePolicy, type DebounceState, debounceStep, idleDebounce } from "./debounce.ts";
import type { CancelTimer, Clock } from "../base/clock.ts";
import type { DirectoryWatch } from "../config/directory.ts";
import type { Logger } from "../base/log.ts";

/** Starts watching; returns a handle, or throws when the directory cannot be watched (yet). */
export type StartWatch = (dir: string, onChange: () => void) => Promise<DirectoryWatch>;

/** What the watch needs: each effect is injected. */
export interface ConfigWatchDeps {
  /** The config directory (`--config-dir`). */
  readonly dir: string;
  /** Starts a watch of the directory: config/directory.ts's `watchConfigDir`, or a test's script. */
  readonly watch: StartWatch;
  /** Where the watch says it cannot watch, or watches anew. */
  readonly log: Logger;
  /** The debounce's timers. */
  readonly clock: Clock;
  /** How a burst of events becomes one settle. */
  readonly debounce: DebouncePolicy;
  /** Once per burst of changes, when it has settled. */
  readonly onSettled: () => void;
}

/** The config directory's watch, kept alive across removal, with its debounce. */
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
      if (!this.#failureLogged) {
        log.warn(
          `cannot watch ${dir}; changes apply at the next resync (retrying each resync)`,
          { error: formatErrorChain(error) },
        );
      }
      this.#failureLogged = true;
    }
  }

  /** Stops the watch for good and forgets a burst in progress. */
  close(): void {
    this.#closed = true;
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    this.#debounce = idleDebounce;
    this.#watcher?.close();
    this.#watcher = undefined;
  }

  #step(event: "changed" | "fired") {
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
