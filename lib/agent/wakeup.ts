/**
 * A coalescing wake-up: any number of triggers while the loop is busy become
 * exactly one more reconcile, and a trigger ends the wait for the next resync.
 *
 * @module
 */

import { type Clock, systemClock } from "../base/clock.ts";

/** The loop's wait for its next resync, which SIGHUP and the watch can end early. */
export class Wakeup {
  readonly #clock: Clock;
  #pending = false;
  #wake?: () => void;

  /** Waits on `clock`; the system clock unless a test passes a fake one. */
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
    if (this.#pending || signal.aborted) {
      this.#pending = false;
      return;
    }
    // One controller per wait, linked by hand: AbortSignal.any() would tie each wait to the
    // agent's lifelong signal.
    const woken = new AbortController();
    const wake = () => woken.abort();
    signal.addEventListener("abort", wake);
    this.#wake = wake;
    try {
      await this.#clock.sleep(ms, woken.signal);
    } finally {
      signal.removeEventListener("abort", wake);
      this.#wake = undefined;
      this.#pending = false;
    }
  }
}
