/**
 * Entry-point behaviour that only the real process shows: the production
 * permission set denying a config directory outside /etc/config, iptables
 * tools missing from PATH, usage errors, and signals (also as PID 1). Each
 * case runs `deno task start`'s command line in its own network namespace.
 */

import { equal, match, ok } from "node:assert/strict";
import { assertExit } from "../../lab/agent_process.ts";
import { backends, netnsTest } from "../../lab/host.ts";
import { families, type Lab, withLab } from "../../lab/lab.ts";
import { restrictedPath, ruleLines } from "../../lab/netns.ts";

const CHAIN = "IP-MASQ-AGENT";
const CONFIG = "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - fd00::/8\n";

async function hasOurRules(lab: Lab): Promise<boolean> {
  for (const family of families) {
    if (ruleLines(await lab.save(family)).some((line) => line.includes(CHAIN))) return true;
  }
  return false;
}

for (const backend of backends) {
  netnsTest(
    `a config dir outside /etc/config is denied: exit 2 naming path and permission (${backend})`,
    async () => {
      await withLab(backend, "denied", async (lab) => {
        await lab.writeConfig(CONFIG);
        for (const dir of ["/tmp/somewhere", "/etc/config-other"]) {
          for (const mode of [["--once"], ["--check"], ["--dry-run"], []]) {
            const what = `${mode.join(" ") || "run"} --config-dir=${dir}`;
            const result = await lab.agent([...mode, `--config-dir=${dir}`, "--enable-ipv6"]);
            assertExit(result, 2, what);
            match(result.stderr, new RegExp(`does not allow reading ${dir}:`), what);
            match(result.stderr, /"permissions\.agent\.read"/, what);
            match(result.stderr, new RegExp(`--allow-read=${dir}`), what);
            ok(!/^\s+at /m.test(result.stderr), `${what}: no stack trace:\n${result.stderr}`);
          }
        }
        equal(await lab.tools.count(lab.agentTool("ipv4", "restore")), 0);
        equal(await lab.tools.count(lab.agentTool("ipv6", "restore")), 0);
        ok(!(await hasOurRules(lab)), "nothing written");
      });
    },
  );

  netnsTest(`iptables tools missing from PATH: exit 1 naming the tool (${backend})`, async () => {
    await withLab(backend, "missing", async (lab) => {
      await lab.writeConfig(CONFIG);
      const none = await restrictedPath(lab.backend, lab.root, []);
      for (const mode of [["--once"], ["--check"], []]) {
        const what = `${mode.join(" ") || "run"} without iptables`;
        const result = await lab.agent(mode, { env: { PATH: none } });
        assertExit(result, 1, what);
        match(result.stderr, new RegExp(`iptables-${backend} not found: install iptables`), what);
      }
      const cleanup = await lab.agent(["--cleanup"], { env: { PATH: none } });
      assertExit(cleanup, 1, "--cleanup without iptables");
      match(cleanup.stderr, new RegExp(`iptables-${backend} not found: install iptables`));
      const dryRun = await lab.agent(["--dry-run", "--enable-ipv6"], { env: { PATH: none } });
      assertExit(dryRun, 0, "--dry-run needs no iptables");
      match(dryRun.stdout, /^# ipv4\n\*nat\n/);

      // Only the IPv6 tools missing: named, and nothing half-applied for IPv4.
      const ipv4Only = await restrictedPath(lab.backend, lab.root, [
        lab.agentTool("ipv4", "main"),
        lab.agentTool("ipv4", "restore"),
      ]);
      for (const mode of [["--once"], ["--check"], []]) {
        const what = `${mode.join(" ") || "run"} --enable-ipv6 without ip6tables`;
        const result = await lab.agent([...mode, "--enable-ipv6"], { env: { PATH: ipv4Only } });
        assertExit(result, 1, what);
        match(result.stderr, new RegExp(`ip6tables-${backend} not found: install iptables`), what);
      }
      ok(!(await hasOurRules(lab)), "nothing written");
      await lab.writeConfig("nonMasqueradeCIDRs: [10.0.0.0/8]\n");
      const ipv4Run = await lab.agent(["--once"], { env: { PATH: ipv4Only } });
      assertExit(ipv4Run, 0, "--once for IPv4 alone needs no ip6tables");
      const cleanupIpv4 = await lab.agent(["--cleanup"], { env: { PATH: ipv4Only } });
      assertExit(cleanupIpv4, 0, "--cleanup on a node without ip6tables");
      match(
        cleanupIpv4.stderr,
        new RegExp(`cleanup \\(ipv4, ${backend}\\): removing IP-MASQ-AGENT`),
      );
      match(
        cleanupIpv4.stderr,
        new RegExp(`cleanup \\(ipv6, ${backend}\\): skipped, ip6tables-${backend} not found`),
      );
      ok(!(await hasOurRules(lab)), "cleaned up");
    });
  });

  netnsTest(
    `SIGTERM and SIGINT exit 0 and leave the rules, also as PID 1 (${backend})`,
    async () => {
      await withLab(backend, "signals", async (lab) => {
        await lab.writeConfig(CONFIG);
        const cases = [
          { signal: "SIGTERM", pid1: false },
          { signal: "SIGINT", pid1: false },
          { signal: "SIGTERM", pid1: true },
        ] as const;
        for (const { signal, pid1 } of cases) {
          const what = `${signal}${pid1 ? " as PID 1" : ""}`;
          assertExit(await lab.agent(["--cleanup"]), 0, "--cleanup between cases");
          const agent = await lab.start(["--enable-ipv6", "--resync-interval=3600"], { pid1 });
          try {
            await agent.waitForLog(/rules written \(ipv6\)/, 30_000);
            await agent.signalAgent(signal);
            const result = await agent.wait();
            assertExit(result, 0, what);
            match(
              result.stderr,
              new RegExp(`received ${signal}; exiting and leaving the rules in place`),
            );
            ok(await hasOurRules(lab), `${what}: rules left in place`);
          } finally {
            agent.kill("SIGKILL");
            await agent.wait();
          }
        }
      });
    },
  );
}

netnsTest("usage errors exit 2 before touching anything", async () => {
  await withLab("nft", "usage", async (lab) => {
    for (
      const args of [["--once", "--no-such-flag"], ["--once", "stray-argument"], [
        "--masq-chain=POSTROUTING",
        "--once",
      ]]
    ) {
      const result = await lab.agent(args);
      assertExit(result, 2, args.join(" "));
      ok(result.stderr.length > 0, "says why");
    }
    equal((await lab.tools.calls()).length, 0, "no iptables tool was run");
  });
});
