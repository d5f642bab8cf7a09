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

/** Deno.test options that skip, with the reason printed once per test file, when not possible. */
export function netnsTest(name: string, fn: () => Promise<void>): void {
  if (netnsSkipReason) {
    Deno.test({ name: `${name} (skipped: ${netnsSkipReason})`, ignore: true, fn });
    return;
  }
  Deno.test({ name, fn, sanitizeOps: false, sanitizeResources: false });
}
