import assert from "node:assert/strict";
import {
  formatJson,
  formatText,
  type LogLevel,
  type LogRecord,
  lowestLevel,
  maxLineBytes,
  setUpLogging,
} from "../../lib/base/log.ts";

/** 2024-01-02T03:04:05.678Z */
const timestamp = Date.UTC(2024, 0, 2, 3, 4, 5, 678);

function record(
  level: LogLevel,
  message: string,
  properties: Record<string, unknown> = {},
  at = timestamp,
): LogRecord {
  return { level, message, timestamp: at, properties };
}

// ---------------------------------------------------------------------------
// formatText

Deno.test("text lines have klog's header: severity, date, time in microseconds, pid", () => {
  assert.equal(
    formatText(record("info", "starting ip-masq-agent"), 1234),
    "I0102 03:04:05.678000    1234 agent] starting ip-masq-agent\n",
  );
});

Deno.test("every log level maps onto a klog severity letter", () => {
  const cases: [LogLevel, string][] = [
    ["trace", "I"],
    ["debug", "I"],
    ["info", "I"],
    ["warning", "W"],
    ["error", "E"],
    ["fatal", "F"],
  ];
  for (const [level, letter] of cases) {
    assert.ok(formatText(record(level, "m"), 1).startsWith(`${letter}0102 `), level);
  }
});

Deno.test("the text timestamp is UTC and zero-padded", () => {
  const at = Date.UTC(2025, 11, 31, 23, 59, 9, 5);
  assert.equal(
    formatText(record("info", "m", {}, at), 7),
    "I1231 23:59:09.005000       7 agent] m\n",
  );
});

Deno.test("the pid is right-aligned in seven columns, as klog pads the thread id", () => {
  assert.ok(formatText(record("info", "m"), 1).includes(" 03:04:05.678000       1 agent] "));
  assert.ok(formatText(record("info", "m"), 1234567).includes(" 03:04:05.678000 1234567 agent] "));
});

Deno.test("text properties follow the message as key=value, strings quoted", () => {
  assert.equal(
    formatText(
      record("warning", "10.1.0.0/16 is inside 10.0.0.0/8", {
        finding: "contained-cidr",
        count: 2,
        aggregated: false,
      }),
      42,
    ),
    "W0102 03:04:05.678000      42 agent] 10.1.0.0/16 is inside 10.0.0.0/8 " +
      'finding="contained-cidr" count=2 aggregated=false\n',
  );
});

Deno.test("text properties keep newlines and quotes visible on one line", () => {
  const line = formatText(record("error", "iptables failed", { error: 'line 1\nsaid "no"' }), 1);
  assert.equal(
    line,
    'E0102 03:04:05.678000       1 agent] iptables failed error="line 1\\nsaid \\"no\\""\n',
  );
});

Deno.test("object and list properties are shown as JSON in text lines", () => {
  const line = formatText(
    record("info", "effective configuration", {
      config: { masqLinkLocal: false },
      files: ["/etc/config/ip-masq-agent"],
    }),
    1,
  );
  assert.equal(
    line,
    "I0102 03:04:05.678000       1 agent] effective configuration " +
      'config={"masqLinkLocal":false} files=["/etc/config/ip-masq-agent"]\n',
  );
});

Deno.test("an error property shows its name and message, not an empty object", () => {
  const line = formatText(record("error", "failed", { error: new TypeError("boom") }), 1);
  assert.equal(line, "E0102 03:04:05.678000       1 agent] failed error=TypeError: boom\n");
});

Deno.test("a multi-line message is kept as it is, like klog", () => {
  assert.equal(
    formatText(record("error", "invalid configuration\nthe live rules were left unchanged"), 1),
    "E0102 03:04:05.678000       1 agent] invalid configuration\n" +
      "the live rules were left unchanged\n",
  );
});

// ---------------------------------------------------------------------------
// formatJson

Deno.test("JSON lines carry ts, level and msg, then the properties", () => {
  const line = formatJson(record("info", "rules written (ipv4)", { drift: "jump-missing" }));
  assert.equal(
    line,
    '{"ts":"2024-01-02T03:04:05.678Z","level":"info","msg":"rules written (ipv4)",' +
      '"drift":"jump-missing"}\n',
  );
});

Deno.test("each JSON line is one parseable object ending in a newline", () => {
  const line = formatJson(
    record("warning", 'has "quotes"\nand a newline', { n: 3, nested: { a: [1, 2] }, ok: true }),
  );
  assert.ok(line.endsWith("\n"));
  assert.equal(line.indexOf("\n"), line.length - 1, "no raw newline inside the object");
  assert.deepEqual(JSON.parse(line), {
    ts: "2024-01-02T03:04:05.678Z",
    level: "warning",
    msg: 'has "quotes"\nand a newline',
    n: 3,
    nested: { a: [1, 2] },
    ok: true,
  });
});

Deno.test("the JSON level is the level's full name (warning, not warn)", () => {
  for (const level of ["debug", "info", "warning", "error"] as const) {
    assert.equal(JSON.parse(formatJson(record(level, "m"))).level, level);
  }
});

// ---------------------------------------------------------------------------
// setUpLogging

Deno.test("messages with braces are logged literally, not as placeholders", () => {
  const lines: string[] = [];
  const log = setUpLogging({ verbosity: 0, format: "json", write: (line) => lines.push(line) });
  log.info('effective configuration {"nonMasqueradeCIDRs":["10.0.0.0/8"]} {x}', { x: "unused" });
  assert.equal(lines.length, 1);
  const parsed = JSON.parse(lines[0]);
  assert.equal(parsed.msg, 'effective configuration {"nonMasqueradeCIDRs":["10.0.0.0/8"]} {x}');
  assert.equal(parsed.x, "unused");
});

