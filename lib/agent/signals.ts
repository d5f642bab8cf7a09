/**
 * Signal handling. Listeners are always installed: as PID 1 in a container,
 * Deno without a SIGTERM listener dies by SIGSEGV instead of exiting cleanly.
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
  const stopOnTerm = () => handlers.onStop("SIGTERM");
  const stopOnInt = () => handlers.onStop("SIGINT");
  Deno.addSignalListener("SIGTERM", stopOnTerm);
  Deno.addSignalListener("SIGINT", stopOnInt);
  Deno.addSignalListener("SIGHUP", handlers.onReload);
  return () => {
    Deno.removeSignalListener("SIGTERM", stopOnTerm);
    Deno.removeSignalListener("SIGINT", stopOnInt);
    Deno.removeSignalListener("SIGHUP", handlers.onReload);
  };
}
