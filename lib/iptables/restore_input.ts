/**
 * The one place that spells `iptables-restore` input: a `*nat ... COMMIT` builder that yields
 * null when nothing was added, so "no change" never becomes an empty write.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NatTransaction } from "./restore_input.ts";
 * const tx = new NatTransaction();
 * assert.equal(tx.build(), null);
 * tx.declareChain("IP-MASQ-AGENT").rule("-A IP-MASQ-AGENT -j RETURN");
 * assert.equal(tx.build(), "*nat\n:IP-MASQ-AGENT - [0:0]\n-A IP-MASQ-AGENT -j RETURN\nCOMMIT\n");
 * ```
 *
 * @module
 */

/** One `iptables-restore --noflush` transaction of the nat table, built line by line. */
export class NatTransaction {
  readonly #lines: string[] = [];

  /** `:CHAIN - [0:0]`: creates the chain, or flushes it (how `--noflush` empties one chain). */
  declareChain(chain: string): this {
    return this.rule(`:${chain} - [0:0]`);
  }

  /** A rule line as iptables-save prints it, already starting with `-A `, `-D ` or `-I `. */
  rule(line: string): this {
    this.#lines.push(line);
    return this;
  }

  /** `-D CHAIN SPEC` for a rule given as its `-A CHAIN SPEC` line. */
  deleteRule(appendLine: string): this {
    return this.rule(`-D ${appendLine.slice(3)}`);
  }

  /** `-X CHAIN`: deletes a chain, which must be empty and unreferenced by then. */
  deleteChain(chain: string): this {
    return this.rule(`-X ${chain}`);
  }

  /** Whether nothing has been added. */
  get empty(): boolean {
    return this.#lines.length === 0;
  }

  /** The restore input, or null when the transaction would change nothing. */
  build(): string | null {
    return this.empty ? null : ["*nat", ...this.#lines, "COMMIT", ""].join("\n");
  }
}
