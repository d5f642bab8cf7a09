/**
 * Which names our nat chain may have (`--masq-chain`).
 *
 * @module
 */

import { goQuote } from "../base/go_strconv.ts";
import { err, ok, type Result } from "../base/result.ts";

/** iptables keeps chain names in a 29-byte buffer including the terminating NUL. */
const MAX_CHAIN_NAME_LENGTH = 28;

const RESERVED_CHAIN_NAMES: ReadonlySet<string> = new Set(
  ("PREROUTING INPUT FORWARD OUTPUT POSTROUTING ACCEPT DROP RETURN QUEUE NFQUEUE MASQUERADE SNAT " +
    "DNAT REJECT LOG MARK REDIRECT " +
    // Every other target extension iptables ships: "-j NAME" loads the extension instead of
    // jumping to a chain of that name, so the jump we write can never be read back or deleted
    // (iptables-save | iptables-restore of the whole nat table breaks too), and "standard"
    // crashes iptables-restore.
    "AUDIT CHECKSUM CLASSIFY CLUSTERIP CONNMARK CONNSECMARK CT DNPT DSCP ECN HL HMARK IDLETIMER " +
    "LED NETMAP NFLOG NOTRACK RATEEST SECMARK SET SNPT STANDARD SYNPROXY TCPMSS TCPOPTSTRIP TEE " +
    "TOS TPROXY TRACE TTL ULOG").split(" "),
);

/**
 * `name` when it can be our chain, or why not (quoted in Go's `%q`, as the flag parser's
 * messages are): it must survive iptables-save/-restore and not read as an option, a negation,
 * a built-in chain or a target.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkChainName } from "./chain_name.ts";
 *
 * assert.deepEqual(checkChainName("MY-MASQ"), { ok: true, value: "MY-MASQ" });
 * assert.deepEqual(checkChainName("snat"), {
 *   ok: false,
 *   error: "must not be a built-in iptables chain or target name",
 * });
 * ```
 */
export function checkChainName(name: string): Result<string, string> {
  if (name === "") return err("must not be empty");
  // Anything outside printable ASCII, and the characters that iptables-save/-restore treat as
  // quoting or comment syntax, would not survive a save/restore round trip.
  const bad = /[^\x21-\x7e]|["'\\#]/u.exec(name)?.[0];
  if (bad !== undefined) {
    return err(
      `must not contain ${goQuote(bad)} (only printable ASCII without whitespace, ` +
        `quotes, backslash or # is allowed)`,
    );
  }
  if (name.length > MAX_CHAIN_NAME_LENGTH) {
    return err(
      `must be at most ${MAX_CHAIN_NAME_LENGTH} characters (iptables limit), got ${name.length}`,
    );
  }
  // iptables would read a leading "-" as an option and a leading "!" as negation.
  if (name[0] === "-" || name[0] === "!") return err(`must not start with ${goQuote(name[0])}`);
  // iptables compares these case-sensitively, so "accept" would be a legal user chain; it is
  // rejected anyway because "-j accept" next to "-j ACCEPT" in a rule dump invites misreading.
  if (RESERVED_CHAIN_NAMES.has(name.toUpperCase())) {
    return err("must not be a built-in iptables chain or target name");
  }
  return ok(name);
}
