/**
 * The masquerade decision, one pure function both dataplanes, `--explain` and the tests' tracer
 * answer to. In order:
 * 1. a local destination keeps its source (our jump skips `--dst-type LOCAL`);
 * 2. insert mode: traffic kube-proxy marked leaves our chain; kube-proxy's rule masquerades it;
 * 3. a source inside `nonMasqueradeSrcCIDRs` keeps its address;
 * 4. the longest prefix among exemptions and `masqueradeCIDRs` exceptions decides; an exception
 *    wins a tie (only the built-in link-local range can tie); no exemption means masquerade;
 * 5. with `outputInterface`, traffic leaving by another interface keeps its source.
 *
 * @module
 */

import { inCidr, type IpAddress } from "../net/address.ts";
import type { Cidr } from "../net/cidr.ts";
import { interfaceMatches } from "../settings/output.ts";
import { type DesiredChain, kubeProxyMarkOf } from "./chain.ts";
import type { Located } from "../base/source.ts";

/** What happens to the packet's source address. */
export type Verdict = "masquerade" | "keep source";

/** The one thing that decided, with where it came from. */
export type DecidingItem =
  | { readonly kind: "local-destination" }
  | { readonly kind: "source-exemption"; readonly cidr: Located<Cidr> }
  | { readonly kind: "link-local"; readonly cidr: Located<Cidr> }
  | {
    readonly kind: "non-masquerade";
    readonly cidr: Located<Cidr>;
    /** True for the defaults, which apply only when no config file is present. */
    readonly builtInDefault: boolean;
  }
  | {
    readonly kind: "masquerade-exception";
    readonly cidr: Located<Cidr>;
    /** The longest exemption it cuts the destination out of. */
    readonly narrows: Located<Cidr>;
  }
  | { readonly kind: "no-exemption" }
  | { readonly kind: "kube-proxy-mark"; readonly mark: number }
  | { readonly kind: "other-interface"; readonly outputInterface: Located<string> };

/** A decision and its reason. */
export interface Decision {
  /** Masqueraded, or not. */
  readonly verdict: Verdict;
  /** What decided it. */
  readonly because: DecidingItem;
  /** A masquerade by our rules SNATs to this `outputAddress` rather than the node's address. */
  readonly snatTo?: Located<IpAddress>;
  /** The packet's interface was not given: the masquerade assumes it leaves by this one. */
  readonly onlyVia?: Located<string>;
}

/** The packet as the decision sees it. */
export interface Packet {
  /** Where it goes; of the desired chain's family. */
  readonly destination: IpAddress;
  /** Where it comes from; when unknown, source exemptions are not applied. */
  readonly source?: IpAddress;
  /** Whether the destination is an address of the node itself. */
  readonly localDestination?: boolean;
  /** The interface the packet leaves by, if known. */
  readonly outputInterface?: string;
  /** Whether kube-proxy marked it for masquerade. */
  readonly kubeProxyMarked?: boolean;
}

/**
 * The decision for `packet` under `desired`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseIpAddress } from "../net/address.ts";
 * import { parseBuiltInCidr } from "../net/cidr.ts";
 * import { decide } from "./decision.ts";
 *
 * const cidr = (text: string) => ({ value: parseBuiltInCidr(text), at: { file: "f", line: 1 } });
 * const chain = {
 *   family: "ipv4" as const,
 *   chain: "IP-MASQ-AGENT",
 *   exemptions: [cidr("10.0.0.0/8")],
 *   masqueradeExceptions: [cidr("10.1.0.0/16")],
 *   masquerade: { randomFully: true, toPorts: [] },
 * };
 * const [outside, inside] = ["10.2.0.1", "10.1.0.1"].map(parseIpAddress);
 * assert.ok(outside.ok && inside.ok);
 * assert.equal(decide(chain, { destination: outside.value }).verdict, "keep source");
 * assert.equal(decide(chain, { destination: inside.value }).because.kind, "masquerade-exception");
 * ```
 */
export function decide(desired: DesiredChain, packet: Packet): Decision {
  if (packet.localDestination) {
    return { verdict: "keep source", because: { kind: "local-destination" } };
  }
  const mark = kubeProxyMarkOf(desired);
  if (mark !== undefined && packet.kubeProxyMarked) {
    return { verdict: "masquerade", because: { kind: "kube-proxy-mark", mark } };
  }
  const decision = decideByConfig(desired, packet);
  if (decision.verdict !== "masquerade") return decision;
  const via = desired.outputInterface;
  const leaves = packet.outputInterface;
  if (via && leaves !== undefined && !interfaceMatches(via.value, leaves)) {
    return { verdict: "keep source", because: { kind: "other-interface", outputInterface: via } };
  }
  return {
    ...decision,
    ...(desired.outputAddress ? { snatTo: desired.outputAddress } : {}),
    ...(via && leaves === undefined ? { onlyVia: via } : {}),
  };
}

/** Steps 3 and 4: the source exemptions, then the longest prefix. */
function decideByConfig(desired: DesiredChain, packet: Packet): Decision {
  const { source, destination } = packet;
  const fromExempt = source === undefined
    ? undefined
    : desired.sourceExemptions?.find((cidr) => inCidr(cidr.value, source));
  if (fromExempt) {
    return { verdict: "keep source", because: { kind: "source-exemption", cidr: fromExempt } };
  }
  const exemption = longestMatch(desired.exemptions, destination);
  if (!exemption) return { verdict: "masquerade", because: { kind: "no-exemption" } };
  const exception = longestMatch(desired.masqueradeExceptions ?? [], destination);
  if (exception && exception.value.prefix >= exemption.value.prefix) {
    const because = { kind: "masquerade-exception", cidr: exception, narrows: exemption } as const;
    return { verdict: "masquerade", because };
  }
  const because: DecidingItem = exemption === desired.linkLocal
    ? { kind: "link-local", cidr: exemption }
    : { kind: "non-masquerade", cidr: exemption, builtInDefault: exemption.at.line === undefined };
  return { verdict: "keep source", because };
}

/** The CIDR with the longest prefix holding `address`; the first listed wins a tie. */
function longestMatch(cidrs: readonly Located<Cidr>[], address: IpAddress) {
  let best: Located<Cidr> | undefined;
  for (const cidr of cidrs) {
    if (inCidr(cidr.value, address) && cidr.value.prefix > (best?.value.prefix ?? -1)) best = cidr;
  }
  return best;
}
