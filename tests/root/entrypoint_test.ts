/**
 * Entry-point behaviour that only the real process shows: the production
 * permission set denying a config directory outside /etc/config, iptables
 * tools missing from PATH, usage errors, and signals (also as PID 1). Each
 * case runs `deno task start`'s command line in its own network namespace.
 */

import { deepEqual, equal, match, ok } from "node:assert/strict";
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

for (const backend of backends) {
  netnsTest(
    `settings in the ConfigMap shape the rules, and --check with no flag agrees (${backend})`,
    async () => {
      // Issue 15 item 8: the readiness probe reads the same config directory as the agent, so
      // a setting kept there cannot make the two disagree, as a flag in args alone did.
      await withLab(backend, "settings", async (lab) => {
        const config = (ports: string) =>
          "nonMasqueradeCIDRs: [10.0.0.0/8, fd00::/8]\n" +
          `masqChain: MY-MASQ\nrandomFully: false\ntoPorts: ${ports}\nenableIPv6: true\n`;
        await lab.writeConfig(config("1024-65535"));
        assertExit(await lab.agent(["--once"]), 0, "--once with the settings in the config");
        for (const family of families) {
          const rules = ruleLines(await lab.save(family));
          ok(!rules.some((line) => line.includes(CHAIN)), `${family}: no ${CHAIN}:\n${rules}`);
          const masquerade = rules.filter((line) =>
            line.startsWith("-A MY-MASQ") && / -j MASQUERADE/.test(line)
          );
          deepEqual(
            masquerade.map((line) => line.replace(/^.* -j MASQUERADE/, "MASQUERADE")),
            [...Array(3).fill("MASQUERADE --to-ports 1024-65535"), "MASQUERADE"],
            `${family}: tcp, udp, sctp, then the rest; no --random-fully:\n${rules.join("\n")}`,
          );
          ok(
            rules.some((line) =>
              line.includes(family === "ipv4" ? "-d 10.0.0.0/8" : "-d fd00::/8")
            ),
          );
        }
        const probe = await lab.agent(["--check"]);
        assertExit(probe, 0, "--check without repeating any setting");
        match(probe.stdout, /in sync: ipv4, ipv6/);

        // A flag that disagrees with a key is refused by both, naming the flag and the key.
        for (const mode of [["--check"], ["--once"], ["--dry-run"]]) {
          const conflict = await lab.agent([...mode, "--to-ports=2000-3000"]);
          assertExit(conflict, 2, `${mode} --to-ports against the key`);
          match(
            conflict.stderr,
            /ip-masq-agent:4:\d+: toPorts: is "1024-65535" but --to-ports=2000-3000 on the command line/,
          );
        }

        // The ConfigMap changes: the probe sees the drift, a running agent restarts for it.
        const agent = await lab.start(["--resync-interval=3600"]);
        try {
          await agent.waitForLog(/desired ipv6 rules/, 30_000);
          await lab.writeConfig(config("1024-30000"));
          const result = await agent.wait();
          assertExit(result, 1, "the agent after a setting changed");
          match(
            result.stderr,
            /^W.*the configuration changed toPorts, which the agent reads only at start/m,
          );
        } finally {
          agent.kill("SIGKILL");
          await agent.wait();
        }
        assertExit(await lab.agent(["--check"]), 1, "--check before the restart: drift");
        assertExit(await lab.agent(["--once"]), 0, "the restart");
        assertExit(await lab.agent(["--check"]), 0, "--check after the restart");
        assertExit(await lab.agent(["--cleanup"]), 0, "--cleanup finds MY-MASQ from the config");
        for (const family of families) {
          ok(!ruleLines(await lab.save(family)).some((line) => line.includes("MY-MASQ")));
        }
      });
    },
  );
}
