/**
 * A scripted {@link Exec} for unit tests of the process layer (in the spirit
 * of knftables' fake exec): each call is recorded with its arguments and
 * stdin, and answered by the first handler that matches, so tests check
 * argument lists, payloads and each failure class without root.
 *
 * @module
 */

import type { Exec, ExecOptions, ExecResult } from "../../lib/base/exec.ts";

/** One recorded call. */
export interface ExecCall {
  readonly command: string;
  readonly args: readonly string[];
  readonly stdin?: string;
}

/** Answers a call with a result, or throws what the real exec would (missing, denied, aborted). */
export type ExecHandler = (call: ExecCall, options: ExecOptions) => ExecResult | undefined;

/** An exec that answers from `handlers` in order; an unanswered call fails the test loudly. */
export class FakeExec {
  readonly calls: ExecCall[] = [];
  readonly #handlers: ExecHandler[] = [];

  /** Adds a handler; the first one that returns a result answers. */
  on(handler: ExecHandler): this {
    this.#handlers.push(handler);
    return this;
  }

  /** Answers every call of `command` whose arguments start with `args`. */
  answer(command: string, args: readonly string[], result: Partial<ExecResult>): this {
    return this.on((call) =>
      call.command === command && args.every((arg, index) => call.args[index] === arg)
        ? { code: 0, stdout: "", stderr: "", ...result }
        : undefined
    );
  }

  /** The calls as command lines, e.g. `iptables-nft -t nat -S POSTROUTING`. */
  get lines(): string[] {
    return this.calls.map((call) => [call.command, ...call.args].join(" "));
  }

  readonly exec: Exec = (command, args, options = {}) => {
    const call = { command, args: [...args], stdin: options.stdin };
    this.calls.push(call);
    for (const handler of this.#handlers) {
      const result = handler(call, options);
      if (result) return Promise.resolve(result);
    }
    return Promise.reject(new Error(`unexpected exec: ${[command, ...args].join(" ")}`));
  };
}
