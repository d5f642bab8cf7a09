/**
 * What narrows the masquerade rules: `outputAddress`/`outputAddressIPv6` (SNAT to it instead of
 * MASQUERADE), `outputInterface` (the interface traffic must leave by), kube-proxy's mark.
 *
 * @module
 */

import { inCidr, type IpAddress, isLoopback, parseIpAddress } from "../net/address.ts";
import { type Family, linkLocalRanges, parseBuiltInCidr } from "../net/cidr.ts";
import { quoteInput } from "../base/quote.ts";
import { err, ok, type Result } from "../base/result.ts";

/**
 * An address traffic can be SNATed to: one unicast address of `family`, not unspecified, "this
 * network", broadcast, multicast, loopback or link-local (replies to a link-local source do not
 * come back through a router).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseOutputAddress } from "./output.ts";
 *
 * const parsed = parseOutputAddress("192.0.2.5", "ipv4");
 * assert.ok(parsed.ok && parsed.value.text === "192.0.2.5");
 * assert.ok(!parseOutputAddress("2001:db8::5", "ipv4").ok);
 * assert.ok(!parseOutputAddress("169.254.1.1", "ipv4").ok);
 * ```
 */
export function parseOutputAddress(text: string, family: Family): Result<IpAddress, string> {
  const parsed = parseIpAddress(text);
  if (!parsed.ok) return err(`invalid address ${quoteInput(text)}: ${parsed.error}`);
  const address = parsed.value;
  const named = address.text;
  const ipv4 = family === "ipv4";
  if (address.family !== family) {
    const key = ipv4 ? "outputAddressIPv6" : "outputAddress (outputAddressIPv6 takes IPv6)";
    return err(
      `${named} is an ${address.family === "ipv4" ? "IPv4" : "IPv6"} address; give it as ${key}`,
    );
  }
  if (address.address === 0n) return err(`${named} is the unspecified address, not one to SNAT to`);
  const notSnat = (what: string) => err(`${named} is ${what}, not an address to SNAT to`);
  if (ipv4 && address.address >> 24n === 0n) return notSnat(`in 0.0.0.0/8 ("this network")`);
  if (ipv4 && address.address === 0xffffffffn) return notSnat("the broadcast address");
  const multicast = parseBuiltInCidr(ipv4 ? "224.0.0.0/4" : "ff00::/8");
  if (inCidr(multicast, address)) return notSnat("a multicast address");
  if (isLoopback(address)) return notSnat("a loopback address");
  const linkLocal = linkLocalRanges[family];
  if (inCidr(parseBuiltInCidr(linkLocal), address)) {
    return err(`${named} is link-local (${linkLocal}): replies to it would not be routed back`);
  }
  return ok(address);
}

/**
 * An interface name the kernel accepts and both dataplanes can write and read back without quoting
 * trouble; a final `+` is iptables' wildcard for every name starting with the rest (`eth+`), which
 * nftables spells `eth*`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseInterfaceName } from "./output.ts";
 *
 * assert.deepEqual(parseInterfaceName("eth+"), { ok: true, value: "eth+" });
 * assert.ok(!parseInterfaceName("eth0/1").ok);
 * assert.ok(!parseInterfaceName("a-very-long-name0").ok);
 * ```
 */
export function parseInterfaceName(text: string): Result<string, string> {
  const shown = quoteInput(text);
  const named = `interface name ${shown}`;
  if (text.length === 0) return err("empty interface name");
  // The kernel's IFNAMSIZ (16) less the terminating NUL.
  if (text.length > 15) {
    return err(`${named} is ${text.length} characters; the kernel allows at most 15`);
  }
  if (text === "." || text === "..") return err(`${shown} is not a valid interface name`);
  if (text === "+") {
    return err(`"+" matches every interface: leave outputInterface unset to masquerade on all`);
  }
  if (/[\s/:]/.test(text)) {
    return err(`${named} contains whitespace, "/" or ":", which the kernel refuses`);
  }
  if (/[^\x21-\x7e]|["'\\*#]/.test(text) || /^[-!]/.test(text)) {
    return err(
      `${named} has a character the rules cannot carry (printable ASCII ` +
        `only, no quotes, "\\", "*" or "#", not starting with "-" or "!")`,
    );
  }
  if (text.slice(0, -1).includes("+")) {
    return err(`${named}: "+" is a wildcard only as the last character`);
  }
  return ok(text);
}

/** The name as nftables matches it: iptables' trailing `+` wildcard is nft's `*`. */
export function nftInterfaceName(name: string): string {
  return name.endsWith("+") ? `${name.slice(0, -1)}*` : name;
}

/** Whether a packet leaving by interface `name` matches `pattern` (`eth+`: any name `eth...`). */
export function interfaceMatches(pattern: string, name: string): boolean {
  return pattern.endsWith("+") ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

/** `--kube-proxy-masquerade-bit`'s default: kube-proxy's `--iptables-masquerade-bit`. */
export const defaultKubeProxyMasqueradeBit = 14;

/** The mark value and mask kube-proxy sets for masquerade with `bit` (14: 0x4000). */
export function kubeProxyMark(bit: number): number {
  return 2 ** bit;
}

/** `0x4000` as iptables-save prints a mark. */
export function iptablesMarkText(mark: number): string {
  return `0x${mark.toString(16)}`;
}

/** `0x00004000` as nft list prints a mark. */
export function nftMarkText(mark: number): string {
  return `0x${mark.toString(16).padStart(8, "0")}`;
}
