/**
 * Hostile and malformed input (issue 4), against the REAL entry point with the
 * production permission set, inside throwaway network namespaces.
 *
 * Every case starts from a known-good state: foreign rules in the filter,
 * mangle and nat tables of both families (another tool's chain and POSTROUTING
 * rule included) plus the agent's own rules from a good config. The case
 * snapshots every table (`iptables-save` and `ip6tables-save` without `-t`),
 * runs the agent on a hostile config directory or with a hostile flag, and
 * asserts exit 2, a message naming the file (and line and key where there is
 * one) or the flag with the usage text, and tables identical afterwards
 * (ignoring the `#` comment lines and counters).
 *
 * One namespace per backend is reused across the cases; most cases run on
 * nft, a representative subset also on legacy. A subset also runs the
 * long-running mode with `--exit-on-config-error=true`, and a few run the
 * keep-running mode (`--exit-on-config-error=false`) after a good config.
 *
 * @module
 */

import assert from "node:assert/strict";
import { AgentProcess, type AgentResult } from "../../lab/agent_process.ts";
import { type Backend, netnsTest } from "../../lab/host.ts";
import { backendBin, NetNs, restoreNat } from "../../lab/netns.ts";
import { upstreamReturnComment } from "../support/upstream_rules.ts";
import { ConfigError, formatProblem } from "../../lib/base/problems.ts";
import { loadConfig } from "../../lib/policy/desired.ts";
import { defaultFlags } from "../../lib/settings/flags.ts";
import { readConfigDir } from "../../lib/config/directory.ts";

const mountedConfigDir = "/etc/config";
const defaultFile = "ip-masq-agent";
/** The baseline's flags; hostile runs use them too, so anything accepted would show as a change. */
const baselineArgs = ["--enable-ipv6"] as const;

const goodConfig = `# known-good baseline
nonMasqueradeCIDRs:
  - 10.0.0.0/8
  - 192.168.0.0/16
  - fd00::/8
masqLinkLocal: false
resyncInterval: 60s
`;

const foreignRules = {
  ipv4: `*filter
:FOREIGN-FILTER - [0:0]
-A INPUT -s 192.0.2.1/32 -m comment --comment "foreign: keep me" -j FOREIGN-FILTER
-A FOREIGN-FILTER -j ACCEPT
COMMIT
*mangle
-A OUTPUT -p tcp -m tcp --dport 9 -j MARK --set-xmark 0x9/0xffffffff
COMMIT
*nat
:FOREIGN-NAT - [0:0]
-A POSTROUTING -s 10.99.0.0/16 -m comment --comment "foreign: another tool" -j FOREIGN-NAT
-A FOREIGN-NAT -d 203.0.113.0/24 -j RETURN
-A FOREIGN-NAT -j MASQUERADE
COMMIT
`,
  ipv6: `*filter
:FOREIGN-FILTER - [0:0]
-A INPUT -s 2001:db8::1/128 -m comment --comment "foreign: keep me" -j FOREIGN-FILTER
-A FOREIGN-FILTER -j ACCEPT
COMMIT
*nat
:FOREIGN-NAT - [0:0]
-A POSTROUTING -s fd99::/16 -m comment --comment "foreign: another tool" -j FOREIGN-NAT
-A FOREIGN-NAT -d 2001:db8:1::/48 -j RETURN
-A FOREIGN-NAT -j MASQUERADE
COMMIT
`,
};

// ---------------------------------------------------------------------------
// The case table
// ---------------------------------------------------------------------------

type Entry =
  | string
  | Uint8Array
  | { readonly symlink: string }
  | { readonly directory: true }
  | { readonly fifo: true };

interface ConfigExpectation {
  readonly kind: "config";
  /** Name of the entry in the config directory that the message must name. */
  readonly file: string;
  readonly line?: number;
  readonly key?: string;
  /** Must match on the problem's own line, after the location and key. */
  readonly reason: RegExp;
}

interface FlagExpectation {
  readonly kind: "flag";
  readonly flag: string;
  readonly reason: RegExp;
}

interface HostileCase {
  readonly name: string;
  /** Entries of the case's config directory, by name (a string is a file's text). */
  readonly entries?: Readonly<Record<string, Entry>>;
  /** Replaces baselineArgs (the mode flags are added per run). */
  readonly args?: readonly string[];
  readonly expect: ConfigExpectation | FlagExpectation;
  /** Default: nft only. */
  readonly backends?: readonly Backend[];
  /** Also run the long-running mode with --exit-on-config-error=true. */
  readonly longRunning?: boolean;
  /** Also run the keep-running mode (--exit-on-config-error=false) after a good config. */
  readonly keepRunning?: boolean;
  /**
   * Wall-clock bound of one agent run, in ms: generous (a loaded CI machine starts deno slowly),
   * it only tells a run that ends from one that blocks on its input or expands it without end
   * (those never end, and are killed after 60 s).
   */
  readonly maxMs?: number;
  /** Bound on the agent's stderr, in bytes (log floods are hostile too). */
  readonly maxStderrBytes?: number;
}

const both: readonly Backend[] = ["nft", "legacy"];

function rejects(file: string, line: number | undefined, key: string | undefined, reason: RegExp) {
  return { kind: "config", file, line, key, reason } as const;
}

function flagRejects(flag: string, reason: RegExp) {
  return { kind: "flag", flag, reason } as const;
}

/** One file holding `text`. */
function file(text: string | Uint8Array, name = defaultFile): Record<string, Entry> {
  return { [name]: text };
}

/** A nonMasqueradeCIDRs list; item i (0-based) is on line i + 2. */
function cidrList(...items: string[]): string {
  return `nonMasqueradeCIDRs:\n${items.map((item) => `  - ${item}\n`).join("")}`;
}

