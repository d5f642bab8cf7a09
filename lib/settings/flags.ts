/**
 * Command-line flags in Go's `flag` syntax, messages and usage layout, so that the DaemonSet
 * manifests of the Go agents we replace (kubernetes-sigs and AKS ip-masq-agent-v2) keep working.
 *
 * @module
 */

import { type IpAddress, parseIpAddress } from "../net/address.ts";
import { resyncIntervalBoundsMs } from "./duration.ts";
import { goQuote, parseGoBool, parseGoInt } from "../base/go_strconv.ts";
import { defaultKubeProxyMasqueradeBit } from "./output.ts";
import { formatPortRange, parsePortRanges, type PortRange } from "./ports.ts";
import { err, ok, type Result } from "../base/result.ts";

/** Every flag's value, parsed and checked: what the rest of the agent reads. */
export interface AgentFlags {
  /** `--config-dir`: the directory of the mounted ConfigMap. */
  configDir: string;
  /** `--masq-chain`: our nat chain, a valid chain name. */
  masqChain: string;
  /** `--nomasq-all-reserved-ranges`: the defaults cover every reserved IPv4 range. */
  nomasqAllReservedRanges: boolean;
  /** `--enable-ipv6`: manage ip6tables too. */
  enableIpv6: boolean;
  /** `--resync-interval`, given in seconds on the command line. */
  resyncIntervalMs: number;
  /** `--random-fully`, as given: the iptables in use may still lack it. */
  randomFully: boolean;
  /** `--to-ports`; empty means any source port. */
  toPorts: readonly PortRange[];
  /** `--iptables-mode`: which backend to program, or detect it. */
  iptablesMode: "auto" | "nft" | "legacy";
  /** `--dataplane`: iptables rules (upstream's, the default) or our own nftables table. */
  dataplane: "iptables" | "nftables";
  /** `--postrouting-jump`: append our POSTROUTING jump (upstream), or keep it first. */
  postroutingJump: "append" | "insert";
  /** `--kube-proxy-masquerade-bit`: kube-proxy's `--iptables-masquerade-bit`, see the usage. */
  kubeProxyMasqueradeBit: number;
  /** `--explain`: the destinations to explain; empty unless that one-shot mode is asked for. */
  explain: readonly IpAddress[];
  /** `--explain-source`: the pod address `--explain` assumes as the source, if given. */
  explainSource: IpAddress | undefined;
  /** `--v`: 0 logs changes, 2 every rule and where each CIDR came from. */
  verbosity: number;
  /** `--log-format`: klog-like text lines or one JSON object per line. */
  logFormat: "text" | "json";
  /** `--exit-on-config-error`: exit 2 on a bad config, or keep the last good one. */
  exitOnConfigError: boolean;
  /** `--once`: reconcile once and exit. */
  once: boolean;
  /** `--dry-run`: print the rules for an empty table; runs nothing. */
  dryRun: boolean;
  /** `--check`: the readiness probe, exit 0 when in sync. */
  check: boolean;
  /** `--cleanup`: remove our chains and jumps, then exit. */
  cleanup: boolean;
  /** `--version`. */
  version: boolean;
  /** `--help` or `-h`. */
  help: boolean;
}

/** The command line as parsed: every flag's value, and which ones were given. */
export interface CommandLine {
  /** Every flag, given or at its default. */
  readonly flags: AgentFlags;
  /** The fields set by a flag given on the command line (a config key must agree with them). */
  readonly given: ReadonlySet<keyof AgentFlags>;
}

/** A successful parse: the command line, and the klog flags that were given and are ignored. */
export interface ParsedFlags extends CommandLine {
  /** Names of the ignored flags given, each once, in the order first given. */
  readonly ignored: readonly string[];
}

/** A flag's command-line value as Go's `flag` package reads it, before the row's `parse`. */
export type RawValue = boolean | number | string;

