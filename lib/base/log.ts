/**
 * klog-style text lines (as the Go agents print) or one JSON object per line. In-house: four
 * methods and two formats did not justify a library's ~6 MiB of RSS (docs/benchmarks.md).
 *
 * @module
 */

/** The level names are the ones the JSON lines carry (`warning`, not `warn`). */
export type LogLevel = "trace" | "debug" | "info" | "warning" | "error" | "fatal";

const levels: readonly LogLevel[] = ["trace", "debug", "info", "warning", "error", "fatal"];

/** One log call, as the renderers see it. */
export interface LogRecord {
  /** How severe: klog's I, W or E in text lines. */
  readonly level: LogLevel;
  /** What happened, in words. */
  readonly message: string;
  /** Milliseconds since the Unix epoch. */
  readonly timestamp: number;
  /** Structured context, rendered as `key=value` (text) or fields (JSON). */
  readonly properties: Readonly<Record<string, unknown>>;
}

/** Where the agent's log lines go: one method per klog severity. */
export interface Logger {
  /** klog V(0): what an operator wants to see. */
  info(message: string, properties?: Record<string, unknown>): void;
  /** Something is off but the agent carries on. */
  warn(message: string, properties?: Record<string, unknown>): void;
  /** Something failed. */
  error(message: string, properties?: Record<string, unknown>): void;
  /** klog V(2): details an operator turns on when debugging. */
  debug(message: string, properties?: Record<string, unknown>): void;
}

/** The lowest level written at a klog `--v` verbosity: V(0) info, V(2) debug, V(4) trace. */
export function lowestLevel(verbosity: number): LogLevel {
  return verbosity >= 4 ? "trace" : verbosity >= 2 ? "debug" : "info";
}

/** klog's severity letter; every level below warning is I. */
const klogSeverity: Partial<Record<LogLevel, string>> = { warning: "W", error: "E", fatal: "F" };

/** One klog-style text line: `I1201 21:36:28.547000   18688 agent] message key=value`. */
export function formatText(record: LogRecord, pid: number): string {
  const iso = new Date(record.timestamp).toISOString(); // 2024-12-01T21:36:28.547Z
  const header = `${klogSeverity[record.level] ?? "I"}${iso.slice(5, 7)}${iso.slice(8, 10)} ` +
    `${iso.slice(11, 23)}000 ${String(pid).padStart(7)} agent]`;
  const properties = Object.entries(record.properties).map(([key, value]) => {
    // Strings quoted and objects as JSON keep the line one line and free of "[object Object]".
    const asJson = typeof value === "string" ||
      (typeof value === "object" && value !== null && !(value instanceof Error));
    return ` ${key}=${asJson ? JSON.stringify(value) : String(value)}`;
  });
  return `${header} ${record.message}${properties.join("")}\n`;
}

/** One JSON object per line: `ts`, `level`, `msg`, then the properties. */
export function formatJson({ timestamp, level, message, properties }: LogRecord): string {
  const ts = new Date(timestamp).toISOString();
  return `${JSON.stringify({ ts, level, msg: message, ...properties })}\n`;
}

/** The longest line written, newline included: CRI runtimes split longer ones into pieces. */
export const maxLineBytes = 16 * 1024;

/**
 * `render(record)` within {@link maxLineBytes}: message and properties become one shortened
 * message saying how much was cut, so a line stays one klog line or one JSON object.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatJson, maxLineBytes, withinLineLimit } from "./log.ts";
 *
 * const record = { level: "info" as const, message: "x".repeat(100_000), timestamp: 0, properties: {} };
 * const line = withinLineLimit(formatJson, record);
 * assert.ok(new TextEncoder().encode(line).length <= maxLineBytes);
 * assert.match(JSON.parse(line).msg, /bytes cut/);
 * ```
 */
export function withinLineLimit(render: (record: LogRecord) => string, record: LogRecord): string {
  const line = render(record);
  const size = encoder.encode(line).length;
  if (size <= maxLineBytes) return line;
  const full = record.message + Object.entries(record.properties)
    .map(([key, value]) => ` ${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join("");
  // Room for the header, JSON escaping of what is kept, and the note.
  for (let keep = Math.floor(maxLineBytes / 3);; keep = Math.floor(keep / 2)) {
    const note = ` ... (${size - keep} more bytes cut from this line; --v=2 logs the details ` +
      "line by line)";
    const cut = render({ ...record, message: full.slice(0, keep) + note, properties: {} });
    if (encoder.encode(cut).length <= maxLineBytes || keep === 0) return cut;
  }
}

/** How to log: `--v`, `--log-format`, and the seams tests replace. */
export interface LogOptions {
  /** klog's `--v`: 2 adds debug lines. */
  readonly verbosity: number;
  /** `--log-format`. */
  readonly format: "text" | "json";
  /** Where lines go; stderr in production, a buffer in tests. */
  readonly write?: (line: string) => void;
  /** The clock stamped on each line; `Date.now` unless a test fixes it. */
  readonly now?: () => number;
  /** The pid text lines show; this process's unless a test fixes it. */
  readonly pid?: number;
}

const encoder = new TextEncoder();

function writeToStderr(line: string): void {
  const bytes = encoder.encode(line);
  // writeSync may take fewer bytes than given; loop so a long line is not cut short.
  for (let done = 0; done < bytes.length;) done += Deno.stderr.writeSync(bytes.subarray(done));
}

/** The logger for the process, writing one line per call. */
export function setUpLogging(
  { verbosity, format, write = writeToStderr, now = Date.now, pid = Deno.pid }: LogOptions,
): Logger {
  const render = format === "json" ? formatJson : (record: LogRecord) => formatText(record, pid);
  const lowest = levels.indexOf(lowestLevel(verbosity));
  const emit = (level: LogLevel) => (message: string, properties: Record<string, unknown> = {}) => {
    if (levels.indexOf(level) < lowest) return;
    try {
      write(withinLineLimit(render, { level, message, timestamp: now(), properties }));
    } catch {
      // A line that cannot be written (stderr closed) is dropped: logging never stops the agent.
    }
  };
  return { info: emit("info"), warn: emit("warning"), error: emit("error"), debug: emit("debug") };
}