/** Deterministic bytes for the garbage cases (xorshift32). */
function garbage(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

const encoder = new TextEncoder();

function concatBytes(...parts: (string | Uint8Array)[]): Uint8Array {
  const arrays = parts.map((part) => typeof part === "string" ? encoder.encode(part) : part);
  const out = new Uint8Array(arrays.reduce((total, array) => total + array.length, 0));
  let offset = 0;
  for (const array of arrays) {
    out.set(array, offset);
    offset += array.length;
  }
  return out;
}

/** `size` bytes of a syntactically fine YAML list (so only the size cap can reject it). */
function bigList(size: number): Uint8Array {
  const head = "nonMasqueradeCIDRs:\n";
  const item = "  - 10.0.0.0/8\n";
  const count = Math.ceil((size - head.length) / item.length);
  return encoder.encode(head + item.repeat(count)).subarray(0, size);
}

/** Nested anchors: each level aliases the previous one `width` times. */
function laughs(levels: number, width: number): string {
  let text = "nonMasqueradeCIDRs:\n";
  text += `  - &l0 [${Array(width).fill("10.0.0.0/8").join(", ")}]\n`;
  for (let level = 1; level < levels; level++) {
    text += `  - &l${level} [${Array(width).fill(`*l${level - 1}`).join(", ")}]\n`;
  }
  return text;
}

const chain29 = "A".repeat(29);

/** Exported for tests/config/fast_parse_test.ts, which runs every config text through both parses. */
export const cases: readonly HostileCase[] = [
  // --- invalid YAML and JSON -------------------------------------------------------------
  {
    name: "invalid YAML: unterminated flow sequence",
    entries: file("nonMasqueradeCIDRs: [10.0.0.0/8, 192.168.0.0/16\nmasqLinkLocal: true\n"),
    expect: rejects(defaultFile, 2, undefined, /not valid YAML or JSON: Flow sequence/),
    backends: both,
    longRunning: true,
    keepRunning: true,
  },
  {
    name: "invalid YAML: tab indentation",
    entries: file("nonMasqueradeCIDRs:\n\t- 10.0.0.0/8\n"),
    expect: rejects(defaultFile, 2, undefined, /not valid YAML or JSON/),
  },
  {
    name: "invalid YAML: a list item dedented under a mapping",
    entries: file("nonMasqueradeCIDRs:\n    - 10.0.0.0/8\n  - 192.168.0.0/16\n"),
    expect: rejects(defaultFile, 3, undefined, /not valid YAML or JSON/),
  },
  {
    name: "invalid JSON: missing closing brace",
    entries: file('{"nonMasqueradeCIDRs": ["10.0.0.0/8"]\n'),
    expect: rejects(defaultFile, 2, undefined, /not valid YAML or JSON: Flow map must end/),
  },
  {
    name: "invalid JSON: unterminated string",
    entries: file('{"nonMasqueradeCIDRs": ["10.0.0.0/8]}\n'),
    expect: rejects(defaultFile, 2, undefined, /not valid YAML or JSON: Missing closing/),
  },
  {
    name: "a second YAML document smuggling another config",
    entries: file(
      "nonMasqueradeCIDRs: [10.0.0.0/8]\n---\nnonMasqueradeCIDRs: [0.0.0.0/0]\n",
    ),
    expect: rejects(defaultFile, 2, undefined, /multiple documents/),
  },
  {
    name: "alias to an anchor that does not exist (read as null it would drop the list)",
    entries: file("nonMasqueradeCIDRs: *nowhere\n"),
    expect: rejects(defaultFile, 1, undefined, /alias \*nowhere refers to no anchor/),
    backends: both,
    longRunning: true,
  },
  {
    name: "alias to an anchor defined after it",
    entries: file(`${cidrList("*later")}masqLinkLocal: &later true\n`),
    expect: rejects(defaultFile, 2, undefined, /alias \*later refers to no anchor/),
  },
  {
    name: "nesting 5000 deep (parser stack)",
    entries: file(`nonMasqueradeCIDRs: ${"[".repeat(5_000)}${"]".repeat(5_000)}\n`),
    expect: rejects(defaultFile, undefined, undefined, /nested too deeply/),
    keepRunning: true,
    maxMs: 30_000,
  },
  // --- wrong types -----------------------------------------------------------------------
  {
    name: "wrong type: nonMasqueradeCIDRs is a string",
    entries: file("nonMasqueradeCIDRs: 10.0.0.0/8\n"),
    expect: rejects(defaultFile, 1, "nonMasqueradeCIDRs", /must be a list of CIDR strings/),
  },
  {
    name: "wrong type: nonMasqueradeCIDRs is a mapping",
    entries: file('{"nonMasqueradeCIDRs": {"cidr": "10.0.0.0/8"}}'),
    expect: rejects(defaultFile, 1, "nonMasqueradeCIDRs", /must be a list of CIDR strings/),
  },
  {
    name: "wrong type: masqLinkLocal is a quoted string",
    entries: file('masqLinkLocal: "true"\n'),
    expect: rejects(defaultFile, 1, "masqLinkLocal", /must be true or false/),
  },
  {
    name: "wrong type: masqLinkLocalIPv6 is a number",
    entries: file("nonMasqueradeCIDRs: []\nmasqLinkLocalIPv6: 1\n"),
    expect: rejects(defaultFile, 2, "masqLinkLocalIPv6", /must be true or false/),
  },
  {
    name: "wrong type: a list item is a number",
    entries: file(cidrList("10.0.0.0/8", "10")),
    expect: rejects(defaultFile, 3, "nonMasqueradeCIDRs[1]", /must be a CIDR string/),
  },
  {
    name: "wrong type: a list item is a nested list",
    entries: file(cidrList("[10.0.0.0/8]")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /must be a CIDR string, got a list/),
  },
  {
    name: "wrong type: a list item is a mapping",
    entries: file(cidrList("{cidr: 10.0.0.0/8}")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /got a mapping/),
  },
  {
    name: "wrong type: a list item is a YAML 1.1 boolean",
    entries: file(cidrList("yes")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /got boolean true/),
  },
  {
    name: "wrong type: the top level is a list",
    entries: file("- 10.0.0.0/8\n"),
    expect: rejects(defaultFile, 1, undefined, /top level must be a mapping/),
    backends: both,
  },
  {
    name: "wrong type: the top level is a JSON array",
    entries: file('["10.0.0.0/8"]'),
    expect: rejects(defaultFile, 1, undefined, /top level must be a mapping/),
  },
  {
    name: "wrong type: resyncInterval is a bare number",
    entries: file("resyncInterval: 60\n"),
    expect: rejects(defaultFile, 1, "resyncInterval", /must be a Go duration string/),
  },
  {
    name: "wrong type: cidrLimit is a string",
    entries: file('cidrLimit: "10"\n'),
    expect: rejects(defaultFile, 1, "cidrLimit", /must be a whole number/),
  },
  {
    name: "wrong type: cidrLimit is a fraction",
    entries: file("cidrLimit: 1.5\n"),
    expect: rejects(defaultFile, 1, "cidrLimit", /must be a whole number/),
  },
  // --- unknown and misspelled keys -------------------------------------------------------
  {
    name: "misspelled key nonMasqueradeCIDR (a typo would masquerade the cluster)",
    entries: file("nonMasqueradeCIDR:\n  - 10.0.0.0/8\n"),
    expect: rejects(defaultFile, 1, "nonMasqueradeCIDR", /unknown key; did you mean/),
    backends: both,
  },
  {
    name: "unknown key in kebab case",
    entries: file("non-masquerade-cidrs: [10.0.0.0/8]\n"),
    expect: rejects(defaultFile, 1, "non-masquerade-cidrs", /unknown key/),
  },
  {
    name: "unknown key next to good ones",
    entries: file(`${cidrList("10.0.0.0/8")}masqLinkLocalIPv4: true\n`),
    expect: rejects(defaultFile, 3, "masqLinkLocalIPv4", /unknown key/),
  },
  {
    name: "YAML merge key smuggling a mapping",
    entries: file("<<: {nonMasqueradeCIDRs: [0.0.0.0/0]}\n"),
    expect: rejects(defaultFile, 1, "<<", /unknown key/),
  },
  // --- empty and null list items ---------------------------------------------------------
  {
    name: "empty list item",
    entries: file("nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  -\n  - 192.168.0.0/16\n"),
    expect: rejects(defaultFile, 3, "nonMasqueradeCIDRs[1]", /empty list item/),
  },
  {
    name: "null list item",
    entries: file(cidrList("~")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /empty list item/),
  },
  {
    name: "empty string list item",
    entries: file(cidrList('""')),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /empty list item/),
  },
  {
    name: "JSON null list item",
    entries: file('{"nonMasqueradeCIDRs": ["10.0.0.0/8", null]}'),
    expect: rejects(defaultFile, 1, "nonMasqueradeCIDRs[1]", /empty list item/),
  },
  // --- leading zeros, out-of-range values, misalignment ----------------------------------
  {
    name: "leading zero in the first octet (octal elsewhere)",
    entries: file(cidrList("010.0.0.0/8")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /leading zero/),
  },
  {
    name: "leading zero in the last octet",
    entries: file(cidrList("10.0.0.01/32")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /leading zero/),
  },
  {
    name: "octet above 255",
    entries: file(cidrList("256.0.0.0/8")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /greater than 255/),
  },
  {
    name: "five octets",
    entries: file(cidrList("1.2.3.4.5/32")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /has 5 parts/),
  },
  {
    name: "IPv4 prefix /33",
    entries: file(cidrList("10.0.0.0/33")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /too large for IPv4/),
  },
  {
    name: "IPv6 prefix /129",
    entries: file(cidrList("fd00::/129")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /too large for IPv6/),
  },
  {
    name: "negative prefix",
    entries: file(cidrList("10.0.0.0/-1")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /must be decimal digits/),
  },
  {
    name: "prefix with 20 digits",
    entries: file(cidrList("10.0.0.0/99999999999999999999")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /too large for IPv4/),
  },
  {
    name: "IPv6 group with five hex digits",
    entries: file(cidrList("fd00::10000/128")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /more than 4 hex digits/),
  },
  {
    name: "misaligned IPv4 prefix",
    entries: file(cidrList("10.0.0.1/8")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /not aligned.*10\.0\.0\.0\/8/),
    backends: both,
  },
  {
    name: "misaligned IPv6 prefix",
    entries: file(cidrList("fd00::1/8")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /not aligned/),
  },
  // --- zones, IPv4-mapped IPv6, IPv6 without the flag ------------------------------------
  {
    name: "zone after the prefix (fe80::/10%eth0)",
    entries: file(cidrList("fe80::/10%eth0")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /must be decimal digits/),
    backends: both,
  },
  {
    name: "zone before the prefix (fe80::%eth0/10)",
    entries: file(cidrList("fe80::%eth0/10")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /zones are not allowed/),
  },
  {
    name: "IPv4-mapped IPv6 in dotted form",
    entries: file(cidrList("::ffff:10.0.0.0/104")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /IPv4-mapped.*10\.0\.0\.0\/8/),
    backends: both,
  },
  {
    name: "IPv4-mapped IPv6 in hex form",
    entries: file(cidrList("::ffff:0:0/96")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /IPv4-mapped/),
  },
  {
    name: "IPv6 CIDR without --enable-ipv6",
    entries: file(cidrList("10.0.0.0/8", "fd00::/8")),
    args: [],
    expect: rejects(defaultFile, 3, "nonMasqueradeCIDRs[1]", /IPv6 is not enabled.*--enable-ipv6/),
    longRunning: true,
  },
  // --- cidrLimit -------------------------------------------------------------------------
  {
    name: "more CIDRs than cidrLimit",
    entries: file(`cidrLimit: 2\n${cidrList("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")}`),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs", /has 3 CIDRs but cidrLimit is 2/),
    backends: both,
    longRunning: true,
  },
  {
    name: "more CIDRs than the default cidrLimit",
    entries: file(cidrList(...Array.from({ length: 65 }, (_, i) => `10.${i}.0.0/16`))),
    expect: rejects(defaultFile, 1, "nonMasqueradeCIDRs", /has 65 CIDRs but the default/),
  },
  {
    name: "negative cidrLimit",
    entries: file("cidrLimit: -1\n"),
    expect: rejects(defaultFile, 1, "cidrLimit", /between 1 and/),
  },
  {
    name: "zero cidrLimit",
    entries: file("cidrLimit: 0\n"),
    expect: rejects(defaultFile, 1, "cidrLimit", /between 1 and/),
  },
  {
    name: "huge cidrLimit",
    entries: file("cidrLimit: 99999999999999999999\n"),
    expect: rejects(defaultFile, 1, "cidrLimit", /between 1 and/),
  },
  {
    name: "infinite cidrLimit",
    entries: file("cidrLimit: .inf\n"),
    expect: rejects(defaultFile, 1, "cidrLimit", /must be a whole number/),
  },
  // --- resyncInterval --------------------------------------------------------------------
  {
    name: "resyncInterval zero",
    entries: file('resyncInterval: "0"\n'),
    expect: rejects(defaultFile, 1, "resyncInterval", /between 1s and 24h/),
    backends: both,
  },
  {
    name: "resyncInterval 0s",
    entries: file("resyncInterval: 0s\n"),
    expect: rejects(defaultFile, 1, "resyncInterval", /between 1s and 24h/),
  },
  {
    name: "negative resyncInterval",
    entries: file("resyncInterval: -5s\n"),
    expect: rejects(defaultFile, 1, "resyncInterval", /between 1s and 24h/),
  },
  {
    name: "resyncInterval below a second",
    entries: file("resyncInterval: 500ms\n"),
    expect: rejects(defaultFile, 1, "resyncInterval", /between 1s and 24h/),
  },
  {
    name: "resyncInterval above a day",
    entries: file("resyncInterval: 25h\n"),
    expect: rejects(defaultFile, 1, "resyncInterval", /between 1s and 24h/),
  },
  {
    name: "garbage resyncInterval",
    entries: file("resyncInterval: soon\n"),
    expect: rejects(defaultFile, 1, "resyncInterval", /invalid duration/),
  },
  {
    name: "resyncInterval with a shell command",
    entries: file('resyncInterval: "1s; rm -rf /"\n'),
    expect: rejects(defaultFile, 1, "resyncInterval", /unknown unit|invalid duration/),
  },
  {
    name: "resyncInterval beyond int64 nanoseconds",
    entries: file("resyncInterval: 99999999999999999999999h\n"),
    expect: rejects(defaultFile, 1, "resyncInterval", /invalid duration/),
  },
  // --- size, binary garbage, encodings ---------------------------------------------------
  {
    name: "a 10 MiB file (size cap)",
    entries: file(bigList(10 * 1024 * 1024)),
    expect: rejects(defaultFile, undefined, undefined, /larger than 1048576 bytes/),
    backends: both,
    longRunning: true,
    maxMs: 20_000,
  },
  {
    name: "one byte over the 1 MiB cap",
    entries: file(bigList(1024 * 1024 + 1)),
    expect: rejects(defaultFile, undefined, undefined, /larger than 1048576 bytes/),
    maxMs: 20_000,
  },
  {
    name: "binary garbage (not UTF-8)",
    entries: file(
      concatBytes("nonMasqueradeCIDRs:\n  - ", new Uint8Array([0xc3, 0x28]), garbage(4096, 7)),
    ),
    expect: rejects(defaultFile, undefined, undefined, /not valid UTF-8/),
  },
  {
    name: "valid UTF-8 with a NUL byte",
    entries: file("nonMasqueradeCIDRs:\n  - 10.0.0.0/8\u0000-A POSTROUTING -j ACCEPT\n"),
    expect: rejects(defaultFile, 2, undefined, /binary control characters/),
  },
  {
    name: "UTF-8 byte order mark",
    entries: file("\ufeffnonMasqueradeCIDRs: [10.0.0.0/8]\n"),
    expect: rejects(defaultFile, undefined, undefined, /byte order mark/),
    backends: both,
    longRunning: true,
  },
  {
    name: "128 KiB of bad items (bounded error output)",
    entries: file(`nonMasqueradeCIDRs:\n${"- x\n".repeat(32 * 1024)}`),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /invalid CIDR/),
    maxMs: 30_000,
    maxStderrBytes: 64 * 1024,
  },
  // --- duplicate keys --------------------------------------------------------------------
  {
    name: "duplicate key",
    entries: file("nonMasqueradeCIDRs: [10.0.0.0/8]\nnonMasqueradeCIDRs: [0.0.0.0/0]\n"),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs", /appears twice|unique/),
    backends: both,
  },
  {
    name: "duplicate key differing in case",
    entries: file("nonMasqueradeCIDRs: [10.0.0.0/8]\nnonmasqueradecidrs: [0.0.0.0/0]\n"),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs", /appears twice/),
  },
  {
    name: "duplicate key in JSON",
    entries: file('{"masqLinkLocal": false,\n "masqLinkLocal": true}'),
    expect: rejects(defaultFile, 2, "masqLinkLocal", /appears twice|unique/),
  },
  // --- anchors and aliases ---------------------------------------------------------------
  {
    name: "billion laughs over the alias cap",
    entries: file(laughs(10, 12)),
    // Aliases 97 to 108 are on line 11; the 101st is the first over the cap.
    expect: rejects(defaultFile, 11, undefined, /too many YAML aliases \(108, at most 100\)/),
    longRunning: true,
    maxMs: 20_000,
    maxStderrBytes: 16 * 1024,
  },
  {
    name: "billion laughs under the alias cap (never expanded)",
    entries: file(laughs(9, 9)),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /must be a CIDR string, got a list/),
    maxMs: 20_000,
    maxStderrBytes: 16 * 1024,
  },
  // --- injection attempts ----------------------------------------------------------------
  {
    name: "injection: 10.0.0.0/8 -j ACCEPT",
    entries: file(cidrList("10.0.0.0/8 -j ACCEPT")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /whitespace is not allowed/),
    backends: both,
  },
  {
    name: "injection: newline then -A POSTROUTING -j ACCEPT (JSON escape)",
    entries: file('{"nonMasqueradeCIDRs": ["10.0.0.0/8\\n-A POSTROUTING -j ACCEPT"]}'),
    expect: rejects(defaultFile, 1, "nonMasqueradeCIDRs[0]", /whitespace is not allowed/),
    backends: both,
    longRunning: true,
    keepRunning: true,
  },
  {
    name: "injection: newline in a YAML double-quoted scalar",
    entries: file(cidrList('"192.168.0.0/16\\n-A POSTROUTING -j ACCEPT"')),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /whitespace is not allowed/),
  },
  {
    name: "injection: a literal block scalar with rule lines",
    entries: file(
      "nonMasqueradeCIDRs:\n  - |\n    10.0.0.0/8\n    -A POSTROUTING -j ACCEPT\n    COMMIT\n",
    ),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /whitespace is not allowed/),
  },
  {
    name: "injection: COMMIT as a CIDR",
    entries: file(cidrList("10.0.0.0/8", "COMMIT")),
    expect: rejects(defaultFile, 3, "nonMasqueradeCIDRs[1]", /invalid CIDR/),
    backends: both,
    keepRunning: true,
  },
  {
    name: "injection: COMMIT then a new *filter table",
    entries: file(
      '{"nonMasqueradeCIDRs": ["10.0.0.0/8\\nCOMMIT\\n*filter\\n-A INPUT -j DROP\\nCOMMIT"]}',
    ),
    expect: rejects(defaultFile, 1, "nonMasqueradeCIDRs[0]", /whitespace is not allowed/),
  },
  {
    name: "injection: a rule line as the item",
    entries: file(cidrList("-A POSTROUTING -j ACCEPT")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /whitespace is not allowed/),
  },
  {
    name: "injection: carriage return",
    entries: file('{"nonMasqueradeCIDRs": ["10.0.0.0/8\\r-A POSTROUTING -j ACCEPT"]}'),
    expect: rejects(defaultFile, 1, "nonMasqueradeCIDRs[0]", /whitespace is not allowed/),
  },
  {
    name: "injection: a double quote closing the comment",
    entries: file(cidrList(`'10.0.0.0/8" -j ACCEPT "'`)),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /whitespace is not allowed/),
  },
  {
    name: "injection: a bare double quote",
    entries: file(cidrList(`'10.0.0.0/8"'`)),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /must be decimal digits/),
  },
  {
    name: "injection: # inside a quoted value",
    entries: file(cidrList('"10.0.0.0/8 # -j ACCEPT"')),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /whitespace is not allowed/),
  },
  {
    name: "injection: # glued to a plain value",
    entries: file(cidrList("10.0.0.0/8#-j")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /must be decimal digits/),
  },
  {
    name: "injection: NUL as a JSON escape",
    entries: file('{"nonMasqueradeCIDRs": ["10.0.0.0/8\\u0000 -j ACCEPT"]}'),
    expect: rejects(defaultFile, 1, "nonMasqueradeCIDRs[0]", /whitespace is not allowed/),
  },
  {
    name: "injection: Unicode line separator",
    entries: file(cidrList('"10.0.0.0/8\u2028-A POSTROUTING -j ACCEPT"')),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /whitespace is not allowed/),
  },
  {
    name: "injection: comma-separated CIDRs (iptables would expand them)",
    entries: file(cidrList("10.0.0.0/8,0.0.0.0/0")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /more than one "\/"/),
  },
  {
    name: "injection: a host name (iptables would resolve it)",
    entries: file(cidrList("metadata.google.internal/32")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /has 3 parts|not a decimal/),
  },
  {
    name: "injection: a dotted netmask",
    entries: file(cidrList("10.0.0.0/255.0.0.0")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /must be decimal digits/),
  },
  {
    name: "injection: a negation",
    entries: file(cidrList("'!10.0.0.0/8'")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /not a decimal number/),
  },
  {
    name: "injection: fullwidth digits",
    entries: file(cidrList("１０.0.0.0/8")),
    expect: rejects(defaultFile, 2, "nonMasqueradeCIDRs[0]", /not a decimal number/),
  },
  // --- masqueradeCIDRs and nonMasqueradeSrcCIDRs (issue 12) ------------------------------
  {
    name: "masqueradeCIDRs: misaligned",
    entries: file("nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqueradeCIDRs:\n  - 10.1.0.1/16\n"),
    expect: rejects(defaultFile, 3, "masqueradeCIDRs[0]", /not aligned/),
    backends: both,
    longRunning: true,
  },
  {
    name: "nonMasqueradeSrcCIDRs: injection of a rule after a newline",
    entries: file('{"nonMasqueradeSrcCIDRs": ["10.244.0.0/16\\n-A POSTROUTING -j ACCEPT"]}'),
    expect: rejects(defaultFile, 1, "nonMasqueradeSrcCIDRs[0]", /whitespace is not allowed/),
    backends: both,
    keepRunning: true,
  },
  {
    name: "masqueradeCIDRs: the same CIDR as a nonMasqueradeCIDRs entry in another file",
    entries: {
      "ip-masq-a": "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - 10.1.0.0/16\n",
      "ip-masq-b": "# both at once\nmasqueradeCIDRs:\n  - 10.1.0.0/16\n",
    },
    expect: rejects(
      "ip-masq-b",
      3,
      "masqueradeCIDRs",
      /10\.1\.0\.0\/16 is also listed in nonMasqueradeCIDRs at \/etc\/config\/ip-masq-a:3:5/,
    ),
    backends: both,
    longRunning: true,
    keepRunning: true,
  },
  {
    name: "masqueradeCIDRs: IPv6 without --enable-ipv6",
    entries: file("masqueradeCIDRs: [fd00:1::/32]\n"),
    args: [],
    expect: rejects(defaultFile, 1, "masqueradeCIDRs[0]", /add the --enable-ipv6 flag/),
  },
  {
    name: "nonMasqueradeSrcCIDRs: a string instead of a list",
    entries: file("nonMasqueradeSrcCIDRs: 10.244.0.0/16\n"),
    expect: rejects(defaultFile, 1, "nonMasqueradeSrcCIDRs", /must be a list of CIDR strings/),
  },
  {
    name: "masqueradeCIDRs: a negation (iptables would invert the match)",
    entries: file("masqueradeCIDRs: ['!10.1.0.0/16']\n"),
    expect: rejects(defaultFile, 1, "masqueradeCIDRs[0]", /not a decimal number/),
  },
  {
    name: "nonMasqueradeSrcCIDRs: a host name",
    entries: file("nonMasqueradeSrcCIDRs: [pods.internal/16]\n"),
    expect: rejects(defaultFile, 1, "nonMasqueradeSrcCIDRs[0]", /has 2 parts|not a decimal/),
  },
  {
    name: "all three lists together over cidrLimit",
    entries: file(
      "cidrLimit: 2\nnonMasqueradeCIDRs: [10.0.0.0/8]\nmasqueradeCIDRs: [10.1.0.0/16]\n" +
        "nonMasqueradeSrcCIDRs: [10.244.0.0/16]\n",
    ),
    expect: rejects(
      defaultFile,
      2,
      "nonMasqueradeCIDRs",
      /has 3 CIDRs in nonMasqueradeCIDRs \(1\)/,
    ),
  },
  // --- --masq-chain and other flags (usage errors: nothing is touched) --------------------
  {
    name: "--masq-chain with a space",
    args: ["--enable-ipv6", "--masq-chain=MY CHAIN"],
    expect: flagRejects("masq-chain", /must not contain " "/),
    backends: both,
  },
  {
    name: "--masq-chain with a double quote",
    args: ["--enable-ipv6", '--masq-chain=MY"CHAIN'],
    expect: flagRejects("masq-chain", /must not contain/),
  },
  {
    name: "--masq-chain with a single quote",
    args: ["--enable-ipv6", "--masq-chain=MY'CHAIN"],
    expect: flagRejects("masq-chain", /must not contain/),
  },
  {
    name: "--masq-chain with #",
    args: ["--enable-ipv6", "--masq-chain=MY#CHAIN"],
    expect: flagRejects("masq-chain", /must not contain "#"/),
  },
  {
    name: "--masq-chain with a newline and a rule",
    args: ["--enable-ipv6", "--masq-chain=X\n-A POSTROUTING -j ACCEPT"],
    expect: flagRejects("masq-chain", /must not contain "\\n"/),
  },
  {
    name: "--masq-chain with a leading -",
    args: ["--enable-ipv6", "--masq-chain=-A"],
    expect: flagRejects("masq-chain", /must not start with "-"/),
  },
  {
    name: "--masq-chain taking -j as its separate value",
    args: ["--enable-ipv6", "--masq-chain", "-j"],
    expect: flagRejects("masq-chain", /must not start with "-"/),
  },
  {
    name: "--masq-chain over 28 characters",
    args: ["--enable-ipv6", `--masq-chain=${chain29}`],
    expect: flagRejects("masq-chain", /at most 28 characters/),
    backends: both,
  },
  {
    name: "--masq-chain POSTROUTING",
    args: ["--enable-ipv6", "--masq-chain=POSTROUTING"],
    expect: flagRejects("masq-chain", /built-in/),
    backends: both,
  },
  {
    name: "--masq-chain masquerade (built-in target in lower case)",
    args: ["--enable-ipv6", "--masq-chain=masquerade"],
    expect: flagRejects("masq-chain", /built-in/),
  },
  {
    name: "--masq-chain NETMAP (a target extension: the jump could never be read back)",
    args: ["--enable-ipv6", "--masq-chain=NETMAP"],
    expect: flagRejects("masq-chain", /built-in/),
    backends: both,
  },
  {
    name: "--masq-chain standard (crashes iptables-restore)",
    args: ["--enable-ipv6", "--masq-chain=standard"],
    expect: flagRejects("masq-chain", /built-in/),
  },
  {
    name: "--to-ports with a rule fragment",
    args: ["--enable-ipv6", "--to-ports=1024 -j ACCEPT"],
    expect: flagRejects("to-ports", /not a port or port range/),
  },
  {
    name: "--postrouting-jump with an unknown position",
    args: ["--enable-ipv6", "--postrouting-jump=first"],
    expect: flagRejects("postrouting-jump", /must be "append" or "insert"/),
    backends: both,
  },
  {
    name: "--explain with a CIDR instead of an address",
    args: ["--enable-ipv6", "--explain=10.0.0.0/8"],
    expect: flagRejects("explain", /is a CIDR: give one address/),
  },
  {
    name: "--explain with a rule fragment",
    args: ["--enable-ipv6", "--explain=10.0.0.1 -j ACCEPT"],
    expect: flagRejects("explain", /address 1: /),
  },
  {
    name: "--explain-source with a zone",
    args: ["--enable-ipv6", "--explain=10.0.0.1", "--explain-source=fe80::1%eth0"],
    expect: flagRejects("explain-source", /zones are not allowed/),
  },
  // --- filesystem oddities ---------------------------------------------------------------
  {
    name: "a directory named ip-masq-x",
    entries: { [defaultFile]: goodConfig, "ip-masq-x": { directory: true } },
    expect: rejects("ip-masq-x", undefined, undefined, /is a directory/),
    backends: both,
    longRunning: true,
    keepRunning: true,
  },
  {
    name: "a symlink loop named ip-masq-loop",
    entries: { "ip-masq-loop": { symlink: "ip-masq-loop" } },
    expect: rejects("ip-masq-loop", undefined, undefined, /symbolic link loop/),
    backends: both,
  },
  {
    name: "a two-link symlink loop",
    entries: { "ip-masq-a": { symlink: "ip-masq-b" }, "ip-masq-b": { symlink: "ip-masq-a" } },
    expect: rejects("ip-masq-a", undefined, undefined, /symbolic link loop/),
  },
  {
    name: "a dangling symlink",
    entries: { [defaultFile]: goodConfig, "ip-masq-gone": { symlink: "..data/ip-masq-gone" } },
    expect: rejects("ip-masq-gone", undefined, undefined, /dangling symbolic link/),
  },
  {
    name: "a FIFO (must not block the agent)",
    entries: { "ip-masq-fifo": { fifo: true } },
    expect: rejects("ip-masq-fifo", undefined, undefined, /not a regular file/),
    maxMs: 20_000,
  },
  {
    // Refused before any read: it resolves outside the config directory (issue 15).
    name: "a symlink to /dev/zero (endless input)",
    entries: { "ip-masq-zero": { symlink: "/dev/zero" } },
    expect: rejects("ip-masq-zero", undefined, undefined, /outside the config directory; not read/),
    maxMs: 20_000,
  },
  {
    name: "one bad file among good ones rejects the whole config",
    entries: {
      "ip-masq-a-good": goodConfig,
      "ip-masq-b-bad": cidrList("0.0.0.0/0 -j ACCEPT"),
      "ip-masq-c-good": cidrList("172.16.0.0/12"),
    },
    expect: rejects("ip-masq-b-bad", 2, "nonMasqueradeCIDRs[0]", /whitespace is not allowed/),
  },
];