/** One row of {@link flagTable}: one flag, how Go reads it, and the AgentFlags field it sets. */
export interface FlagDef {
  /** Without dashes, as Go's flag package registers it. */
  readonly name: string;
  /** How Go reads the text: `flag.Bool`, `flag.Int` or `flag.String`; the default's type. */
  readonly kind: "bool" | "int" | "string";
  /** As written on the command line; what `usage` prints. */
  readonly default: RawValue;
  /** The AgentFlags field it sets; aliases share one. `null`: accepted, syntax-checked, dropped. */
  readonly field: keyof AgentFlags | null;
  /** The usage text. */
  readonly help: string;
  /** The field's value from the value `kind` reads, or why the input is invalid. */
  parse(raw: RawValue): Result<unknown, string>;
  /** The field's value back in command-line form, for the start-up log line and settings. */
  show(value: unknown): RawValue;
}

type FlagRow = Pick<FlagDef, "help"> & Partial<Pick<FlagDef, "parse" | "show">>;

/** A row whose `kind` follows its default and whose `parse` and `show` keep the value unless given. */
function flag(name: string, value: RawValue, field: FlagDef["field"], row: FlagRow): FlagDef {
  const kind = typeof value === "boolean" ? "bool" : typeof value === "number" ? "int" : "string";
  return { name, kind, default: value, field, parse: ok, show: (raw) => raw as RawValue, ...row };
}

function oneOf<T extends string>(...allowed: readonly T[]) {
  const names = allowed.map((value) => `"${value}"`);
  const reason = `must be ${names.slice(0, -1).join(", ")} or ${names[names.length - 1]}`;
  return (value: string): Result<T, string> =>
    (allowed as readonly string[]).includes(value) ? ok(value as T) : err(reason);
}

// The built-in chains and every target iptables ships: "-j NAME" loads the target, not our chain,
// so our jump could never be read back or deleted (iptables-save | iptables-restore of the whole
// nat table breaks too), and "standard" crashes iptables-restore.
const reservedChainNames: ReadonlySet<string> = new Set(
  ("PREROUTING INPUT FORWARD OUTPUT POSTROUTING ACCEPT DROP RETURN QUEUE NFQUEUE MASQUERADE SNAT " +
    "DNAT REJECT LOG MARK REDIRECT AUDIT CHECKSUM CLASSIFY CLUSTERIP CONNMARK CONNSECMARK CT " +
    "DNPT DSCP ECN HL HMARK IDLETIMER LED NETMAP NFLOG NOTRACK RATEEST SECMARK SET SNPT STANDARD " +
    "SYNPROXY TCPMSS TCPOPTSTRIP TEE TOS TPROXY TRACE TTL ULOG").split(" "),
);

/**
 * `name` if it can be our chain, else why not (in Go's `%q` quoting, as the flag messages): it must
 * survive iptables-save/-restore and not read as an option, a negation, a built-in chain or target.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkChainName } from "./flags.ts";
 *
 * assert.deepEqual(checkChainName("MY-MASQ"), { ok: true, value: "MY-MASQ" });
 * assert.equal(checkChainName("snat").ok, false); // a built-in target, in any case
 * ```
 */
