/**
 * What the machine running the tests can do. Tests that need root, network
 * namespaces or iptables skip with this reason printed, never silently.
 *
 * @module
 */

export type Backend = "nft" | "legacy";
export const backends: readonly Backend[] = ["nft", "legacy"];

function hasCommand(name: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${name}`], stdout: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/** Undefined when namespace tests can run; otherwise why they cannot. */
export const netnsSkipReason: string | undefined = (() => {
  if (Deno.build.os !== "linux") return "network namespaces need Linux";
  if (Deno.uid() !== 0) return "network namespace tests need root (run as root, as CI does)";
  for (const tool of ["ip", "unshare", "xtables-nft-multi", "xtables-legacy-multi"]) {
    if (!hasCommand(tool)) return `${tool} is not installed (apt-get install -y iproute2 iptables)`;
  }
  return undefined;
})();

/**
 * A Deno.test that needs root and namespaces: skipped, with the reason in its
 * name, when not possible. Without sanitizers, so steps may run side by side.
 */
export function netnsTest(name: string, fn: (t: Deno.TestContext) => Promise<void>): void {
  if (netnsSkipReason) {
    Deno.test({ name: `${name} (skipped: ${netnsSkipReason})`, ignore: true, fn });
    return;
  }
  Deno.test({ name, fn, sanitizeOps: false, sanitizeResources: false });
}
