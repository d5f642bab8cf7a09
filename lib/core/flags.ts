/**
 * Command-line flags of ip-masq-agent.
 *
 * The agent replaces the Go kubernetes-sigs/ip-masq-agent and AKS ip-masq-agent-v2, whose
 * DaemonSet manifests pass flags in Go `flag` package syntax. Those manifests must keep
 * working unchanged, so this parser reproduces Go's syntax, error messages and usage layout
 * rather than following any JavaScript CLI convention.
 *
 * Pure module: no Deno APIs and no I/O, so it can be tested exhaustively and reused by any
 * entry point. `argv` never includes the program name (like Go's `os.Args[1:]`).
 */

import { checkChainName } from "./chain_name.ts";
import { resyncBoundsMilliseconds } from "./duration.ts";
import { goQuote, PARSE_ERROR, parseGoBool, parseGoInt } from "./go_strconv.ts";
import { parsePortRanges } from "./ports.ts";

export interface AgentFlags {
  configDir: string;
  masqChain: string;
  nomasqAllReservedRanges: boolean;
  enableIpv6: boolean;
  resyncInterval: number;
  randomFully: boolean;
  toPorts: string;
  iptablesMode: "auto" | "nft" | "legacy";
  verbosity: number;
  logFormat: "text" | "json";
  exitOnConfigError: boolean;
  once: boolean;
  dryRun: boolean;
  check: boolean;
  cleanup: boolean;
  version: boolean;
  help: boolean;
}

export type FlagParseResult =
  | { ok: true; flags: AgentFlags; ignored: string[] }
  | { ok: false; message: string };

type KeysOfType<T, V> = { [K in keyof T]-?: T[K] extends V ? K : never }[keyof T];

/** Returns the reason a value is invalid, or undefined when it is fine. */
export type FlagValidator<T> = (value: T) => string | undefined;

interface FlagDefBase {
  readonly name: string;
  readonly help: string;
}

/**
 * `key: null` marks a flag that is accepted only so that existing manifests do not fail
 * (the klog flags of the Go agents); its value is checked for syntax and then dropped.
 */
export interface BoolFlagDef extends FlagDefBase {
  readonly kind: "bool";
  readonly default: boolean;
  readonly key: KeysOfType<AgentFlags, boolean> | null;
}

export interface IntFlagDef extends FlagDefBase {
  readonly kind: "int";
  readonly default: number;
  readonly key: KeysOfType<AgentFlags, number> | null;
  readonly validate?: FlagValidator<number>;
}

export interface StringFlagDef extends FlagDefBase {
  readonly kind: "string";
  readonly default: string;
  readonly key: KeysOfType<AgentFlags, string> | null;
  readonly validate?: FlagValidator<string>;
}

export type FlagDef = BoolFlagDef | IntFlagDef | StringFlagDef;

function checkPortList(spec: string): string | undefined {
  const parsed = parsePortRanges(spec);
  return parsed.ok ? undefined : parsed.reason;
}

const KLOG_IGNORED_NOTE = "(accepted for compatibility, ignored)";

/**
 * The single definition of every flag: parsing, defaults, validation, usage and the start-up
 * log line are all derived from it. Aliases share a key (h and help).
 */
