/**
 * Logging through LogTape with two renderings operators already parse:
 * klog-style text lines (the default, as the Go agents print) or one JSON
 * object per line. klog's `--v` levels map onto LogTape levels: V(0) is
 * info, V(2) debug, V(4) trace.
 *
 * @module
 */

import {
  configureSync,
  getLogger,
  type LogLevel,
  type LogRecord,
  resetSync,
} from "@logtape/logtape";

export type LogFormat = "text" | "json";

export interface Logger {
  info(message: string, properties?: Record<string, unknown>): void;
  warn(message: string, properties?: Record<string, unknown>): void;
  error(message: string, properties?: Record<string, unknown>): void;
  /** klog V(2): details an operator turns on when debugging. */
  debug(message: string, properties?: Record<string, unknown>): void;
}

const category = ["ip-masq-agent"];

function lowestLevel(verbosity: number): LogLevel {
  if (verbosity >= 4) return "trace";
  if (verbosity >= 2) return "debug";
  return "info";
}

const klogSeverity: Record<LogLevel, string> = {
  trace: "I",
  debug: "I",
  info: "I",
  warning: "W",
  error: "E",
  fatal: "F",
};

export function formatText(record: LogRecord, pid: number): string {
  const time = new Date(record.timestamp);
  const two = (n: number) => String(n).padStart(2, "0");
  const micros = String(time.getUTCMilliseconds() * 1000).padStart(6, "0");
  const header =
    `${klogSeverity[record.level]}${two(time.getUTCMonth() + 1)}${two(time.getUTCDate())} ` +
    `${two(time.getUTCHours())}:${two(time.getUTCMinutes())}:${
      two(time.getUTCSeconds())
    }.${micros} ` +
    `${String(pid).padStart(7)} agent]`;
  const properties = Object.entries(record.properties)
    .map(([key, value]) =>
      ` ${key}=${
        // Strings quoted and objects as JSON keep the line one line and free of "[object Object]".
        typeof value === "string" ||
          (typeof value === "object" && value !== null && !(value instanceof Error))
          ? JSON.stringify(value)
          : String(value)}`
    )
    .join("");
  return `${header} ${record.message.join("")}${properties}\n`;
}

export function formatJson(record: LogRecord): string {
  return JSON.stringify({
    ts: new Date(record.timestamp).toISOString(),
    level: record.level,
    msg: record.message.join(""),
    ...record.properties,
  }) + "\n";
}

export interface LogOptions {
  readonly verbosity: number;
  readonly format: LogFormat;
  /** Where lines go; stderr in production, a buffer in tests. */
  readonly write?: (line: string) => void;
}

export function setUpLogging(options: LogOptions): Logger {
  const encoder = new TextEncoder();
  const write = options.write ?? ((line: string) => Deno.stderr.writeSync(encoder.encode(line)));
  const render = options.format === "json"
    ? formatJson
    : (record: LogRecord) => formatText(record, Deno.pid);
  resetSync();
  configureSync({
    sinks: { stderr: (record: LogRecord) => write(render(record)) },
    loggers: [
      { category, lowestLevel: lowestLevel(options.verbosity), sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
  const logger = getLogger(category);
  // LogTape reads `{name}` in messages as placeholders; ours are plain text with properties beside.
  const emit =
    (level: "info" | "warn" | "error" | "debug") =>
    (message: string, properties: Record<string, unknown> = {}) =>
      logger[level](message.replaceAll("{", "{{").replaceAll("}", "}}"), properties);
  return { info: emit("info"), warn: emit("warn"), error: emit("error"), debug: emit("debug") };
}
