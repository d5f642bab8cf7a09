/**
 * Go `time.ParseDuration` for the `resyncInterval` config key, so that every value the Go agents
 * accepted means the same thing here.
 *
 * @module
 */

import { quoteInput } from "../base/quote.ts";
import { err, ok, type Result } from "../base/result.ts";

const unitNanoseconds: Readonly<Record<string, number>> = {
  ns: 1,
  us: 1e3,
  "µs": 1e3, // U+00B5 micro sign
  "μs": 1e3, // U+03BC Greek mu
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

/**
 * Parses `"60s"`, `"1m30s"`, `"1.5h"`, `"-2s"`, `"0"` exactly as Go does, into milliseconds
 * (fractions kept: `"1.5ms"` is 1.5).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseGoDuration } from "./duration.ts";
 *
 * assert.deepEqual(parseGoDuration("1m30s"), { ok: true, value: 90_000 });
 * assert.equal(parseGoDuration("60").ok, false); // a unit is required, as in Go
 * ```
 */
export function parseGoDuration(text: string): Result<number, string> {
  const invalid = () =>
    err(`invalid duration ${quoteInput(text)}: use a Go duration such as "60s" or "1m30s"`);
  const sign = text[0] === "-" ? -1 : 1;
  let rest = text[0] === "-" || text[0] === "+" ? text.slice(1) : text;
  if (rest === "0") return ok(0);
  if (rest === "") return invalid();
  let totalNanoseconds = 0;
  const units = "valid units: ns, us, ms, s, m, h";
  while (rest !== "") {
    const match = /^(\d*)(?:\.(\d*))?([^\d.]+)/.exec(rest);
    if (!match) return invalid();
    const [whole, integer, fraction = "", unit] = match;
    if (integer === "" && fraction === "") return invalid();
    const scale = unitNanoseconds[unit];
    if (scale === undefined) {
      return err(`unknown unit ${quoteInput(unit)} in duration ${quoteInput(text)} (${units})`);
    }
    totalNanoseconds += Number(`${integer || "0"}.${fraction || "0"}`) * scale;
    rest = rest.slice(whole.length);
  }
  // Go fails above about 292 years; a far smaller bound keeps timers sane and is checked by callers.
  if (!Number.isFinite(totalNanoseconds) || totalNanoseconds > 9.2e18) return invalid();
  return ok(sign * totalNanoseconds / 1e6);
}

/**
 * The resync interval's bounds, for the flag and the config key alike: under a second the agent
 * would spin on iptables-save, and JavaScript timers overflow past about 24.8 days.
 */
export const resyncIntervalBoundsMs = { min: 1_000, max: 24 * 3600 * 1000 } as const;
const { min, max } = resyncIntervalBoundsMs;

/** {@link resyncIntervalBoundsMs} as the config key's message says them, in Go duration words. */
export const resyncIntervalBoundsText = `between ${min / 1000}s and ${max / 3_600_000}h`;
