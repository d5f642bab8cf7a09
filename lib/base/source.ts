/**
 * Where a value came from, so that findings, errors and change logs name the file and line to edit.
 *
 * @module
 */

/** Where a value was written: a file position, or a built-in default. */
export interface SourceLocation {
  /** Path of the config file, or a description such as `(built-in default)`. */
  readonly file: string;
  /** 1-based; absent for values that did not come from a file. */
  readonly line?: number;
  /** 1-based; absent when only the line is known. */
  readonly column?: number;
}

/** A value with where it came from. */
export interface Located<T> {
  /** The value itself. */
  readonly value: T;
  /** Where it was written. */
  readonly at: SourceLocation;
}

/** The location of a value the code supplies: shown as `(description)`. */
export function builtIn(description: string): SourceLocation {
  return { file: `(${description})` };
}

/** `file:line:column`, or just the file when there is no position. */
export function formatLocation(at: SourceLocation): string {
  if (at.line === undefined) return at.file;
  return at.column === undefined ? `${at.file}:${at.line}` : `${at.file}:${at.line}:${at.column}`;
}
