/**
 * `lib/agent/`: the folder's map.
 *
 * Owns: The long-running loop: one serialized reconcile fed by start-up, the config watch, SIGHUP
 * and the resync timer; its timing decisions (debounce, backoff, GC schedule) as pure step
 * functions of (state, event, now), and what it logs, once per change (log_changes.ts), as one
 * of (what was logged, event); the wake-up and signal seams.
 *
 * May import: `base/`, `net/`, `settings/`, `config/`, `policy/`, `iptables/`, `nftables/`.
 *
 * Effects through the injected clock, exec and directory seams; `signals.ts` is the signal seam.
 *
 * @module
 */

export {};
