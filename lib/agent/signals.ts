/**
 * Signal handling, always installed: as PID 1, Deno without a SIGTERM listener dies by SIGSEGV.
 *
 * @module
 */

/** What the agent does on each signal it handles. */
export interface SignalHandlers {
  /** SIGTERM or SIGINT: stop, leaving the rules in place. */
  readonly onStop: (signal: Deno.Signal) => void;
  /** SIGHUP: reconcile now. */
  readonly onReload: () => void;
}

/** Installs the listeners; returns the function that removes them again. */
export function installSignalHandlers(handlers: SignalHandlers): () => void {
  const listeners = new Map<Deno.Signal, () => void>([
    ["SIGTERM", () => handlers.onStop("SIGTERM")],
    ["SIGINT", () => handlers.onStop("SIGINT")],
    ["SIGHUP", handlers.onReload],
  ]);
  listeners.forEach((listener, signal) => Deno.addSignalListener(signal, listener));
  return () => listeners.forEach((listener, signal) => Deno.removeSignalListener(signal, listener));
}