// ---------------------------------------------------------------------------
// The lab: one namespace per backend holding the known-good state
// ---------------------------------------------------------------------------

const saveSeparator = "=== ip6tables-save ===";

/** Every table of both families; `#` lines dropped and counters zeroed. */
function normalizeSave(save: string): string {
  return save.split("\n")
    .filter((line) => !line.startsWith("#"))
    .map((line) => line.replace(/\[\d+:\d+\]/g, "[0:0]"))
    .join("\n");
}

class Lab {
  #ns?: NetNs;
  #baseline?: string;
  #caseCount = 0;

  private constructor(
    readonly backend: Backend,
    readonly root: string,
    readonly bin: string,
    readonly goodDir: string,
  ) {}

  static async create(backend: Backend): Promise<Lab> {
    const root = await Deno.makeTempDir({ prefix: `imt-hostile-${backend}-` });
    const bin = await backendBin(backend, root);
    const goodDir = `${root}/good`;
    await Deno.mkdir(goodDir);
    await Deno.writeTextFile(`${goodDir}/${defaultFile}`, goodConfig);
    const lab = new Lab(backend, root, bin, goodDir);
    try {
      await lab.install();
    } catch (error) {
      await lab.dispose();
      throw error;
    }
    return lab;
  }

  get ns(): NetNs {
    if (!this.#ns) throw new Error("the lab has no namespace");
    return this.#ns;
  }

  get baseline(): string {
    if (this.#baseline === undefined) throw new Error("the lab has no baseline");
    return this.#baseline;
  }

  /** A fresh namespace with the foreign rules and the agent's rules from the good config. */
  async install(): Promise<void> {
    await this.#ns?.dispose();
    this.#ns = undefined;
    const ns = await NetNs.create(`hi${this.backend[0]}`);
    this.#ns = ns;
    await restoreNat(ns, this.bin, foreignRules.ipv4, "ipv4");
    await restoreNat(ns, this.bin, foreignRules.ipv6, "ipv6");
    const good = await this.agent(this.goodDir, [...baselineArgs, "--once"]);
    assert.equal(good.code, 0, `the good config must apply:\n${good.stderr}`);
    const baseline = await this.snapshot();
    const parts = [
      "-j IP-MASQ-AGENT",
      "-d fd00::/8",
      "FOREIGN-NAT",
      "FOREIGN-FILTER",
      saveSeparator,
    ];
    for (const part of parts) {
      assert.ok(baseline.includes(part), `baseline lacks ${part}:\n${baseline}`);
    }
    this.#baseline = baseline;
  }

  /** The known-good state, reinstalled if an earlier (failed) case left anything else. */
  async knownGood(): Promise<string> {
    if (await this.snapshot() !== this.baseline) await this.install();
    return this.baseline;
  }

  /** `iptables-save` and `ip6tables-save` of every table, in one trip into the namespace. */
  async snapshot(): Promise<string> {
    const script = `"$1/iptables-save" && echo "${saveSeparator}" && "$1/ip6tables-save"`;
    const saved = await this.ns.exec(["sh", "-c", script, "sh", this.bin], { check: true });
    return normalizeSave(saved.stdout);
  }

  agent(configDir: string, args: readonly string[], timeoutMs = 15_000): Promise<AgentResult> {
    return AgentProcess.run({ ns: this.ns, binDir: this.bin, configDir, args }, timeoutMs);
  }

  async caseDir(entries: Readonly<Record<string, Entry>>): Promise<string> {
    const dir = `${this.root}/case-${this.#caseCount++}`;
    await Deno.mkdir(dir);
    await writeEntries(dir, entries);
    return dir;
  }

  async dispose(): Promise<void> {
    await this.#ns?.dispose();
    await Deno.remove(this.root, { recursive: true }).catch(() => {});
  }
}

/** Files appear whole: written under a hidden name (ignored by the agent), then renamed. */
async function writeEntries(dir: string, entries: Readonly<Record<string, Entry>>) {
  for (const [name, entry] of Object.entries(entries)) {
    const path = `${dir}/${name}`;
    if (typeof entry === "string" || entry instanceof Uint8Array) {
      const temporary = `${dir}/.tmp-${name}`;
      await Deno.writeFile(temporary, typeof entry === "string" ? encoder.encode(entry) : entry);
      await Deno.rename(temporary, path);
    } else if ("symlink" in entry) {
      await Deno.symlink(entry.symlink, path);
    } else if ("directory" in entry) {
      await Deno.mkdir(path);
    } else {
      const made = await new Deno.Command("mkfifo", { args: [path] }).output();
      assert.ok(made.success, `mkfifo ${path}`);
    }
  }
}

// ---------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** `/etc/config/FILE[:LINE[:COL]]: [KEY:] ` as the message prints it. */
function problemPrefix(expect: ConfigExpectation): RegExp {
  const path = escapeRegExp(`${mountedConfigDir}/${expect.file}`);
  const location = expect.line === undefined
    ? String.raw`(?::\d+){0,2}`
    : `:${expect.line}(?::\\d+)?`;
  const key = expect.key === undefined ? "" : ` ${escapeRegExp(expect.key)}:`;
  return new RegExp(`${path}${location}:${key} `);
}

function describeRun(label: string, result: AgentResult): string {
  const stderr = result.stderr.length > 4000
    ? `${result.stderr.slice(0, 4000)}\n... (${result.stderr.length} bytes)`
    : result.stderr;
  return `${label}: exit ${result.code}; stderr:\n${stderr}`;
}

function assertRejected(hostile: HostileCase, label: string, result: AgentResult): void {
  const context = describeRun(label, result);
  assert.equal(result.code, 2, context);
  assert.doesNotMatch(result.stderr, /rules written|drift repaired/, context);
  const expect = hostile.expect;
  if (expect.kind === "flag") {
    const line = result.stderr.split("\n").find((text) =>
      text.includes(`for flag -${expect.flag}: `)
    );
    assert.ok(line, `no message names the flag -${expect.flag}\n${context}`);
    assert.match(line, /^invalid value /, context);
    assert.match(line.slice(line.indexOf(`for flag -${expect.flag}: `)), expect.reason, context);
    assert.match(result.stderr, /^Usage of ip-masq-agent:$/m, context);
    assert.match(result.stderr, /^ {2}-masq-chain string$/m, context);
    assert.doesNotMatch(result.stderr, /starting ip-masq-agent/, `${context}\n(flags come first)`);
    return;
  }
  assertProblemNamed(expect, result.stderr, context);
  assert.match(result.stderr, /the live rules were left unchanged/, context);
}

/** Some line names the file (and line and key) and gives the expected reason after that. */
function assertProblemNamed(expect: ConfigExpectation, stderr: string, context: string) {
  const prefix = problemPrefix(expect);
  for (const line of stderr.split("\n")) {
    const match = prefix.exec(line);
    if (match && expect.reason.test(line.slice(match.index + match[0].length))) return;
  }
  assert.fail(`no line matches ${prefix.source} followed by ${expect.reason}\n${context}`);
}

async function assertUnchanged(lab: Lab, before: string, context: string): Promise<void> {
  const after = await lab.snapshot();
  assert.equal(after, before, `the tables changed (${context})`);
}

// ---------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------

async function runCase(lab: Lab, hostile: HostileCase): Promise<void> {
  const before = await lab.knownGood();
  const dir = await lab.caseDir(hostile.entries ?? {});
  const args = hostile.args ?? baselineArgs;
  const modes: [string, string[]][] = [["--once", ["--once"]]];
  if (hostile.longRunning) {
    modes.push(["long-running, --exit-on-config-error=true", ["--exit-on-config-error=true"]]);
  }
  for (const [label, modeArgs] of modes) {
    const started = performance.now();
    const result = await lab.agent(dir, [...args, ...modeArgs]);
    const elapsed = performance.now() - started;
    assertRejected(hostile, `${lab.backend} ${label}`, result);
    await assertUnchanged(lab, before, `${lab.backend} ${label}`);
    if (hostile.maxMs !== undefined) {
      assert.ok(elapsed < hostile.maxMs, `${label} took ${elapsed.toFixed(0)} ms`);
    }
    if (hostile.maxStderrBytes !== undefined) {
      assert.ok(
        result.stderr.length <= hostile.maxStderrBytes,
        `${label}: ${result.stderr.length} bytes of stderr`,
      );
    }
  }
  if (hostile.keepRunning) await runKeepRunning(lab, hostile, before);
}

const returnComment = upstreamReturnComment;

/**
 * --exit-on-config-error=false after a good config: the agent logs the error,
 * keeps running, and keeps enforcing the last good rules (shown by repairing
 * drift on SIGHUP while the hostile config is still in place).
 */
async function runKeepRunning(lab: Lab, hostile: HostileCase, before: string): Promise<void> {
  const expect = hostile.expect;
  assert.equal(expect.kind, "config", "keep-running cases are config errors");
  if (expect.kind !== "config") return;
  const dir = await lab.caseDir({ [defaultFile]: goodConfig });
  const agent = await AgentProcess.start({
    ns: lab.ns,
    binDir: lab.bin,
    configDir: dir,
    args: [...(hostile.args ?? baselineArgs), "--exit-on-config-error=false"],
  });
  let exited = false;
  agent.wait(Infinity).then(() => exited = true);
  try {
    await agent.waitForLog(/effective configuration/);
    await writeEntries(dir, hostile.entries ?? {});
    const rejection = /configuration rejected; keeping the last good configuration applied.*/;
    await agent.waitForLog(rejection);
    const logged = rejection.exec(agent.stderr)?.[0] ?? "";
    assertProblemNamed(expect, logged, `keep-running log line:\n${agent.stderr}`);
    // No sleep to see whether it exits: the SIGHUP repair below needs the agent still running
    // (waitForLog fails at once if it exited), which is the condition itself.
    assert.ok(!exited, `the agent exited on a bad config:\n${agent.stderr}`);
    await assertUnchanged(lab, before, "keep-running after the bad config");

    // Drift while the bad config is still there: the last good rules come back.
    await lab.ns.exec([
      `${lab.bin}/iptables`,
      ...["-t", "nat", "-D", "IP-MASQ-AGENT", "-d", "192.168.0.0/16"],
      ...["-m", "comment", "--comment", returnComment, "-j", "RETURN"],
    ], { check: true });
    await agent.signalAgent("SIGHUP");
    await agent.waitForLog(/drift repaired \(ipv4\)/);
    assert.ok(!exited, `the agent exited:\n${agent.stderr}`);
    await assertUnchanged(lab, before, "keep-running after drift and SIGHUP");
    assert.equal(
      agent.stderr.match(/configuration rejected/g)?.length,
      1,
      `the unchanged error is logged once:\n${agent.stderr}`,
    );

    await agent.signalAgent("SIGTERM");
    const result = await agent.wait();
    assert.equal(result.code, 0, describeRun("keep-running SIGTERM", result));
    await assertUnchanged(lab, before, "keep-running after SIGTERM");
  } finally {
    agent.kill("SIGKILL");
    await agent.wait();
  }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

Deno.test("the hostile-input table has at least 45 cases with unique names", () => {
  assert.ok(cases.length >= 45, `${cases.length} cases`);
  assert.equal(new Set(cases.map((hostile) => hostile.name)).size, cases.length);
  assert.ok(cases.some((hostile) => hostile.keepRunning && hostile.backends?.includes("legacy")));
});

/**
 * Without root, the table's literal expectations against lib's own config path (the reader on
 * a temporary directory, then the parser and merge): each config case is rejected, naming the
 * file, line and key the case names. The root tests check the same through the real agent;
 * this one keeps the table honest where they are skipped, and fails fast where they would.
 * Cases with their own flags and symlinks to absolute paths (the host's files) are left to them.
 */
Deno.test("without root: every config case is rejected by the reader and parser as the table says", async () => {
  const flags = { ...defaultFlags, enableIpv6: true };
  let checked = 0;
  for (const hostile of cases) {
    const expect = hostile.expect;
    if (expect.kind !== "config" || hostile.args !== undefined) continue;
    const entries = Object.values(hostile.entries ?? {});
    if (
      entries.some((entry) =>
        typeof entry === "object" && "symlink" in entry &&
        entry.symlink.startsWith("/") && entry.symlink !== "/dev/zero"
      )
    ) continue;
    const dir = await Deno.makeTempDir({ prefix: "imt-hostile-" });
    try {
      await writeEntries(dir, hostile.entries ?? {});
      let error: unknown;
      try {
        loadConfig(await readConfigDir(dir), flags);
      } catch (caught) {
        error = caught;
      }
      assert.ok(error instanceof ConfigError, `${hostile.name}: not rejected (${error})`);
      // Paths as the agent names them: its config directory is mounted at /etc/config.
      const lines = error.problems.map(formatProblem).join("\n").replaceAll(dir, mountedConfigDir);
      assertProblemNamed(expect, lines, `${hostile.name}:\n${lines.slice(0, 2000)}`);
      checked++;
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  assert.ok(checked >= 35, `only ${checked} cases checked without root`);
});

const backendsUnderTest = ["nft", "legacy"] as const;
const selectedCases = backendsUnderTest.map((backend) => ({
  backend,
  cases: cases.filter((hostile) => (hostile.backends ?? ["nft"]).includes(backend)),
}));

// Every case is a step. The two backends run side by side (one namespace each, cases in order
// within it).
netnsTest(
  `hostile input is rejected and nothing is touched (${
    selectedCases.map(({ backend, cases }) => `${cases.length} cases on ${backend}`).join(", ")
  })`,
  async (t) => {
    const labs: Lab[] = [];
    try {
      // Settled, not all: one backend failing must not dispose the other's namespace mid-case.
      const outcomes = await Promise.allSettled(selectedCases.map(async ({ backend, cases }) => {
        const lab = await Lab.create(backend);
        labs.push(lab);
        for (const hostile of cases) {
          await t.step({
            name: `${backend}: ${hostile.name}`,
            fn: () => runCase(lab, hostile),
            // Steps of the two backends overlap, which Deno allows only without sanitizers.
            sanitizeOps: false,
            sanitizeResources: false,
            sanitizeExit: false,
          });
        }
      }));
      for (const outcome of outcomes) {
        if (outcome.status === "rejected") throw outcome.reason;
      }
    } finally {
      await Promise.all(labs.map((lab) => lab.dispose()));
    }
  },
);
