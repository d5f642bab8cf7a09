/**
 * One IP address (`--explain`, `--explain-source`), parsed as strictly as the config's CIDRs.
 *
 * @module
 */

import { type Cidr, contains, type Family, familyBits, parseCidr } from "./cidr.ts";
import { quoteInput } from "../base/quote.ts";
import { err, ok, type Result } from "../base/result.ts";

/** A parsed address: a host prefix of its family. */
export interface IpAddress {
  /** Which family's table decides it. */
  readonly family: Family;
  /** The address as a number. */
  readonly address: bigint;
  /** The canonical spelling (as iptables prints it, without the prefix length). */
  readonly text: string;
}

/**
 * Parses `input` as one address.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseIpAddress } from "./address.ts";
 *
 * const parsed = parseIpAddress("2001:DB8::1");
 * assert.ok(parsed.ok);
 * assert.equal(parsed.value.text, "2001:db8::1");
 * assert.ok(!parseIpAddress("10.0.0.0/8").ok);
 * ```
 */
export function parseIpAddress(input: string): Result<IpAddress, string> {
  if (input.length === 0) return err("empty address");
  if (input.includes("/")) {
    return err(`${quoteInput(input)} is a CIDR: give one address, such as 10.1.2.3`);
  }
  const suffix = `/${input.includes(":") ? 128 : 32}`;
  const parsed = parseCidr(input + suffix);
  // Reasons quote the whole input: drop the suffix we added.
  if (!parsed.ok) return err(parsed.error.replaceAll(`${suffix}"`, '"'));
  const { family, address } = parsed.value;
  return ok({ family, address, text: parsed.value.text.replace(/\/\d+$/, "") });
}

/** Whether `address` lies inside `cidr` (false for another family). */
export function inCidr(cidr: Cidr, address: IpAddress): boolean {
  const prefix = familyBits(address.family);
  return contains(cidr, { ...address, prefix, text: `${address.text}/${prefix}` });
}

/** 127.0.0.0/8 and ::1: local on every node (other local addresses the agent cannot tell). */
export function isLoopback({ family, address }: IpAddress): boolean {
  return family === "ipv4" ? address >> 24n === 127n : address === 1n;
}