export const flagTable: readonly FlagDef[] = [
  {
    name: "config-dir",
    kind: "string",
    default: "/etc/config",
    key: "configDir",
    help: "directory holding the agent's config file (the mounted ConfigMap)",
  },
  {
    name: "masq-chain",
    kind: "string",
    default: "IP-MASQ-AGENT",
    key: "masqChain",
    help: "name of the nat chain that holds the masquerade rules",
    validate: checkChainName,
  },
  {
    name: "nomasq-all-reserved-ranges",
    kind: "bool",
    default: false,
    key: "nomasqAllReservedRanges",
    help: "do not masquerade traffic to any reserved IPv4 range, not only the RFC 1918 ones",
  },
  {
    name: "enable-ipv6",
    kind: "bool",
    default: false,
    key: "enableIpv6",
    help: "also manage IPv6 masquerade rules with ip6tables",
  },
  {
    name: "resync-interval",
    kind: "int",
    default: 60,
    key: "resyncInterval",
    help: "seconds between config reloads and rule resyncs",
    validate: (n) =>
      n * 1000 >= resyncBoundsMilliseconds.min && n * 1000 <= resyncBoundsMilliseconds.max
        ? undefined
        : `must be between ${resyncBoundsMilliseconds.min / 1000} and ` +
          `${resyncBoundsMilliseconds.max / 1000} seconds`,
  },
  {
    name: "random-fully",
    kind: "bool",
    default: true,
    key: "randomFully",
    help: "add --random-fully to the MASQUERADE rule when iptables supports it",
  },
  {
    name: "to-ports",
    kind: "string",
    default: "",
    key: "toPorts",
    help: "source ports for the MASQUERADE rule, a comma-separated list of N or N-M " +
      "(empty: any port)",
    validate: checkPortList,
  },
  {
    name: "iptables-mode",
    kind: "string",
    default: "auto",
    key: "iptablesMode",
    help: "iptables backend to program: auto (detect from the node, as kubelet marks it), " +
      "nft or legacy",
    validate: (s) =>
      s === "auto" || s === "nft" || s === "legacy"
        ? undefined
        : `must be "auto", "nft" or "legacy"`,
  },
  {
    name: "v",
    kind: "int",
    default: 0,
    key: "verbosity",
    help: "log level verbosity",
    validate: (n) => (n >= 0 ? undefined : "must not be negative"),
  },
  {
    name: "log-format",
    kind: "string",
    default: "text",
    key: "logFormat",
    help: "log output format: text or json",
    validate: (s) => (s === "text" || s === "json" ? undefined : `must be "text" or "json"`),
  },
  {
    name: "exit-on-config-error",
    kind: "bool",
    default: true,
    key: "exitOnConfigError",
    help: "exit when the config is invalid; if false, keep running with the last good config",
  },
  {
    name: "once",
    kind: "bool",
    default: false,
    key: "once",
    help: "sync the rules once and exit",
  },
  {
    name: "dry-run",
    kind: "bool",
    default: false,
    key: "dryRun",
    help: "print the rules that would be applied instead of applying them, then exit",
  },
  {
    name: "check",
    kind: "bool",
    default: false,
    key: "check",
    help: "validate the config and exit",
  },
  {
    name: "cleanup",
    kind: "bool",
    default: false,
    key: "cleanup",
    help: "remove the agent's chain and rules, then exit",
  },
  {
    name: "version",
    kind: "bool",
    default: false,
    key: "version",
    help: "print the version and exit",
  },
  { name: "help", kind: "bool", default: false, key: "help", help: "show this help and exit" },
  { name: "h", kind: "bool", default: false, key: "help", help: "show this help and exit" },
  // The Go agents register klog's flags; manifests written for them may pass any of these.
  // Defaults are left at the zero value because klog's own defaults no longer mean anything.
  {
    name: "add_dir_header",
    kind: "bool",
    default: false,
    key: null,
    help: "add the file directory to the log header",
  },
  {
    name: "alsologtostderr",
    kind: "bool",
    default: false,
    key: null,
    help: "log to standard error as well as files",
  },
  {
    name: "log_backtrace_at",
    kind: "string",
    default: "",
    key: null,
    help: "when logging hits line file:N, emit a stack trace",
  },
  {
    name: "log_dir",
    kind: "string",
    default: "",
    key: null,
    help: "write log files in this directory",
  },
  { name: "log_file", kind: "string", default: "", key: null, help: "use this log file" },
  {
    name: "log_file_max_size",
    kind: "string",
    default: "",
    key: null,
    help: "maximum size in megabytes a log file can grow to",
  },
  {
    name: "logtostderr",
    kind: "bool",
    default: false,
    key: null,
    help: "log to standard error instead of files",
  },
  {
    name: "one_output",
    kind: "bool",
    default: false,
    key: null,
    help: "write logs only to their native severity level",
  },
  {
    name: "skip_headers",
    kind: "bool",
    default: false,
    key: null,
    help: "avoid header prefixes in the log messages",
  },
  {
    name: "skip_log_headers",
    kind: "bool",
    default: false,
    key: null,
    help: "avoid headers when opening log files",
  },
  {
    name: "stderrthreshold",
    kind: "string",
    default: "",
    key: null,
    help: "logs at or above this threshold go to stderr",
  },
  {
    name: "vmodule",
    kind: "string",
    default: "",
    key: null,
    help: "comma-separated list of pattern=N settings for file-filtered logging",
  },
];

/** Modes that each decide what the process does and when it exits, so they cannot combine. */
const EXCLUSIVE_MODE_FLAGS: readonly string[] = ["once", "dry-run", "check", "cleanup"];

const flagsByName: ReadonlyMap<string, FlagDef> = new Map(flagTable.map((d) => [d.name, d]));

function setFlag(flags: AgentFlags, key: keyof AgentFlags, value: boolean | number | string) {
  // The table's types tie each key to its kind; only logFormat and iptablesMode are narrower than their kind,
  // and validation rejects anything else before the flags are handed out.
  (flags as unknown as Record<string, unknown>)[key] = value;
}

export const defaultFlags: Readonly<AgentFlags> = (() => {
  const flags = {} as AgentFlags;
  for (const def of flagTable) {
    if (def.key !== null) setFlag(flags, def.key, def.default);
  }
  return Object.freeze(flags);
})();

function positionalError(arg: string, bareBoolFlag: string | undefined): FlagParseResult {
  let message = `unexpected argument ${
    goQuote(arg)
  }: flags must start with - (positional arguments are not accepted)`;
  // "-random-fully false" is the classic Go flag trap: the bool flag never takes the next
  // argument, so the word that was meant as its value ends up here.
  if (bareBoolFlag !== undefined && parseGoBool(arg) !== undefined) {
    message += `; to set a boolean flag write -${bareBoolFlag}=${arg}`;
  }
  return { ok: false, message };
}

