import assert from "node:assert/strict";
import {
  type AgentFlags,
  defaultFlags,
  flagTable,
  flagValuesForLog,
  type ParsedFlags,
  parseFlags,
  usage,
} from "../../lib/settings/flags.ts";
import type { PortRange } from "../../lib/settings/ports.ts";

function okFlags(argv: readonly string[]): ParsedFlags {
  const result = parseFlags(argv);
  assert.ok(result.ok, `expected ${JSON.stringify(argv)} to parse, got: ${JSON.stringify(result)}`);
  return result.value;
}

function errorOf(argv: readonly string[]): string {
  const result = parseFlags(argv);
  assert.ok(!result.ok, `expected ${JSON.stringify(argv)} to fail, got: ${JSON.stringify(result)}`);
  return result.error;
}

const expectedDefaults: AgentFlags = {
  configDir: "/etc/config",
  masqChain: "IP-MASQ-AGENT",
  nomasqAllReservedRanges: false,
  enableIpv6: false,
  resyncIntervalMs: 60_000,
  randomFully: true,
  toPorts: [],
  iptablesMode: "auto",
  dataplane: "iptables",
  postroutingJump: "append",
  kubeProxyMasqueradeBit: 14,
  explain: [],
  explainSource: undefined,
  verbosity: 0,
  logFormat: "text",
  exitOnConfigError: true,
  once: false,
  dryRun: false,
  check: false,
  cleanup: false,
  version: false,
  help: false,
};

Deno.test("the defaults match the documented values of every flag", () => {
  assert.deepEqual({ ...defaultFlags }, expectedDefaults);
  assert.ok(Object.isFrozen(defaultFlags));
});

Deno.test("an empty command line yields the defaults and no ignored flags", () => {
  const { flags, ignored } = okFlags([]);
  assert.deepEqual(flags, expectedDefaults);
  assert.deepEqual(ignored, []);
});

Deno.test("parsing returns a fresh object that does not alias the defaults", () => {
  const { flags } = okFlags([]);
  assert.notEqual(flags, defaultFlags);
  flags.masqChain = "OTHER";
  assert.equal(defaultFlags.masqChain, "IP-MASQ-AGENT");
});

Deno.test("every default in the flag table passes its own validation and shows as written", () => {
  for (const def of flagTable) {
    const typeOfKind = { bool: "boolean", int: "number", string: "string" } as const;
    assert.equal(typeof def.default, typeOfKind[def.kind], def.name);
    const parsed = def.parse(def.default);
    assert.ok(parsed.ok, `default of -${def.name}`);
    assert.equal(def.show(parsed.value), def.default, `default of -${def.name}`);
  }
});

Deno.test("the klog flags are twelve ignored bool or string flags with zero defaults", () => {
  const klog = flagTable.filter((def) => def.field === null);
  assert.equal(klog.length, 12);
  for (const def of klog) {
    assert.ok(def.kind === "bool" || def.kind === "string", def.name);
    assert.equal(def.default, def.kind === "bool" ? false : "", def.name);
  }
});

Deno.test("typed flags: --resync-interval is seconds in, milliseconds out; --to-ports is ranges", () => {
  const { flags } = okFlags(["--resync-interval=0x10", "--to-ports=80,1024-2047,9000-9000"]);
  assert.equal(flags.resyncIntervalMs, 16_000);
  const want: PortRange[] = [
    { first: 80, last: 80 },
    { first: 1024, last: 2047 },
    { first: 9000, last: 9000 },
  ];
  assert.deepEqual(flags.toPorts, want);
  // The log line shows them as the command line spells them (a one-port range as iptables does).
  assert.ok(flagValuesForLog(flags).includes(" --resync-interval=16 "));
  assert.ok(flagValuesForLog(flags).includes(" --to-ports=80,1024-2047,9000 "));
});

Deno.test("the flag table has unique names and covers every AgentFlags key", () => {
  const names = flagTable.map((d) => d.name);
  assert.equal(new Set(names).size, names.length);
  const keys = new Set(flagTable.flatMap((d) => (d.field === null ? [] : [d.field])));
  assert.deepEqual([...keys].sort(), Object.keys(expectedDefaults).sort());
});

