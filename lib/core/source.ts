/**
 * Where a value came from. Every CIDR and every boolean carries one through
 * merge and rendering, so findings, errors and change logs can name the file
 * and line an operator must edit.
 *
 * @module
 */

export interface SourceLocation {
  /** Path of the config file, or a description such as `(built-in default)`. */
  readonly file: string;
  /** 1-based; absent for values that did not come from a file. */
  readonly line?: number;
  readonly column?: number;
}

export interface Located<T> {
  readonly value: T;
  readonly at: SourceLocation;
}

export function builtIn(description: string): SourceLocation {
  return { file: `(${description})` };
}

/** `file:line:column`, or just the file when there is no position. */
export function formatLocation(at: SourceLocation): string {
  if (at.line === undefined) return at.file;
  return at.column === undefined ? `${at.file}:${at.line}` : `${at.file}:${at.line}:${at.column}`;
}
