/**
 * The one shape of an outcome that can fail: a value, or an error of any type that says why.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { err, ok, type Result } from "./result.ts";
 *
 * const half = (n: number): Result<number> => (n % 2 === 0 ? ok(n / 2) : err(`${n} is odd`));
 * assert.deepEqual(half(3), { ok: false, error: "3 is odd" });
 * ```
 *
 * @module
 */

/** A success carrying `value`, or a failure carrying `error`; `ok` tells them apart. */
export type Result<T, E = string> = Ok<T> | Err<E>;

/** The success case of a {@link Result}. */
export interface Ok<T> {
  /** Always true: narrows a {@link Result} to this case. */
  readonly ok: true;
  /** What the operation produced. */
  readonly value: T;
}

/** The failure case of a {@link Result}. */
export interface Err<E> {
  /** Always false: narrows a {@link Result} to this case. */
  readonly ok: false;
  /** Why the operation failed. */
  readonly error: E;
}

/** A success. */
export function ok<T>(value: T): Ok<T> {
  return { ok: true, value };
}

/** A failure. */
export function err<E>(error: E): Err<E> {
  return { ok: false, error };
}