Deno.test("string flags accept all four Go spellings and a separate value", () => {
  const cases: [string[], string][] = [
    [["-config-dir=/a"], "/a"],
    [["--config-dir=/a"], "/a"],
    [["-config-dir", "/a"], "/a"],
    [["--config-dir", "/a"], "/a"],
    [["-config-dir", "-looks-like-a-flag"], "-looks-like-a-flag"],
    [["-config-dir", "--"], "--"],
    [["-config-dir="], ""],
    [["-config-dir=a=b"], "a=b"],
    [["-config-dir==x"], "=x"],
    [["-config-dir", ""], ""],
  ];
  for (const [argv, want] of cases) {
    assert.equal(okFlags(argv).flags.configDir, want, JSON.stringify(argv));
  }
});

Deno.test("bool flags follow Go: bare sets true and =VALUE takes strconv.ParseBool values", () => {
  const cases: [string[], boolean][] = [
    [["-once"], true],
    [["--once"], true],
    ...["1", "t", "T", "TRUE", "true", "True"].map((v): [string[], boolean] => [
      [`-once=${v}`],
      true,
    ]),
    ...["0", "f", "F", "FALSE", "false", "False"].map((v): [string[], boolean] => [
      [`--once=${v}`],
      false,
    ]),
  ];
  for (const [argv, want] of cases) {
    assert.equal(okFlags(argv).flags.once, want, JSON.stringify(argv));
  }
  assert.equal(okFlags(["-random-fully=false"]).flags.randomFully, false);
  assert.equal(okFlags(["--exit-on-config-error=0"]).flags.exitOnConfigError, false);
});

Deno.test("bool flags reject values outside strconv.ParseBool with Go's message", () => {
  const cases: [string, string][] = [
    ["-once=yes", `invalid boolean value "yes" for -once: parse error`],
    ["-once=", `invalid boolean value "" for -once: parse error`],
    ["--random-fully=tRUE", `invalid boolean value "tRUE" for -random-fully: parse error`],
    ["-once= true", `invalid boolean value " true" for -once: parse error`],
  ];
  for (const [arg, want] of cases) assert.equal(errorOf([arg]), want);
});

Deno.test("a bool flag never consumes the next argument, so a bare false is positional", () => {
  assert.equal(
    errorOf(["-random-fully", "false"]),
    `unexpected argument "false": flags must start with - (positional arguments are not ` +
      `accepted); to set a boolean flag write -random-fully=false`,
  );
  assert.equal(
    errorOf(["-once", "foo"]),
    `unexpected argument "foo": flags must start with - (positional arguments are not accepted)`,
  );
});

Deno.test("int flags accept Go ParseInt base-0 syntax", () => {
  const cases: [string, number][] = [
    ["30", 30],
    ["+30", 30],
    ["0x1F", 31],
    ["0X1f", 31],
    ["017", 15],
    ["0o17", 15],
    ["0O17", 15],
    ["0b101", 5],
    ["0x_1F", 31],
    ["1_000", 1000],
    ["0_7", 7],
    ["0", 0],
    ["00", 0],
    ["9007199254740991", Number.MAX_SAFE_INTEGER],
  ];
  for (const [raw, want] of cases) {
    assert.equal(okFlags([`-v=${raw}`]).flags.verbosity, want, raw);
  }
  assert.equal(okFlags(["-v", "0x10"]).flags.verbosity, 16);
});

Deno.test("int flags reject malformed numbers with Go's parse error message", () => {
  const bad = [
    "abc",
    "",
    "-",
    "+",
    "+-1",
    "1.5",
    " 1",
    "1 ",
    "08",
    "0x",
    "0b",
    "0b2",
    "0o8",
    "0xg",
    "_1",
    "1_",
    "1__0",
    "0x_",
    "1e3",
    "٣",
  ];
  for (const raw of bad) {
    assert.equal(
      errorOf([`--resync-interval=${raw}`]),
      `invalid value ${JSON.stringify(raw)} for flag -resync-interval: parse error`,
      raw,
    );
  }
});

Deno.test("int flags reject out-of-range numbers with Go's range message", () => {
  const tooBig = [
    "9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999",
    "0xffffffffffffffffff",
    "99999999999999999999x",
    // Representable in Go's int64 but not exactly in a JavaScript number.
    "9007199254740992",
    "-9007199254740992",
  ];
  for (const raw of tooBig) {
    assert.equal(
      errorOf(["-v", raw]),
      `invalid value ${JSON.stringify(raw)} for flag -v: value out of range`,
      raw,
    );
  }
});

Deno.test("a value flag at the end of the command line needs an argument", () => {
  assert.equal(errorOf(["-config-dir"]), "flag needs an argument: -config-dir");
  assert.equal(errorOf(["--resync-interval"]), "flag needs an argument: -resync-interval");
  assert.equal(errorOf(["-once", "--log_dir"]), "flag needs an argument: -log_dir");
});

