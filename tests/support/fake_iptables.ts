/**
 * A faithful in-memory `NatTableClient`, in the spirit of knftables' fake: it
 * holds one nat table with iptables semantics, prints it as
 * `iptables-save -t nat` does, and applies `iptables-restore --noflush` input
 * line by line, each `COMMIT` all or nothing. Where the legacy and nft
 * backends differ, it takes the stricter behaviour, so a payload it accepts
 * works on both; it also rejects an unterminated quote, which both swallow.
 *
 * What it models, each checked against iptables v1.8.9 (nf_tables):
 * - the built-in chains PREROUTING, INPUT, OUTPUT, POSTROUTING with policies,
 *   user chains printed sorted by name, rules in order;
 * - `:CHAIN - [0:0]` creates a user chain or flushes an existing one; on a
 *   built-in chain it only sets the policy;
 * - `-A`, `-I [n]`, `-R n`, `-D n`, `-D <spec>` (first identical rule, or
 *   "Bad rule (does a matching rule exist in that chain?)"), `-F`, `-N`,
 *   `-X` (fails on a missing, built-in, referenced or non-empty chain), `-P`;
 * - rule specs as iptables stores them: the restore tokenizer's quoting,
 *   `-s -d -i -o -p` printed first in that order, addresses masked and given
 *   a prefix, `/0` dropped, the implicit `-m tcp` after `-p tcp --dport`,
 *   `statistic --probability` rounded to its 31-bit fraction, comments quoted
 *   as `xtables_save_string` quotes them; unknown matches and targets fail,
 *   and so does DROP (as a target or a `-P` policy: nat is not for filtering);
 * - IPv6 addresses with a dotted IPv4 tail, read and printed as glibc does.
 *
 * tests/root/fake_conformance_test.ts drives the same operations against
 * this fake and the real iptables-nft and iptables-legacy, and requires the
 * same outcomes and listings.
 *
 * It counts calls, records every restore payload, can fail the next calls
 * with the xtables lock or a generic error, and lets a test play "another
 * program" changing the table (drift) without counting that as our write.
 *
 * This file is the client; the model lives beside it in fake_iptables/:
 * table.ts (chains and restore transactions), rule_spec.ts (tokens and
 * canonical rule specs), addresses.ts (address canonicalization).
 *
 * @module
 */

import type { Family } from "../../lib/net/cidr.ts";
import { type IptablesMode, iptablesTools } from "../../lib/iptables/mode.ts";
import { type NatTableClient, restoreArgs } from "../../lib/iptables/client.ts";
import { ToolError } from "../../lib/base/tool.ts";
import { applyRestore, NatTable } from "./fake_iptables/table.ts";

export { builtinChains } from "./fake_iptables/table.ts";

export { saveString, tokenize } from "./fake_iptables/rule_spec.ts";

export interface FakeNatTableOptions {
  readonly family?: Family;
  /** Which backend's tools the error messages name; nft by default. */
  readonly mode?: IptablesMode;
  /** Restore input applied at construction, as if another program had written it. */
  readonly seed?: string;
  /** Each listing and restore takes this long (a timer that honours the abort signal). */
  readonly latencyMs?: number;
}

export interface FakeCall {
  /** `list`: `-t nat -S [CHAIN]`; `restore`: one `iptables-restore --noflush`. */
  readonly op: "list" | "restore";
  /** The chain a `list` call asked for; undefined for the whole table. */
  readonly chain?: string;
  /** `performance.now()` when the call started. */
  readonly at: number;
  readonly payload?: string;
  /** Set when the call failed (injected or rejected input). */
  readonly error?: ToolError;
}

export type InjectedFailure = "lock" | "failed";

export class FakeNatTable implements NatTableClient {
  readonly family: Family;
  readonly mode: IptablesMode;
  readonly calls: FakeCall[] = [];
  /** How long each listing and restore takes; tests may change it between calls. */
  latencyMs: number;
  #table = new NatTable();
  readonly #failures: Record<FakeCall["op"], InjectedFailure[]> = { list: [], restore: [] };

  constructor(options: FakeNatTableOptions = {}) {
    this.family = options.family ?? "ipv4";
    this.mode = options.mode ?? "nft";
    this.latencyMs = options.latencyMs ?? 0;
    if (options.seed !== undefined) this.external(options.seed);
  }

  /** Every `-S` listing, whatever it listed. */
  get listCalls(): number {
    return this.calls.filter((call) => call.op === "list").length;
  }

  /**
   * How many times the table was read for a reconcile: each starts by listing
   * POSTROUTING (then our chain), so this counts reconciles of this family.
   */
  get reconcileReads(): number {
    return this.calls.filter((call) => call.op === "list" && call.chain === "POSTROUTING").length;
  }

