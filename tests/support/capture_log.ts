/**
 * A `Logger` that keeps every line, for assertions on what the agent said
 * (and, as often, on what it did not say again).
 *
 * @module
 */

import type { Logger } from "../../lib/base/log.ts";

export interface LogLine {
  readonly level: "info" | "warn" | "error" | "debug";
  readonly message: string;
  readonly properties: Record<string, unknown>;
}

export class CaptureLog implements Logger {
  readonly lines: LogLine[] = [];
  info = (message: string, properties = {}) => this.#add("info", message, properties);
  warn = (message: string, properties = {}) => this.#add("warn", message, properties);
  error = (message: string, properties = {}) => this.#add("error", message, properties);
  debug = (message: string, properties = {}) => this.#add("debug", message, properties);

  #add(level: LogLine["level"], message: string, properties: Record<string, unknown>) {
    this.lines.push({ level, message, properties });
  }

  count(pattern: RegExp, level?: LogLine["level"]): number {
    return this.matching(pattern, level).length;
  }

  /** The messages matching `pattern` (at `level`, if given), in order. */
  matching(pattern: RegExp, level?: LogLine["level"]): string[] {
    return this.lines.filter((line) =>
      (level === undefined || line.level === level) && pattern.test(line.message)
    ).map((line) => line.message);
  }

  /** For assertion messages. */
  text(): string {
    return this.lines.map((line) =>
      `${line.level}: ${line.message} ${JSON.stringify(line.properties)}`
    ).join("\n");
  }
}