Deno.test("malformed flag syntax is reported as Go reports it", () => {
  for (const arg of ["---name", "-=x", "--=x", "---", "-=", "--=", "---once"]) {
    assert.equal(errorOf([arg]), `bad flag syntax: ${arg}`);
  }
});

Deno.test("unknown flags are rejected, including wrong case and Go's own help aliases", () => {
  const cases: [string, string][] = [
    ["-foo", "-foo"],
    ["--foo=bar", "-foo"],
    ["-Once", "-Once"],
    ["-config_dir=/x", "-config_dir"],
    ["-resync_interval", "-resync_interval"],
    ["-?", "-?"],
  ];
  for (const [arg, name] of cases) {
    assert.equal(errorOf([arg]), `flag provided but not defined: ${name}`);
  }
});

Deno.test("-- ends flag parsing and anything after it is an unexpected argument", () => {
  assert.deepEqual(okFlags(["-once", "--"]).flags.once, true);
  assert.equal(
    errorOf(["--", "-once"]),
    `unexpected argument "-once": flags must start with - (positional arguments are not accepted)`,
  );
});

Deno.test("positional arguments are rejected wherever they appear", () => {
  const cases: [string[], string][] = [
    [["foo"], "foo"],
    [["-"], "-"],
    [["-once", "-", "-check"], "-"],
    [["--v=1", "run", "--once"], "run"],
    [[""], ""],
  ];
  for (const [argv, arg] of cases) {
    assert.equal(
      errorOf(argv),
      `unexpected argument ${
        JSON.stringify(arg)
      }: flags must start with - (positional arguments are not accepted)`,
    );
  }
});

Deno.test("the last occurrence of a repeated flag wins", () => {
  const { flags } = okFlags([
    "-v=3",
    "--v",
    "5",
    "-masq-chain=A",
    "-masq-chain",
    "B",
    "-once",
    "-once=false",
  ]);
  assert.equal(flags.verbosity, 5);
  assert.equal(flags.masqChain, "B");
  assert.equal(flags.once, false);
});

Deno.test("-h, -help and --help all request help", () => {
  for (const arg of ["-h", "-help", "--help", "--h", "-help=true"]) {
    assert.equal(okFlags([arg]).flags.help, true, arg);
  }
  assert.equal(okFlags(["-help=false"]).flags.help, false);
});

Deno.test("--version is parsed as a plain bool flag", () => {
  assert.equal(okFlags(["--version"]).flags.version, true);
});

Deno.test("every agent flag can be set and lands in its AgentFlags field", () => {
  const { flags } = okFlags([
    "--config-dir=/cfg",
    "--masq-chain=MY-CHAIN",
    "--nomasq-all-reserved-ranges",
    "--enable-ipv6",
    "--resync-interval=5",
    "--random-fully=false",
    "--to-ports=1024-2047",
    "--v=4",
    "--log-format=json",
    "--exit-on-config-error=false",
    "--dry-run",
  ]);
  assert.deepEqual(flags, {
    ...expectedDefaults,
    configDir: "/cfg",
    masqChain: "MY-CHAIN",
    nomasqAllReservedRanges: true,
    enableIpv6: true,
    resyncIntervalMs: 5000,
    randomFully: false,
    toPorts: [{ first: 1024, last: 2047 }],
    verbosity: 4,
    logFormat: "json",
    exitOnConfigError: false,
    dryRun: true,
  });
});

Deno.test("klog flags are accepted, ignored and reported once each in order given", () => {
  const { flags, ignored } = okFlags([
    "--logtostderr",
    "-alsologtostderr=false",
    "--add_dir_header",
    "-one_output",
    "-skip_headers=true",
    "-skip_log_headers",
    "--log_backtrace_at=foo.go:10",
    "-log_dir",
    "/var/log",
    "--log_file=/tmp/x.log",
    "--log_file_max_size",
    "1800",
    "--stderrthreshold=ERROR",
    "-vmodule=foo=2",
    "--logtostderr=false",
    "--v=2",
  ]);
  assert.deepEqual(ignored, [
    "logtostderr",
    "alsologtostderr",
    "add_dir_header",
    "one_output",
    "skip_headers",
    "skip_log_headers",
    "log_backtrace_at",
    "log_dir",
    "log_file",
    "log_file_max_size",
    "stderrthreshold",
    "vmodule",
  ]);
  assert.deepEqual(flags, { ...expectedDefaults, verbosity: 2 });
});