  get restoreCalls(): number {
    return this.calls.filter((call) => call.op === "restore").length;
  }

  /** Every restore payload we were handed, failed ones included, in order. */
  get payloads(): string[] {
    return this.calls.flatMap((call) => (call.op === "restore" ? [call.payload ?? ""] : []));
  }

  /** The next `count` restores fail before touching the table. */
  failNextRestores(count: number, failure: InjectedFailure): void {
    for (let i = 0; i < count; i++) this.#failures.restore.push(failure);
  }

  /** The next `count` listings fail. */
  failNextReads(count: number, failure: InjectedFailure): void {
    for (let i = 0; i < count; i++) this.#failures.list.push(failure);
  }

  /** Drops any failures still queued: the lock "is released". */
  clearFailures(): void {
    this.#failures.list.length = 0;
    this.#failures.restore.length = 0;
  }

  async listChain(chain: string, signal?: AbortSignal): Promise<string | null> {
    await this.#list(["-t", "nat", "-S", chain], chain, signal);
    return this.#table.chains.has(chain) ? this.#table.listing([chain]) : null;
  }

  async listTable(signal?: AbortSignal): Promise<string> {
    await this.#list(["-t", "nat", "-S"], undefined, signal);
    return this.#table.listing();
  }

  /** The table as `iptables-save -t nat` prints it, comment lines included (not counted). */
  save(): string {
    const now = ctime(new Date());
    const header = `${this.#tools.main.replace(/-(nft|legacy)$/, "")}-save v1.8.9 (${
      this.mode === "nft" ? "nf_tables" : "legacy"
    })`;
    return `# Generated by ${header} on ${now}\n${this.dump()}# Completed on ${now}\n`;
  }

  get #tools() {
    return iptablesTools(this.mode, this.family);
  }

  async #list(args: readonly string[], chain: string | undefined, signal?: AbortSignal) {
    const call: { op: "list"; chain?: string; at: number; error?: ToolError } = {
      op: "list",
      chain,
      at: performance.now(),
    };
    this.calls.push(call);
    try {
      await this.#enter(this.#tools.main, args, "list", signal);
    } catch (error) {
      if (error instanceof ToolError) call.error = error;
      throw error;
    }
  }

  async restore(payload: string, signal?: AbortSignal): Promise<void> {
    const call: { op: "restore"; at: number; payload: string; error?: ToolError } = {
      op: "restore",
      at: performance.now(),
      payload,
    };
    this.calls.push(call);
    try {
      await this.#enter(this.#tools.restore, restoreArgs, "restore", signal);
      this.#apply(payload);
    } catch (error) {
      if (error instanceof ToolError) call.error = error;
      throw error;
    }
  }

  /** Another program's `iptables-restore --noflush`: same semantics, not counted. */
  external(payload: string): void {
    this.#apply(payload);
  }

  /** The table as `iptables-save -t nat` prints it, without the two comment lines. */
  dump(): string {
    return this.#table.render();
  }

  /** The `-A CHAIN ...` lines of one chain, in order. */
  rules(chain: string): string[] {
    return (this.#table.chains.get(chain) ?? []).map((rule) => `-A ${chain} ${rule.text}`);
  }

  #apply(payload: string) {
    const commandLine = [this.#tools.restore, ...restoreArgs].join(" ");
    applyRestore(this.#table, payload, this.family, commandLine, (table) => this.#table = table);
  }

  async #enter(
    command: string,
    args: readonly string[],
    op: FakeCall["op"],
    signal: AbortSignal | undefined,
  ) {
    const commandLine = [command, ...args].join(" ");
    if (this.latencyMs > 0) await delay(this.latencyMs, signal);
    if (signal?.aborted) {
      throw new ToolError(`${command} aborted`, "failed", commandLine, {
        cause: signal.reason,
      });
    }
    const failure = this.#failures[op].shift();
    if (failure === "lock") {
      throw new ToolError(
        `${commandLine} exited with status 4: Another app is currently holding the xtables ` +
          `lock. Stopped waiting after 5s.`,
        "lock",
        commandLine,
      );
    }
    if (failure === "failed") {
      throw new ToolError(
        `${commandLine} exited with status 1: ${command} v1.8.9 (nf_tables): injected failure`,
        "failed",
        commandLine,
      );
    }
  }
}

function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done);
  });
}

/** C's ctime(3) without the newline, as iptables-save prints it: `Sun Nov 29 17:45:11 2026`. */
function ctime(date: Date): string {
  const days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const months = [
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
  ];
  const two = (n: number) => String(n).padStart(2, "0");
  return `${days[date.getUTCDay()]} ${months[date.getUTCMonth()]} ` +
    `${String(date.getUTCDate()).padStart(2)} ${two(date.getUTCHours())}:` +
    `${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())} ${date.getUTCFullYear()}`;
}
