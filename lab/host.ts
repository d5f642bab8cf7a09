/**
 * What the machine running the tests can do. Tests that need root, network
 * namespaces or iptables skip with this reason printed, never silently; when
 * the environment variable `CI` is set they fail instead, naming what is
 * missing, so a CI without root cannot go green without its root tests.
 *
 * With `IMA_ROOT_TEST_LOG` set to a file, every root test appends one line
 * to it (`ok NAME`, `failed NAME`, or `cannot-run NAME` when CI made it fail
 * for lack of root or a tool): `.ci/run` counts them.
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

/** Undefined when the nftables tests can run (`nft` runs); otherwise why they cannot. */
export const nftSkipReason: string | undefined = (() => {
  try {
    return new Deno.Command("nft", { args: ["--version"], stdout: "null", stderr: "null" })
        .outputSync().success
      ? undefined
      : "nft does not run";
  } catch {
    return "nft is not installed (apt-get install -y nftables)";
  }
})();

/** Whether the environment variable CI is set (to anything but the empty string). */
export const inCi: boolean = (() => {
  try {
    return (Deno.env.get("CI") ?? "") !== "";
  } catch {
    return false;
  }
})();

const rootTestLog: string | undefined = (() => {
  try {
    return Deno.env.get("IMA_ROOT_TEST_LOG") || undefined;
  } catch {
    return undefined;
  }
})();

function record(outcome: "ok" | "failed" | "cannot-run", name: string) {
  if (rootTestLog === undefined) return;
  Deno.writeTextFileSync(rootTestLog, `${outcome} ${name.replaceAll("\n", " ")}\n`, {
    append: true,
  });
}

/** What a root test needs, and the test itself. */
export interface RootTestOptions {
  readonly name: string;
  /** Why it cannot run here (no root, a tool missing), or undefined when it can. */
  readonly skipReason: string | undefined;
  readonly fn: (t: Deno.TestContext) => Promise<void> | void;
}

/**
 * A Deno.test that needs root (namespaces, netfilter, runc). When it cannot
 * run: outside CI it is skipped with the reason in its name; with `CI` set it
 * fails with that reason. Without sanitizers, so steps may run side by side.
 */
export function rootTest({ name, skipReason, fn }: RootTestOptions): void {
  if (skipReason !== undefined && !inCi) {
    Deno.test({ name: `${name} (skipped: ${skipReason})`, ignore: true, fn: () => {} });
    return;
  }
  if (skipReason !== undefined) {
    Deno.test({
      name: `${name} (cannot run: ${skipReason})`,
      fn: () => {
        record("cannot-run", name);
        throw new Error(
          `CI is set, so this root test must run, but it cannot: ${skipReason}. ` +
            `Run the suite as root with the tools installed (.ci/run installs them).`,
        );
      },
    });
    return;
  }
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async (t) => {
      try {
        await fn(t);
      } catch (error) {
        record("failed", name);
        throw error;
      }
      record("ok", name);
    },
  });
}

/** A root test that needs namespaces and both iptables backends ({@link netnsSkipReason}). */
export function netnsTest(name: string, fn: (t: Deno.TestContext) => Promise<void>): void {
  rootTest({ name, skipReason: netnsSkipReason, fn });
}
