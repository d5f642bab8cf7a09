/**
 * The `nft` client on the {@link Exec} seam. It lists only our own tables, so kube-proxy's,
 * Docker's and the iptables-nft tables cost nothing.
 *
 * @module
 */

import type { Family } from "../net/cidr.ts";
import { nftFamily, nftTableName } from "./render.ts";
import { denoExec, type Exec } from "../base/exec.ts";
import { type Outcome, runTool, ToolError } from "../base/tool.ts";

/** The program the nftables dataplane runs. */
export const nftProgram = "nft";

/** Our tables, as the nftables dataplane sees them. */
export interface NftClient {
  /** `nft -j list table <family> ip-masq-agent`; null when the table does not exist. */
  listTable(family: Family, signal?: AbortSignal): Promise<string | null>;
  /** One atomic `nft -f -` transaction. */
  apply(payload: string, signal?: AbortSignal): Promise<void>;
}

/** The arguments that list our table of `family` as JSON. */
export function listTableArgs(family: Family): string[] {
  return ["-j", "list", "table", nftFamily(family), nftTableName];
}

/** The arguments of one transaction read from stdin. */
export const applyArgs: readonly string[] = ["-f", "-"];

// nft has no lock to wait for: every failure is retried within the budget. Its errors quote the
// offending input line: keep the message to its first lines.
function failed({ commandLine, code, stderr }: Outcome): ToolError {
  const head = stderr.split("\n").slice(0, 6).join("\n") || "(no output)";
  return new ToolError(`${commandLine} exited with status ${code}: ${head}`, "failed", commandLine);
}

/** The nft client on `exec`. */
export function nftClient(exec: Exec = denoExec): NftClient {
  return {
    listTable: async (family, signal) => {
      const args = listTableArgs(family);
      const outcome = await runTool(exec, nftProgram, args, undefined, signal, "nftables");
      if (outcome.code === 0) return outcome.stdout;
      // A table that does not exist: exit 1 and ENOENT's message.
      if (outcome.code === 1 && /No such file or directory/.test(outcome.stderr)) return null;
      throw failed(outcome);
    },
    apply: async (payload, signal) => {
      const outcome = await runTool(exec, nftProgram, applyArgs, payload, signal, "nftables");
      if (outcome.code !== 0) throw failed(outcome);
    },
  };
}