/**
 * Parses `argv` (without the program name) with Go `flag` package semantics, then checks the
 * values. `ok: true` guarantees that every value is valid.
 */
export function parseFlags(argv: readonly string[]): FlagParseResult {
  const flags: AgentFlags = { ...defaultFlags };
  const ignored: string[] = [];
  // What the user typed for each key, so that validation errors quote the input, not the
  // parsed number ("0x0", not 0).
  const given = new Map<keyof AgentFlags, { name: string; raw: string }>();
  let bareBoolFlag: string | undefined;

  let i = 0;
  while (i < argv.length) {
    const arg = argv[i];
    if (arg.length < 2 || arg[0] !== "-") return positionalError(arg, bareBoolFlag);
    let dashes = 1;
    if (arg[1] === "-") {
      if (arg.length === 2) {
        i++;
        if (i < argv.length) return positionalError(argv[i], undefined);
        break;
      }
      dashes = 2;
    }
    let name = arg.slice(dashes);
    if (name[0] === "-" || name[0] === "=") {
      return { ok: false, message: `bad flag syntax: ${arg}` };
    }
    i++;

    let value: string | undefined;
    const eq = name.indexOf("=", 1);
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const def = flagsByName.get(name);
    if (def === undefined) return { ok: false, message: `flag provided but not defined: -${name}` };

    bareBoolFlag = undefined;
    let parsed: boolean | number | string;
    if (def.kind === "bool") {
      if (value === undefined) {
        parsed = true;
        bareBoolFlag = name;
      } else {
        const b = parseGoBool(value);
        if (b === undefined) {
          return {
            ok: false,
            message: `invalid boolean value ${goQuote(value)} for -${name}: ${PARSE_ERROR}`,
          };
        }
        parsed = b;
      }
    } else {
      if (value === undefined) {
        if (i >= argv.length) return { ok: false, message: `flag needs an argument: -${name}` };
        value = argv[i++];
      }
      if (def.kind === "int") {
        const n = parseGoInt(value);
        if (typeof n !== "number") {
          return { ok: false, message: `invalid value ${goQuote(value)} for flag -${name}: ${n}` };
        }
        parsed = n;
      } else {
        parsed = value;
      }
    }

    if (def.key === null) {
      if (!ignored.includes(name)) ignored.push(name);
    } else {
      setFlag(flags, def.key, parsed);
      given.set(def.key, { name, raw: value ?? String(parsed) });
    }
  }

  for (const def of flagTable) {
    if (def.key === null || def.kind === "bool" || def.validate === undefined) continue;
    // Defaults are known to be valid (the tests check them), so only user input is checked.
    const input = given.get(def.key);
    if (input === undefined) continue;
    let reason: string | undefined;
    if (def.kind === "int") reason = def.validate(flags[def.key]);
    else reason = def.validate(flags[def.key]);
    if (reason !== undefined) {
      return {
        ok: false,
        message: `invalid value ${goQuote(input.raw)} for flag -${input.name}: ${reason}`,
      };
    }
  }

  const modes = EXCLUSIVE_MODE_FLAGS.filter((name) => {
    const def = flagsByName.get(name);
    return def !== undefined && def.key !== null && flags[def.key] === true;
  });
  if (modes.length > 1) {
    return { ok: false, message: `flags -${modes[0]} and -${modes[1]} cannot be used together` };
  }

  return { ok: true, flags, ignored };
}

function isZeroDefault(def: FlagDef): boolean {
  return def.default === false || def.default === 0 || def.default === "";
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
    line += line.length <= 4 ? "\t" : "\n    \t";
    const help = def.key === null ? `${def.help} ${KLOG_IGNORED_NOTE}` : def.help;
    line += help.replaceAll("\n", "\n    \t");
    if (!isZeroDefault(def)) {
      line += def.kind === "string"
        ? ` (default ${goQuote(def.default)})`
        : ` (default ${def.default})`;
    }
    out += line + "\n";
  }
  return out;
}

function logValue(value: boolean | number | string): string {
  const s = String(value);
  // Quote anything that could break the single log line or be misread as several flags.
  return /^[A-Za-z0-9_.,:/@+=-]+$/.test(s) ? s : goQuote(s);
}

/** Every effective flag value on one line, in table order, for the start-up log. */
export function flagValuesForLog(flags: AgentFlags): string {
  const seen = new Set<keyof AgentFlags>();
  const parts: string[] = [];
  for (const def of flagTable) {
    if (def.key === null || seen.has(def.key)) continue;
    seen.add(def.key);
    parts.push(`--${def.name}=${logValue(flags[def.key])}`);
  }
  return parts.join(" ");
}
