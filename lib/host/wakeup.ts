/**
 * A coalescing wake-up: any number of triggers while the loop is busy become
 * exactly one more reconcile, and a trigger ends the wait for the next resync.
 *
 * @module
 */

export class Wakeup {
  #pending = false;
  #wake?: () => void;

  fire(): void {
    this.#pending = true;
    this.#wake?.();
  }

  /** Resolves after `ms`, on `fire()`, or on abort, whichever comes first. */
  wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.#pending || signal.aborted) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.#wake = undefined;
        this.#pending = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done);
      this.#wake = done;
    });
  }
}