export function checkChainName(name: string): Result<string, string> {
  if (name === "") return err("must not be empty");
  // Anything outside printable ASCII, and the characters that iptables-save/-restore treat as
  // quoting or comment syntax, would not survive a save/restore round trip.
  const bad = /[^\x21-\x7e]|["'\\#]/u.exec(name)?.[0];
  const allowed = "only printable ASCII without whitespace, quotes, backslash or # is allowed";
  if (bad !== undefined) return err(`must not contain ${goQuote(bad)} (${allowed})`);
  // iptables keeps chain names in a 29-byte buffer including the terminating NUL.
  if (name.length > 28) {
    return err(`must be at most 28 characters (iptables limit), got ${name.length}`);
  }
  // iptables would read a leading "-" as an option and a leading "!" as negation.
  if (name[0] === "-" || name[0] === "!") return err(`must not start with ${goQuote(name[0])}`);
  // iptables compares these case-sensitively, so "accept" would be a legal user chain; it is
  // rejected anyway because "-j accept" next to "-j ACCEPT" in a rule dump invites misreading.
  if (reservedChainNames.has(name.toUpperCase())) {
    return err("must not be a built-in iptables chain or target name");
  }
  return ok(name);
}

/**
 * klog's flags, which the Go agents register: accepted, checked for Go syntax, then dropped with
 * one warning. Defaults stay at the zero value: klog's own mean nothing here.
 */
const ignoredKlogFlags: readonly (readonly [name: string, zero: false | "", help: string])[] = [
  ["add_dir_header", false, "add the file directory to the log header"],
  ["alsologtostderr", false, "log to standard error as well as files"],
  ["log_backtrace_at", "", "when logging hits line file:N, emit a stack trace"],
  ["log_dir", "", "write log files in this directory"],
  ["log_file", "", "use this log file"],
  ["log_file_max_size", "", "maximum size in megabytes a log file can grow to"],
  ["logtostderr", false, "log to standard error instead of files"],
  ["one_output", false, "write logs only to their native severity level"],
  ["skip_headers", false, "avoid header prefixes in the log messages"],
  ["skip_log_headers", false, "avoid headers when opening log files"],
  ["stderrthreshold", "", "logs at or above this threshold go to stderr"],
  ["vmodule", "", "comma-separated list of pattern=N settings for file-filtered logging"],
];

/** Every flag: parsing, defaults, validation, usage and the start-up log line derive from it. */
export const flagTable: readonly FlagDef[] = [
  flag("config-dir", "/etc/config", "configDir", {
    help: "directory holding the agent's config file (the mounted ConfigMap)",
  }),
  flag("masq-chain", "IP-MASQ-AGENT", "masqChain", {
    help: "name of the nat chain that holds the masquerade rules",
    parse: checkChainName,
  }),
  flag("nomasq-all-reserved-ranges", false, "nomasqAllReservedRanges", {
    help: "do not masquerade traffic to any reserved IPv4 range, not only the RFC 1918 ones",
  }),
  flag("enable-ipv6", false, "enableIpv6", {
    help: "also manage IPv6 masquerade rules with ip6tables",
  }),
  flag("resync-interval", 60, "resyncIntervalMs", {
    help: "seconds between config reloads and rule resyncs",
    parse: (seconds: number) => {
      const { min, max } = resyncIntervalBoundsMs;
      if (seconds * 1000 >= min && seconds * 1000 <= max) return ok(seconds * 1000);
      return err(`must be between ${min / 1000} and ${max / 1000} seconds`);
    },
    show: (milliseconds: number) => milliseconds / 1000,
  }),
  flag("random-fully", true, "randomFully", {
    help: "add --random-fully to the MASQUERADE rule when iptables supports it",
  }),
  flag("to-ports", "", "toPorts", {
    help: "source ports for the MASQUERADE rule, a comma-separated list of N or N-M " +
      "(empty: any port)",
    parse: parsePortRanges,
    show: (ranges: readonly PortRange[]) => ranges.map(formatPortRange).join(","),
  }),
  flag("iptables-mode", "auto", "iptablesMode", {
    help: "iptables backend to program: auto (detect from the node, as kubelet marks it), " +
      "nft or legacy",
    parse: oneOf("auto", "nft", "legacy"),
  }),
  flag("dataplane", "iptables", "dataplane", {
    help: "how to program masquerade: iptables (a nat chain, upstream's rules) or nftables " +
      "(our own table with an interval set)",
    parse: oneOf("iptables", "nftables"),
  }),
  flag("postrouting-jump", "append", "postroutingJump", {
    help: "where our jump goes in nat POSTROUTING: append (after other tools' rules, as " +
      "upstream) or insert (kept first, so that no other tool's rule decides before ours)",
    parse: oneOf("append", "insert"),
  }),
  flag("kube-proxy-masquerade-bit", defaultKubeProxyMasqueradeBit, "kubeProxyMasqueradeBit", {
    help: "with --postrouting-jump=insert, traffic carrying this fwmark bit (kube-proxy's " +
      "--iptables-masquerade-bit) is left to kube-proxy's own masquerade rule, 0-31",
    parse: (bit: number) => (bit >= 0 && bit <= 31 ? ok(bit) : err("must be between 0 and 31")),
  }),
  flag("explain", "", "explain", {
    help: "print whether traffic to these destinations (comma-separated addresses) is " +
      "masqueraded and why, from the config and the live rules, then exit",
    parse: parseAddressList,
    show: (addresses: readonly IpAddress[]) => addresses.map((address) => address.text).join(","),
  }),
  flag("explain-source", "", "explainSource", {
    help: "the pod address --explain assumes as the source (default: any pod)",
    parse: (text: string) => (text === "" ? ok(undefined) : parseIpAddress(text)),
    show: (address: IpAddress | undefined) => address?.text ?? "",
  }),
  flag("v", 0, "verbosity", {
    help: "log level verbosity",
    parse: (n: number) => (n >= 0 ? ok(n) : err("must not be negative")),
  }),
  flag("log-format", "text", "logFormat", {
    help: "log output format: text or json",
    parse: oneOf("text", "json"),
  }),
  flag("exit-on-config-error", true, "exitOnConfigError", {
    help: "exit when the config is invalid; if false, keep running with the last good config",
  }),
  flag("once", false, "once", { help: "sync the rules once and exit" }),
  flag("dry-run", false, "dryRun", {
    help: "print the rules that would be applied instead of applying them, then exit",
  }),
  flag("check", false, "check", {
    help: "compare the live rules with the config (a readiness probe; needs root): exit 0 in " +
      "sync, 1 printing what differs, 2 on an invalid config; writes nothing",
  }),
  flag("cleanup", false, "cleanup", { help: "remove the agent's chain and rules, then exit" }),
  flag("version", false, "version", { help: "print the version and exit" }),
  flag("help", false, "help", { help: "show this help and exit" }),
  flag("h", false, "help", { help: "show this help and exit" }),
  ...ignoredKlogFlags.map(([name, zero, help]) =>
    flag(name, zero, null, { help: `${help} (accepted for compatibility, ignored)` })
  ),
];

const invalidValue = (text: string, name: string, reason: string) =>
  err(`invalid value ${goQuote(text)} for flag -${name}: ${reason}`);

/** Every flag at its default, as `parseFlags([])` returns them. */
export const defaultFlags: Readonly<AgentFlags> = (() => {
  const parsed = parseFlags([]);
  if (!parsed.ok) throw new Error(`a flag's default is invalid: ${parsed.error}`);
  return Object.freeze(parsed.value.flags);
})();

function positionalError(arg: string, bareBoolFlag: string | undefined): Result<never, string> {
  let message = `unexpected argument ${goQuote(arg)}: flags must start with - (positional ` +
    "arguments are not accepted)";
  // "-random-fully false" is the classic Go flag trap: the bool flag never takes the next
  // argument, so the word that was meant as its value ends up here.
  if (bareBoolFlag !== undefined && parseGoBool(arg).ok) {
    message += `; to set a boolean flag write -${bareBoolFlag}=${arg}`;
  }
  return err(message);
}

/**
 * Parses `argv` (without the program name) as Go's `flag` package does, then checks and types the
 * values. Syntax errors win over semantic ones; the error is what Go would print above the usage.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseFlags } from "./flags.ts";
 *
 * const parsed = parseFlags(["--resync-interval=30", "-to-ports", "1024-65535", "--logtostderr"]);
 * assert.ok(parsed.ok && parsed.value.flags.resyncIntervalMs === 30_000);
 * assert.deepEqual(parsed.value.flags.toPorts, [{ first: 1024, last: 65535 }]);
 * assert.deepEqual(parsed.value.ignored, ["logtostderr"]);
 *
 * const trap = parseFlags(["-random-fully", "false"]); // a bool flag takes no separate value
 * assert.ok(!trap.ok && trap.error.endsWith("; to set a boolean flag write -random-fully=false"));
 * ```
 */
export function parseFlags(argv: readonly string[]): Result<ParsedFlags, string> {
  const ignored = new Set<string>();
  // What the user typed for each field, last one wins: the Go-parsed value, and the text, so
  // that errors quote the input rather than the parsed number ("0x0", not 0).
  const given = new Map<keyof AgentFlags, { name: string; raw: string; value: RawValue }>();
  let bareBoolFlag: string | undefined;
  for (let i = 0; i < argv.length;) {
    const arg = argv[i++];
    if (arg.length < 2 || arg[0] !== "-") return positionalError(arg, bareBoolFlag);
    if (arg === "--") {
      if (i < argv.length) return positionalError(argv[i], undefined);
      break;
    }
    const body = arg.slice(arg[1] === "-" ? 2 : 1);
    if (body[0] === "-" || body[0] === "=") return err(`bad flag syntax: ${arg}`);
    const equals = body.indexOf("=");
    const name = equals < 0 ? body : body.slice(0, equals);
    let text = equals < 0 ? undefined : body.slice(equals + 1);
    const def = flagTable.find((row) => row.name === name);
    if (def === undefined) return err(`flag provided but not defined: -${name}`);

    bareBoolFlag = def.kind === "bool" && text === undefined ? name : undefined;
    let value: RawValue = true;
    if (def.kind === "bool" && text !== undefined) {
      const b = parseGoBool(text);
      if (!b.ok) return err(`invalid boolean value ${goQuote(text)} for -${name}: ${b.error}`);
      value = b.value;
    } else if (def.kind !== "bool") {
      if (text === undefined) {
        if (i >= argv.length) return err(`flag needs an argument: -${name}`);
        text = argv[i++];
      }
      const parsed = def.kind === "int" ? parseGoInt(text) : ok(text);
      if (!parsed.ok) return invalidValue(text, name, parsed.error);
      value = parsed.value;
    }

    if (def.field === null) ignored.add(name);
    else given.set(def.field, { name, raw: text ?? String(value), value });
  }

  const flags = {} as AgentFlags;
  // Table order, so that of several invalid values the same one is always reported. A field's
  // other spelling (-h for -help) is skipped when this one was given last.
  for (const def of flagTable) {
    const input = def.field === null ? undefined : given.get(def.field);
    if (def.field === null || (input !== undefined && input.name !== def.name)) continue;
    const parsed = def.parse(input === undefined ? def.default : input.value);
    if (!parsed.ok) return invalidValue(input?.raw ?? String(def.default), def.name, parsed.error);
    // A row's parse returns its field's type; tests/settings/flags_test.ts checks every default.
    (flags as unknown as Record<string, unknown>)[def.field] = parsed.value;
  }

  // Each mode decides what the process does and when it exits, so they cannot combine.
  const modes = (["once", "dryRun", "check", "cleanup"] as const).filter((field) => flags[field])
    .map((field) => flagTable.find((def) => def.field === field)!.name);
  if (flags.explain.length > 0) modes.push("explain");
  if (modes.length > 1) return err(`flags -${modes[0]} and -${modes[1]} cannot be used together`);
  if (flags.explainSource !== undefined && flags.explain.length === 0) {
    return err("flag -explain-source needs -explain");
  }

  return ok({ flags, ignored: [...ignored], given: new Set(given.keys()) });
}

function parseAddressList(text: string): Result<IpAddress[], string> {
  const addresses: IpAddress[] = [];
  for (const [index, item] of (text === "" ? [] : text.split(",")).entries()) {
    const parsed = parseIpAddress(item);
    if (!parsed.ok) return err(`address ${index + 1}: ${parsed.error}`);
    addresses.push(parsed.value);
  }
  return ok(addresses);
}

/** Go's FlagSet.Usage output: header plus PrintDefaults, byte for byte in layout. */
export function usage(programName: string): string {
  const sorted = [...flagTable].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  let out = `Usage of ${programName}:\n`;
  for (const def of sorted) {
    let line = `  -${def.name}`;
    // Go prints no type word for bool flags, since they take no separate argument.
    if (def.kind !== "bool") line += ` ${def.kind}`;
    // Go puts the help of a one-letter bool flag on the same line.
    line += (line.length <= 4 ? "\t" : "\n    \t") + def.help;
    const shown = typeof def.default === "string" ? goQuote(def.default) : def.default;
    // Go shows the default unless it is the type's zero value.
    out += line + (def.default ? ` (default ${shown})` : "") + "\n";
  }
  return out;
}

/** The start-up log's `--name=value` list; a value that could split or break the line is quoted. */
export function flagValuesForLog(flags: AgentFlags): string {
  const parts = new Map<keyof AgentFlags, string>();
  for (const def of flagTable) {
    if (def.field === null || parts.has(def.field)) continue;
    const value = String(def.show(flags[def.field]));
    const quoted = /^[A-Za-z0-9_.,:/@+=-]+$/.test(value) ? value : goQuote(value);
    parts.set(def.field, `--${def.name}=${quoted}`);
  }
  return [...parts.values()].join(" ");
}
