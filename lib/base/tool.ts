/**
 * Running one netfilter program (an iptables tool or `nft`) on the {@link Exec} seam, and the one
 * error type every such failure becomes, whose {@link ToolError.failure} is all the loop's retry
 * policy (agent/backoff.ts) asks, whichever dataplane ran the program.
 *
 * @module
 */

import { type Exec, ExecAbortedError, ProgramMissingError } from "./exec.ts";

/** Why a netfilter program failed: the lock is waited out, a missing tool is fatal, the rest retried. */
export type ToolFailure = "lock" | "missing" | "failed";

/** A failed netfilter program, with its command line and why. */
export class ToolError extends Error {
  /** Names the class in printed chains of causes. */
  override readonly name = "ToolError";
  /** `message` says what failed, with the tool's own words; `command` is its command line. */
  constructor(
    message: string,
    readonly failure: ToolFailure,
    readonly command: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A finished netfilter program: its result, whether it exited 0, and its command line. */
export interface Outcome {
  /** Whether it exited 0. */
  readonly ok: boolean;
  /** What it printed on stdout. */
  readonly stdout: string;
  /** What it printed on stderr, trimmed. */
  readonly stderr: string;
  /** The command and its arguments, as one line, for messages. */
  readonly commandLine: string;
  /** Its exit status. */
  readonly code: number;
}

/**
 * Runs one netfilter program; a program that is not installed and an abort become
 * {@link ToolError}s, the first naming the Debian package to install.
 */
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
    if (error instanceof ProgramMissingError) {
      throw new ToolError(
        `${command} not found: install ${debianPackage} (the agent runs ${command} from PATH)`,
        "missing",
        commandLine,
        { cause: error },
      );
    }
    if (error instanceof ExecAbortedError) {
      throw new ToolError(`${command} aborted`, "failed", commandLine, { cause: error });
    }
    throw error;
  }
}
