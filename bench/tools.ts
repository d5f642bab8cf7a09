/**
 * The iptables tools the benchmark's agents find in PATH. The agent runs a
 * backend's own names (`iptables-nft`, `iptables-legacy-restore`, ...; it may
 * look at the other backend at start-up), and older builds the plain
 * `iptables*` names; one directory holds them all: the plain names as
 * lab/netns.ts `backendBin` links them (to the measured backend), the
 * backend-specific names to their own backend's binary, as Debian installs
 * them. `countingTools` wraps every one of them in the tests' call-counting
 * ToolLog.
 *
 * @module
 */

import type { Backend } from "../lab/host.ts";
import { backendBin, toolNames } from "../lab/netns.ts";
import { ToolLog } from "../lab/tool_log.ts";

const multiBinary: Readonly<Record<Backend, string>> = {
  nft: "/usr/sbin/xtables-nft-multi",
  legacy: "/usr/sbin/xtables-legacy-multi",
};

/** `iptables-nft`, `iptables-nft-save`, ..., `ip6tables-legacy-restore`: name → backend. */
export const modeToolNames: ReadonlyMap<string, Backend> = new Map(
  (["nft", "legacy"] as const).flatMap((backend) =>
    ["iptables", "ip6tables"].flatMap((base) =>
      ["", "-save", "-restore"].map((suffix) => [`${base}-${backend}${suffix}`, backend] as const)
    )
  ),
);

/** Every iptables name the agent might run from PATH. */
export const allToolNames: readonly string[] = [
  ...new Set([...toolNames, ...modeToolNames.keys()]),
];

/**
 * A directory with every name of {@link allToolNames}: the plain ones run
 * `backend`, the others their own backend. Built on `backendBin`; names it
 * already links are left as they are.
 */
export async function agentBin(backend: Backend, root: string): Promise<string> {
  const dir = await backendBin(backend, root);
  for (const [name, owner] of modeToolNames) {
    const exists = await Deno.lstat(`${dir}/${name}`).then(() => true, () => false);
    if (!exists) await Deno.symlink(multiBinary[owner], `${dir}/${name}`);
  }
  return dir;
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * A ToolLog in `exec` mode (the agent waits for the real tool, so its CPU is
 * the tool's plus one `sh`) over `agentBin`, with wrappers in the ToolLog's
 * format added for the names ToolLog itself does not wrap. `bin` is the
 * unwrapped directory, for the bench's own reads and writes.
 */
export async function countingTools(
  backend: Backend,
  root: string,
): Promise<{ log: ToolLog; bin: string }> {
  const real = await agentBin(backend, root);
  const log = await ToolLog.create(real, root, { log: "exec" });
  for (const name of allToolNames) {
    const path = `${log.binDir}/${name}`;
    if (await Deno.lstat(path).then(() => true, () => false)) continue;
    const script = [
      "#!/bin/sh",
      `printf '%s\\n' ${shellQuote(name)}" $*" >> ${shellQuote(log.logFile)}`,
      `exec ${shellQuote(`${real}/${name}`)} "$@"`,
      "",
    ].join("\n");
    await Deno.writeTextFile(path, script, { mode: 0o755 });
    await Deno.chmod(path, 0o755);
  }
  return { log, bin: real };
}

/** The program of a logged call (`iptables-nft -t nat -S POSTROUTING` → `iptables-nft`). */
export const program = (call: string) => call.split(" ", 1)[0];
