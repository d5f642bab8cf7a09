/**
 * The iptables client of one backend and family, on the {@link Exec} seam. It lists single chains
 * (`-t nat -S CHAIN` takes milliseconds beside kube-proxy's 50,000 rules, `iptables-save -t nat`
 * seconds) and writes one atomic `iptables-restore --noflush`.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import { type IptablesMode, iptablesTools, type LegacyDump, LegacyDumpScanner } from "./mode.ts";
import { denoExec, type Exec, ProgramMissingError, type ScanExec } from "../base/exec.ts";
import { type Outcome, runTool, ToolError } from "../base/tool.ts";

/** The nat table of one backend and family, as the reconcile sees it. */
export interface NatTableClient {
  /** The address family whose tools this client runs. */
  readonly family: Family;
  /** The backend whose tools this client runs. */
  readonly mode: IptablesMode;
  /** `-t nat -S CHAIN`: `-P` or `-N`, then its `-A` lines; null when the chain does not exist. */
  listChain(chain: string, signal?: AbortSignal): Promise<string | null>;
  /** `-t nat -S`: every chain of the table. Costly on a big table; only for rare paths. */
  listTable(signal?: AbortSignal): Promise<string>;
  /** One atomic `iptables-restore --noflush` transaction. */
  restore(payload: string, signal?: AbortSignal): Promise<void>;
}

/** Wait up to 5 s for the xtables lock, polling every 100 ms, as upstream does. */
export const restoreArgs: readonly string[] = ["--noflush", "-w", "5", "-W", "100000"];

// Listings wait for the xtables lock too: without `-w` a legacy `iptables -S` blocks while
// another program holds it, indistinguishable from a slow kernel. nft ignores the flag.
const listArgs: readonly string[] = ["-w", "5", "-t", "nat", "-S"];

/**
 * The xtables lock is someone else's critical section: waiting it out is always right. Only the
 * message identifies it: exit status 4 also means other resource problems (iptables-nft uses it
 * for "CHAIN_DEL failed (Device or resource busy)"), which must not be retried forever.
 */
export function isLockContention(stderr: string): boolean {
  return /xtables lock/i.test(stderr);
}

/**
 * `-S CHAIN` of a missing chain exits 1 saying, in legacy, "No chain/target/match by that name",
 * in iptables-nft 1.8.9, "chain `X' in table `nat' is incompatible, use 'nft' tool".
 */
