/**
 * One netfilter program (an iptables tool or `nft`) run on {@link Exec}, and the one error every
 * failure becomes: the retry policy (agent/backoff.ts) asks only its {@link ToolError.failure}.
 *
 * @module
 */

import { type Exec, ExecAbortedError, type ExecResult, ProgramMissingError } from "./exec.ts";

/** A failed netfilter program, with its command line and why. */
export class ToolError extends Error {
  /** Names the class in printed chains of causes. */
  override readonly name = "ToolError";
  /** `message` says what failed, with the tool's own words; `command` is its command line. */
  constructor(
    message: string,
    /** Why it failed: `lock` is waited out, `missing` is fatal, `failed` retried. */
    readonly failure: "lock" | "missing" | "failed",
    readonly command: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A finished netfilter program: its {@link ExecResult} (stderr trimmed) and command line. */
export interface Outcome extends ExecResult {
  /** Whether it exited 0. */
  readonly ok: boolean;
  /** The command and its arguments, as one line, for messages. */
  readonly commandLine: string;
}

/** Runs one netfilter program; missing (naming `debianPackage`) or aborted, it is a ToolError. */
export async function runTool(
  exec: Exec,
  command: string,
  args: readonly string[],
  stdin?: string,
  signal?: AbortSignal,
  debianPackage = "iptables",
): Promise<Outcome> {
  const commandLine = [command, ...args].join(" ");
  try {
    const result = await exec(command, args, { stdin, signal });
    return { ...result, ok: result.code === 0, stderr: result.stderr.trim(), commandLine };
  } catch (error) {
    if (error instanceof ExecAbortedError) {
      throw new ToolError(`${command} aborted`, "failed", commandLine, { cause: error });
    }
    if (!(error instanceof ProgramMissingError)) throw error;
    const fix = `install ${debianPackage} (the agent runs ${command} from PATH)`;
    throw new ToolError(`${command} not found: ${fix}`, "missing", commandLine, { cause: error });
  }
}
