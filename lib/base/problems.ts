/**
 * Config problems as values naming file, line and key: a problem no one can locate, no one fixes.
 *
 * @module
 */

import { DeploymentError } from "./errors.ts";
import { maxQuotedLength, quoteInput } from "./quote.ts";
import { formatLocation, type SourceLocation } from "./source.ts";

/** One thing wrong with one config file, and where. */
export interface ConfigProblem {
  /** The file, and the line and column when the problem has one. */
  readonly at: SourceLocation;
  /** The key path, such as `nonMasqueradeCIDRs[2]`, when the problem sits under a key. */
  readonly key?: string;
  /** What is wrong, with any user input quoted by `quoteInput`. */
  readonly message: string;
}

/** `file:line:column: key: message`; a key is user input, quoted unless a short printable word. */
export function formatProblem({ at, key, message }: ConfigProblem): string {
  if (key === undefined) return `${formatLocation(at)}: ${message}`;
  const plain = key.length <= maxQuotedLength && /^[!#-[\]-~]+$/.test(key);
  return `${formatLocation(at)}: ${plain ? key : quoteInput(key)}: ${message}`;
}

/** How many a ConfigError lists: all 260,000 from a bad 1 MiB file made a 25 MB log message. */
export const maxListedProblems = 20;

/** A rejected configuration: nothing from it is applied. */
export class ConfigError extends DeploymentError {
  /** Names the class in stack traces and `formatErrorChain`. */
  override readonly name = "ConfigError";
  /** The message lists the first {@link maxListedProblems} problems and counts the rest. */
  constructor(
    /** Every problem of every file, in file order. */
    readonly problems: readonly ConfigProblem[],
  ) {
    const rest = problems.slice(maxListedProblems);
    const files = [...new Set(rest.map((problem) => problem.at.file))].join(", ");
    super(
      problems.length === 1
        ? `invalid configuration: ${formatProblem(problems[0])}`
        : `invalid configuration (${problems.length} problems):\n` +
          problems.slice(0, maxListedProblems).map((problem) => `  ${formatProblem(problem)}`)
            .join("\n") +
          (rest.length === 0 ? "" : `\n  ... and ${rest.length} more in ${files}`),
    );
  }
}