export function isNoSuchChain(stderr: string): boolean {
  return /No chain\/target\/match by that name|chain `[^']*' in table `[^']*' is incompatible/
    .test(stderr);
}

/** The output of a run that succeeded; a failure is thrown, as lock contention or not. */
function stdoutOrThrow(outcome: Outcome): string {
  if (outcome.ok) return outcome.stdout;
  throw new ToolError(
    `${outcome.commandLine} exited with status ${outcome.code}: ${outcome.stderr || "(no output)"}`,
    isLockContention(outcome.stderr) ? "lock" : "failed",
    outcome.commandLine,
  );
}

/** The nat table of `family` through `mode`'s own tools, run by `exec`. */
export function natTableClient(
  family: Family,
  mode: IptablesMode,
  exec: Exec = denoExec,
): NatTableClient {
  const tools = iptablesTools(mode, family);
  return {
    family,
    mode,
    listChain: async (chain, signal) => {
      const outcome = await runTool(exec, tools.main, [...listArgs, chain], undefined, signal);
      return outcome.code === 1 && isNoSuchChain(outcome.stderr) ? null : stdoutOrThrow(outcome);
    },
    listTable: async (signal) =>
      stdoutOrThrow(await runTool(exec, tools.main, listArgs, undefined, signal)),
    restore: async (payload, signal) =>
      void stdoutOrThrow(await runTool(exec, tools.restore, restoreArgs, payload, signal)),
  };
}

/** Whether `-t TABLE -S CHAIN` exits 0; any failure counts as "no": this only gathers evidence. */
export async function chainExists(
  exec: Exec,
  mode: IptablesMode,
  family: Family,
  table: string,
  chain: string,
  failures?: string[],
): Promise<boolean> {
  return (await evidenceOf(exec, mode, family, ["-t", table, "-S", chain], failures))?.ok ?? false;
}

/**
 * How many rules (`-A` lines) `tables` hold, listed concurrently (saves ~20 ms at start); 0 where
 * a table cannot be read. Failures and the thrown error are taken in table order.
 */
export async function countRules(
  exec: Exec,
  mode: IptablesMode,
  family: Family,
  tables: readonly string[],
  failures?: string[],
): Promise<number> {
  const reads = await Promise.allSettled(tables.map(async (table) => {
    const own: string[] = [];
    return { outcome: await evidenceOf(exec, mode, family, ["-t", table, "-S"], own), own };
  }));
  let count = 0;
  for (const read of reads) {
    if (read.status === "rejected") throw read.reason;
    failures?.push(...read.value.own);
    const lines = read.value.outcome?.ok ? read.value.outcome.stdout.split("\n") : [];
    count += lines.filter((line) => line.startsWith("-A ")).length;
  }
  return count;
}

/**
 * `iptables-legacy-save` without `-t` (any `-t TABLE` would load the table's kernel module just
 * by asking), streamed and summarized: kept whole, the megabytes beside kube-proxy's rules doubled
 * the agent's RSS. Stops once `enough` holds; a failure reads as "nothing loaded".
 */
export async function dumpLegacy(
  scan: ScanExec,
  family: Family,
  enough: (dump: LegacyDump) => boolean = () => false,
): Promise<LegacyDump> {
  const save = iptablesTools("legacy", family).save;
  const scanner = new LegacyDumpScanner(enough);
  const nothing = new LegacyDumpScanner().finish();
  const result = await scan(save, [], (text) => scanner.push(text)).catch((error) => {
    if (error instanceof ProgramMissingError) return undefined;
    throw error;
  });
  if (result === undefined) return nothing;
  if (result.code === 0 || result.stopped) return scanner.finish();
  return { ...nothing, failure: readFailure({ commandLine: save, ...result }) };
}

/** A failed evidence read in words: the command and the first line of what it said. */
function readFailure(outcome: { commandLine: string; code: number; stderr: string }): string {
  const said = outcome.stderr.split("\n")[0] || `exit status ${outcome.code}`;
  return `${outcome.commandLine}: ${said}`;
}

/**
 * Runs `mode`'s main tool to gather evidence: a tool not installed answers nothing; a failure
 * other than "no such chain" is told to `failures`.
 */
async function evidenceOf(
  exec: Exec,
  mode: IptablesMode,
  family: Family,
  args: readonly string[],
  failures?: string[],
) {
  const outcome = await runTool(exec, iptablesTools(mode, family).main, args).catch((error) => {
    if (error instanceof ToolError && error.failure === "missing") return undefined;
    throw error;
  });
  if (outcome?.ok === false && !isNoSuchChain(outcome.stderr)) failures?.push(readFailure(outcome));
  return outcome;
}

/** What `--version` says. */
export interface IptablesVersion {
  /** Its first line, e.g. `iptables v1.8.9 (nf_tables)`. */
  readonly description: string;
  /** Whether it accepts `--random-fully` (1.6.2 and newer; older ones reject the whole restore). */
  readonly randomFullySupported: boolean;
}

/** Runs `--version`. */
export async function probeVersion(
  mode: IptablesMode,
  family: Family,
  exec: Exec = denoExec,
): Promise<IptablesVersion> {
  const outcome = await runTool(exec, iptablesTools(mode, family).main, ["--version"]);
  return parseVersion(stdoutOrThrow(outcome));
}

/** Reads the version line that `iptables --version` prints. */
export function parseVersion(output: string): IptablesVersion {
  const description = output.trim().split("\n")[0];
  const match = /v(\d+)\.(\d+)\.(\d+)/.exec(description);
  const [major, minor, patch] = match ? match.slice(1).map(Number) : [0, 0, 0];
  const randomFullySupported = major > 1 ||
    (major === 1 && (minor > 6 || (minor === 6 && patch >= 2)));
  return { description, randomFullySupported };
}