Deno.test("ignored klog flags still get Go's syntax checks", () => {
  assert.equal(
    errorOf(["--logtostderr=maybe"]),
    `invalid boolean value "maybe" for -logtostderr: parse error`,
  );
  assert.equal(errorOf(["--vmodule"]), "flag needs an argument: -vmodule");
  assert.equal(
    errorOf(["--logtostderr", "true"]),
    `unexpected argument "true": flags must start with - (positional arguments are not ` +
      `accepted); to set a boolean flag write -logtostderr=true`,
  );
});

Deno.test("each semantic validation error names the flag and quotes the input", () => {
  const cases: [string[], string][] = [
    [
      ["--resync-interval=0"],
      `invalid value "0" for flag -resync-interval: must be between 1 and 86400 seconds`,
    ],
    [
      ["--resync-interval", "-5"],
      `invalid value "-5" for flag -resync-interval: must be between 1 and 86400 seconds`,
    ],
    [
      ["--resync-interval=0x0"],
      `invalid value "0x0" for flag -resync-interval: must be between 1 and 86400 seconds`,
    ],
    [
      ["--resync-interval=86401"],
      `invalid value "86401" for flag -resync-interval: must be between 1 and 86400 seconds`,
    ],
    [["--v=-1"], `invalid value "-1" for flag -v: must not be negative`],
    [["--log-format=xml"], `invalid value "xml" for flag -log-format: must be "text" or "json"`],
    [["--log-format=JSON"], `invalid value "JSON" for flag -log-format: must be "text" or "json"`],
    [["--log-format="], `invalid value "" for flag -log-format: must be "text" or "json"`],
  ];
  for (const [argv, want] of cases) assert.equal(errorOf(argv), want, JSON.stringify(argv));
});

Deno.test("valid --to-ports lists are accepted", () => {
  for (
    const spec of [
      "",
      "1",
      "65535",
      "1-65535",
      "80",
      "1024-2047",
      "80,443",
      "80-90,91-100",
      "5,1-4",
    ]
  ) {
    const { toPorts } = okFlags([`--to-ports=${spec}`]).flags;
    const shown = toPorts.map(({ first, last }) =>
      first === last ? `${first}` : `${first}-${last}`
    );
    assert.equal(shown.join(","), spec, spec);
  }
});

Deno.test("invalid --to-ports lists are rejected with the reason", () => {
  const cases: [string, string][] = [
    ["abc", `"abc" is not a port or port range (want a comma-separated list of N or N-M)`],
    ["80,", `"" is not a port or port range (want a comma-separated list of N or N-M)`],
    [",80", `"" is not a port or port range (want a comma-separated list of N or N-M)`],
    ["80,,90", `"" is not a port or port range (want a comma-separated list of N or N-M)`],
    ["80 ", `"80 " is not a port or port range (want a comma-separated list of N or N-M)`],
    ["80, 90", `" 90" is not a port or port range (want a comma-separated list of N or N-M)`],
    ["-80", `"-80" is not a port or port range (want a comma-separated list of N or N-M)`],
    ["80-", `"80-" is not a port or port range (want a comma-separated list of N or N-M)`],
    ["1-2-3", `"1-2-3" is not a port or port range (want a comma-separated list of N or N-M)`],
    ["+80", `"+80" is not a port or port range (want a comma-separated list of N or N-M)`],
    ["0x50", `"0x50" is not a port or port range (want a comma-separated list of N or N-M)`],
    ["0", "port 0 is out of range 1-65535"],
    ["65536", "port 65536 is out of range 1-65535"],
    ["1-65536", "port 65536 is out of range 1-65535"],
    ["99999999999999999999999", "port 99999999999999999999999 is out of range 1-65535"],
    ["080", `port "080" must not have a leading zero`],
    ["80-090", `port "090" must not have a leading zero`],
    ["90-80", "port range 90-80 has its start above its end"],
    ["80,80", "ports 80 and 80 overlap"],
    ["80-90,85", "ports 80-90 and 85 overlap"],
    ["100-200,50-100", "ports 50-100 and 100-200 overlap"],
    ["1-10,20-30,25-40", "ports 20-30 and 25-40 overlap"],
  ];
  for (const [spec, reason] of cases) {
    assert.equal(
      errorOf([`--to-ports=${spec}`]),
      `invalid value ${JSON.stringify(spec)} for flag -to-ports: ${reason}`,
      spec,
    );
  }
});

