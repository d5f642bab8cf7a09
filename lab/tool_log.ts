/**
 * The one iptables call counter: a PATH directory whose iptables* names are
 * wrapper scripts that run the real tool of another directory (a backend
 * directory from backendBin, or one with shimmed tools) and append one line,
 * `<tool> <args>`, to a log file. Tests and the benchmark put it first in the
 * agent's PATH to count the process launches the agent makes (steady state:
 * one save per family, no restore).
 *
 * @module
 */

import { backendMarker, toolNames } from "./netns.ts";

/** A program the agent may run: one of {@link toolNames}. */
export type ToolName = string;

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

export interface ToolLogOptions {
  /** Names `${root}/${label}` (the wrappers) and `${root}/${label}.log`. */
  readonly label?: string;
  /**
   * `after` (the default): the wrapper runs the tool and logs the call once it
   * exited, so a logged call is a finished one. `exec`: the wrapper logs, then
   * `exec`s the tool, so the process the agent waits for is the real tool (the
   * benchmark's CPU accounting); a logged call is then a started one.
   */
  readonly log?: "after" | "exec";
}

export class ToolLog {
  readonly #calls: string[] = [];
  #offset = 0;
  #partial = "";
  #queue: Promise<void> = Promise.resolve();
  readonly #decoder = new TextDecoder();
  readonly #buffer = new Uint8Array(64 * 1024);

  private constructor(readonly binDir: string, readonly logFile: string) {}

  /** Wraps the tools of `realBinDir` in `${root}/${label}`. */
  static async create(
    realBinDir: string,
    root: string,
    options: ToolLogOptions = {},
  ): Promise<ToolLog> {
    const label = options.label ?? "tool-log";
    const binDir = `${root}/${label}`;
    const logFile = `${root}/${label}.log`;
    await Deno.mkdir(binDir, { recursive: true });
    await Deno.writeTextFile(logFile, "");
    for (const name of toolNames) {
      const tool = shellQuote(`${realBinDir}/${name}`);
      const logLine = `printf '%s\\n' ${shellQuote(name)}" $*" >> ${shellQuote(logFile)}`;
      const body = options.log === "exec"
        ? [logLine, `exec ${tool} "$@"`]
        : [`${tool} "$@"`, "status=$?", logLine, 'exit "$status"'];
      const script = ["#!/bin/sh", ...body, ""].join("\n");
      await Deno.writeTextFile(`${binDir}/${name}`, script, { mode: 0o755 });
      await Deno.chmod(`${binDir}/${name}`, 0o755);
    }
    const marker = await Deno.readTextFile(`${realBinDir}/${backendMarker}`).catch(() => undefined);
    if (marker !== undefined) await Deno.writeTextFile(`${binDir}/${backendMarker}`, marker);
    return new ToolLog(binDir, logFile);
  }

  /**
   * The calls logged since the last reset, as `<tool> <args>`, from index
   * `since` on. Reads only what was appended since the last read, so polling
   * it often (the benchmark does, every millisecond) stays cheap.
   */
  async calls(since = 0): Promise<string[]> {
    await this.#serialized(() => this.#readNew());
    return this.#calls.slice(since);
  }

  /** How many logged calls, from index `since` on, ran `tool`. */
  async count(tool: ToolName, since = 0): Promise<number> {
    return (await this.calls(since)).filter((line) => line.split(" ", 1)[0] === tool).length;
  }

  reset(): Promise<void> {
    return this.#serialized(async () => {
      await Deno.writeTextFile(this.logFile, "");
      this.#calls.length = 0;
      this.#offset = 0;
      this.#partial = "";
    });
  }

  /** Reads and resets one at a time, so no read sees the file offset of another. */
  #serialized(step: () => Promise<void>): Promise<void> {
    const done = this.#queue.then(step);
    this.#queue = done.catch(() => {});
    return done;
  }

  async #readNew(): Promise<void> {
    const file = await Deno.open(this.logFile, { read: true });
    try {
      await file.seek(this.#offset, Deno.SeekMode.Start);
      for (;;) {
        const count = await file.read(this.#buffer);
        if (count === null || count === 0) break;
        this.#offset += count;
        this.#partial += this.#decoder.decode(this.#buffer.subarray(0, count), { stream: true });
      }
    } finally {
      file.close();
    }
    const lines = this.#partial.split("\n");
    this.#partial = lines.pop() ?? "";
    this.#calls.push(...lines.filter((line) => line !== ""));
  }
}