Deno.test("debug lines appear from --v=2 on, info and above always", () => {
  const cases: [number, string[]][] = [
    [0, ["info", "warning", "error"]],
    [1, ["info", "warning", "error"]],
    [2, ["debug", "info", "warning", "error"]],
    [4, ["debug", "info", "warning", "error"]],
  ];
  for (const [verbosity, want] of cases) {
    const lines: string[] = [];
    const log = setUpLogging({ verbosity, format: "json", write: (line) => lines.push(line) });
    log.debug("d");
    log.info("i");
    log.warn("w");
    log.error("e");
    assert.deepEqual(lines.map((line) => JSON.parse(line).level), want, `--v=${verbosity}`);
  }
});

Deno.test("text format writes klog lines through the given writer", () => {
  const lines: string[] = [];
  const log = setUpLogging({ verbosity: 0, format: "text", write: (line) => lines.push(line) });
  log.warn("drift repaired (ipv4): jump-missing", { family: "ipv4" });
  assert.equal(lines.length, 1);
  assert.match(
    lines[0],
    /^W\d{4} \d{2}:\d{2}:\d{2}\.\d{6} +\d+ agent\] drift repaired \(ipv4\): jump-missing family="ipv4"\n$/,
  );
});

Deno.test("--v picks the lowest level written, as klog's V levels", () => {
  const cases: [number, LogLevel][] = [[0, "info"], [1, "info"], [2, "debug"], [3, "debug"], [
    4,
    "trace",
  ], [9, "trace"]];
  for (const [verbosity, want] of cases) {
    assert.equal(lowestLevel(verbosity), want, `--v=${verbosity}`);
  }
});

Deno.test("each line is stamped with the injected clock and pid, byte for byte", () => {
  const lines: string[] = [];
  let clock = timestamp;
  const options = {
    verbosity: 2,
    now: () => clock++,
    pid: 99,
    write: (line: string) => lines.push(line),
  };
  const text = setUpLogging({ ...options, format: "text" });
  text.info("starting ip-masq-agent", { version: "0.1.0" });
  text.debug("reading {dir}", { dir: "/etc/config" });
  text.error("failed", { error: new TypeError("boom"), attempt: 2 });
  const json = setUpLogging({ ...options, format: "json" });
  json.warn("drift repaired (ipv4): jump-missing", { family: "ipv4" });
  assert.deepEqual(lines, [
    'I0102 03:04:05.678000      99 agent] starting ip-masq-agent version="0.1.0"\n',
    'I0102 03:04:05.679000      99 agent] reading {dir} dir="/etc/config"\n',
    "E0102 03:04:05.680000      99 agent] failed error=TypeError: boom attempt=2\n",
    '{"ts":"2024-01-02T03:04:05.681Z","level":"warning","msg":"drift repaired (ipv4): jump-missing",' +
    '"family":"ipv4"}\n',
  ]);
});

Deno.test("a line that cannot be written is dropped without stopping the caller", () => {
  const attempted: string[] = [];
  const log = setUpLogging({
    verbosity: 0,
    format: "text",
    write: (line) => {
      attempted.push(line);
      throw new Error("stderr closed");
    },
  });
  assert.doesNotThrow(() => log.info("lost"));
  assert.doesNotThrow(() => log.error("also lost", { n: 1 }));
  // Each line was offered to the writer, rendered in full: a failed write loses that line only,
  // and neither silences the logger nor reaches the caller.
  assert.equal(attempted.length, 2, JSON.stringify(attempted));
  assert.match(attempted[0], /^I\d{4} [\d:.]+ +\d+ agent\] lost\n$/);
  assert.match(attempted[1], /^E\d{4} [\d:.]+ +\d+ agent\] also lost n=1\n$/);
});

Deno.test("the properties object is rendered as given and left untouched", () => {
  const lines: string[] = [];
  const log = setUpLogging({ verbosity: 0, format: "json", write: (line) => lines.push(line) });
  const properties = { b: 1, a: [2] };
  log.info("m", properties);
  assert.deepEqual(properties, { b: 1, a: [2] });
  assert.ok(lines[0].endsWith(',"msg":"m","b":1,"a":[2]}\n'), lines[0]);
});

Deno.test("issue 15: no line is longer than 16 KiB, in either format, and a cut line says so", () => {
  for (const format of ["text", "json"] as const) {
    const lines: string[] = [];
    const log = setUpLogging({ verbosity: 0, format, write: (line) => lines.push(line), pid: 1 });
    log.error(`invalid configuration (10000 problems):\n${"  f:1:1: bad CIDR\n".repeat(10_000)}`);
    log.info("effective configuration", { config: JSON.stringify({ x: "y".repeat(100_000) }) });
    log.info("short", { a: "b" });
    assert.equal(lines.length, 3);
    for (const line of lines) {
      assert.ok(new TextEncoder().encode(line).length <= maxLineBytes, `${format}: ${line.length}`);
    }
    if (format === "json") { for (const line of lines) JSON.parse(line); }
    assert.match(lines[0], /more bytes cut from this line/);
    assert.match(lines[1], /more bytes cut from this line/);
    assert.doesNotMatch(lines[2], /cut/);
  }
});