Deno.test("valid --masq-chain names are accepted", () => {
  for (
    const name of [
      "IP-MASQ-AGENT",
      "x",
      "A".repeat(28),
      "MY_CHAIN.v2",
      "chain-!",
      "KUBE-POSTROUTING",
      "ACCEPTED",
    ]
  ) {
    assert.equal(okFlags(["--masq-chain", name]).flags.masqChain, name, name);
  }
});

Deno.test("invalid --masq-chain names are rejected with the reason", () => {
  const charRule = "(only printable ASCII without whitespace, quotes, backslash or # is allowed)";
  const cases: [string, string][] = [
    ["", "must not be empty"],
    ["A".repeat(29), "must be at most 28 characters (iptables limit), got 29"],
    ["MY CHAIN", `must not contain " " ${charRule}`],
    ["MY\tCHAIN", `must not contain "\\t" ${charRule}`],
    ['MY"CHAIN', `must not contain "\\"" ${charRule}`],
    ["MY'CHAIN", `must not contain "'" ${charRule}`],
    ["MY\\CHAIN", `must not contain "\\\\" ${charRule}`],
    ["MY#CHAIN", `must not contain "#" ${charRule}`],
    ["CHAÎNE", `must not contain "Î" ${charRule}`],
    ["A\x7f", `must not contain "\\x7f" ${charRule}`],
    ["-CHAIN", `must not start with "-"`],
    ["!CHAIN", `must not start with "!"`],
  ];
  for (const [name, reason] of cases) {
    assert.equal(
      errorOf([`--masq-chain=${name}`]),
      `invalid value ${goQuoteForTest(name)} for flag -masq-chain: ${reason}`,
      name,
    );
  }
});

Deno.test("built-in chain and target names are rejected as --masq-chain in any case", () => {
  const builtins = [
    "PREROUTING",
    "INPUT",
    "FORWARD",
    "OUTPUT",
    "POSTROUTING",
    "ACCEPT",
    "DROP",
    "RETURN",
    "QUEUE",
    "NFQUEUE",
    "MASQUERADE",
    "SNAT",
    "DNAT",
    "REJECT",
    "LOG",
    "MARK",
    "REDIRECT",
  ];
  for (
    const name of builtins.flatMap((b) => [b, b.toLowerCase(), b[0] + b.slice(1).toLowerCase()])
  ) {
    assert.equal(
      errorOf(["-masq-chain", name]),
      `invalid value "${name}" for flag -masq-chain: ` +
        "must not be a built-in iptables chain or target name",
    );
  }
});

Deno.test("at most one of --once, --dry-run, --check and --cleanup may be set", () => {
  const modes = ["once", "dry-run", "check", "cleanup"];
  for (const [i, a] of modes.entries()) {
    assert.equal(okFlags([`--${a}`]).flags.help, false);
    for (const b of modes.slice(i + 1)) {
      const want = `flags -${a} and -${b} cannot be used together`;
      assert.equal(errorOf([`--${a}`, `--${b}`]), want);
      assert.equal(errorOf([`--${b}`, `--${a}`]), want);
    }
  }
  assert.equal(
    errorOf(["--cleanup", "--check", "--once", "--dry-run"]),
    "flags -once and -dry-run cannot be used together",
  );
});

Deno.test("a mode flag explicitly set to false does not conflict with another mode", () => {
  const { flags } = okFlags(["--once=false", "--check"]);
  assert.equal(flags.once, false);
  assert.equal(flags.check, true);
});

Deno.test("syntax errors are reported before semantic ones, at the first bad argument", () => {
  assert.equal(errorOf(["--resync-interval=0", "--foo"]), "flag provided but not defined: -foo");
  assert.equal(
    errorOf(["--once", "--check", "--v=x"]),
    `invalid value "x" for flag -v: parse error`,
  );
  assert.equal(errorOf(["--foo", "--bar"]), "flag provided but not defined: -foo");
});

