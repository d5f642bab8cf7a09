/**
 * Configuration problems as values: each names the file, the line and the key,
 * because a config an operator cannot locate is a config they cannot fix.
 *
 * @module
 */

import { formatLocation, type SourceLocation } from "./source.ts";

export interface ConfigProblem {
  readonly at: SourceLocation;
  /** The key path, such as `nonMasqueradeCIDRs[2]`, when the problem sits under a key. */
  readonly key?: string;
  readonly message: string;
}

export function formatProblem(problem: ConfigProblem): string {
  const key = problem.key === undefined ? "" : ` ${problem.key}:`;
  return `${formatLocation(problem.at)}:${key} ${problem.message}`;
}

/**
 * A 1 MiB file of bad list items holds about 260,000 problems: listing them all made one
 * 25 MB log message. The first ones show what is wrong; the rest are counted by file.
 */
export const maxListedProblems = 20;

/** A rejected configuration: nothing from it is applied. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: readonly ConfigProblem[]) {
    super(
      problems.length === 1
        ? `invalid configuration: ${formatProblem(problems[0])}`
        : `invalid configuration (${problems.length} problems):\n` +
          problems.slice(0, maxListedProblems).map((problem) => `  ${formatProblem(problem)}`)
            .join("\n") +
          unlisted(problems.slice(maxListedProblems)),
    );
  }
}

function unlisted(rest: readonly ConfigProblem[]): string {
  if (rest.length === 0) return "";
  const files = [...new Set(rest.map((problem) => problem.at.file))];
  return `\n  ... and ${rest.length} more in ${files.join(", ")}`;
}