Deno.test("usage starts with Go's header and lists every flag sorted by name", () => {
  const text = usage("ip-masq-agent");
  assert.ok(text.startsWith("Usage of ip-masq-agent:\n"));
  assert.ok(text.endsWith("\n"));
  const listed = [...text.matchAll(/^ {2}-(\S+)/gm)].map((m) => m[1]);
  const names = flagTable.map((d) => d.name);
  assert.deepEqual(listed, [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
  assert.equal(listed.length, names.length);
});

Deno.test("usage formats each flag like Go's PrintDefaults", () => {
  const text = usage("agent");
  const expectations = [
    `  -config-dir string\n    \tdirectory holding the agent's config file (the mounted ConfigMap) ` +
    `(default "/etc/config")\n`,
    `  -resync-interval int\n    \tseconds between config reloads and rule resyncs (default 60)\n`,
    `  -random-fully\n    \tadd --random-fully to the MASQUERADE rule when iptables supports it ` +
    `(default true)\n`,
    `  -once\n    \tsync the rules once and exit\n`,
    `  -v int\n    \tlog level verbosity\n`,
    `  -h\tshow this help and exit\n`,
    `  -help\n    \tshow this help and exit\n`,
    `  -to-ports string\n    \tsource ports for the MASQUERADE rule, a comma-separated list of ` +
    `N or N-M (empty: any port)\n`,
  ];
  for (const want of expectations) assert.ok(text.includes(want), want);
});

Deno.test("usage marks exactly the klog flags as accepted for compatibility and ignored", () => {
  const text = usage("agent");
  for (const def of flagTable) {
    const block = text.split(/\n(?= {2}-)/).find((b) => b.startsWith(`  -${def.name}`));
    assert.ok(block !== undefined, def.name);
    const firstLine = block.split("\n")[0].split("\t")[0];
    const want = def.kind === "bool" ? `  -${def.name}` : `  -${def.name} ${def.kind}`;
    assert.equal(firstLine, want);
    assert.equal(
      block.includes("(accepted for compatibility, ignored)"),
      def.field === null,
      def.name,
    );
  }
});

Deno.test("flagValuesForLog lists every agent flag once with its value", () => {
  const line = flagValuesForLog(defaultFlags);
  assert.equal(
    line,
    "--config-dir=/etc/config --masq-chain=IP-MASQ-AGENT --nomasq-all-reserved-ranges=false " +
      '--enable-ipv6=false --resync-interval=60 --random-fully=true --to-ports="" --iptables-mode=auto ' +
      "--dataplane=iptables --postrouting-jump=append --kube-proxy-masquerade-bit=14 " +
      '--explain="" --explain-source="" --v=0 ' +
      "--log-format=text --exit-on-config-error=true --once=false --dry-run=false --check=false " +
      "--cleanup=false --version=false --help=false",
  );
  for (const def of flagTable) {
    assert.equal(line.includes(`--${def.name}=`), def.field !== null && def.name !== "h", def.name);
  }
});

Deno.test("flagValuesForLog reflects parsed values and keeps odd values on one line", () => {
  const { flags } = okFlags([
    "--config-dir=/etc/my config\nnext",
    "--to-ports=80,443",
    "--v=3",
  ]);
  const line = flagValuesForLog(flags);
  assert.ok(!line.includes("\n"));
  assert.ok(line.includes(`--config-dir="/etc/my config\\nnext"`), line);
  assert.ok(line.includes("--to-ports=80,443"), line);
  assert.ok(line.includes("--v=3"), line);
});

/** Go's %q for the ASCII and Latin-1 inputs used above. */
function goQuoteForTest(s: string): string {
  return JSON.stringify(s).replaceAll("\x7f", "\\x7f");
}

Deno.test("--iptables-mode takes auto, nft or legacy, and nothing else", () => {
  for (const mode of ["auto", "nft", "legacy"] as const) {
    const result = parseFlags([`--iptables-mode=${mode}`]);
    assert.ok(result.ok);
    assert.equal(result.value.flags.iptablesMode, mode);
  }
  const message = errorOf(["--iptables-mode=iptables"]);
  assert.match(message, /iptables-mode/);
  assert.match(message, /must be "auto", "nft" or "legacy"/);
});

Deno.test("--dataplane takes iptables or nftables, and nothing else", () => {
  for (const dataplane of ["iptables", "nftables"] as const) {
    const result = parseFlags([`--dataplane=${dataplane}`]);
    assert.ok(result.ok);
    assert.equal(result.value.flags.dataplane, dataplane);
  }
  assert.match(errorOf(["--dataplane=nft"]), /must be "iptables" or "nftables"/);
});

Deno.test("issue 15: --help describes -check as the read-only probe it is", () => {
  const text = usage("ip-masq-agent");
  assert.doesNotMatch(text, /validate the config and exit/);
  assert.match(
    text,
    /-check\n\s+compare the live rules with the config \(a readiness probe; needs root\)/,
  );
  assert.match(text, /1 printing what differs, 2 on an invalid config; writes nothing/);
});
