/**
 * Issue 15, items 1-5: the agent dropped onto a node that already has
 * kube-proxy, Docker, another ip-masq-agent and old ConfigMaps. Each case runs
 * the real entry point (`deno task start`'s command line, production
 * permissions) in its own network namespace; each failed on 5a979c9.
 */

import { deepStrictEqual, equal, match, ok } from "node:assert/strict";
import { assertExit } from "../../lab/agent_process.ts";
import { ConfigMapDir } from "../../lab/config_map.ts";
import { backends, netnsTest } from "../../lab/host.ts";
import { type Lab, withLab } from "../../lab/lab.ts";
import { ruleLines } from "../../lab/netns.ts";
import { eventually } from "../../lab/wait.ts";
import {
  upstreamChain,
  upstreamJumpLine,
  upstreamMasqueradeLine,
  upstreamReturnLine,
} from "../support/upstream_rules.ts";

const CHAIN = upstreamChain;

/** Our chain's rules for IPv4 as the real iptables saves them. */
function ourRules(cidrs: readonly string[], chain = CHAIN): string[] {
  return [...cidrs.map((cidr) => upstreamReturnLine(cidr, chain)), upstreamMasqueradeLine(chain)];
}

function chainOf(lines: readonly string[], chain: string): string[] {
  return lines.filter((line) => line.startsWith(`-A ${chain} `));
}

async function nat(lab: Lab): Promise<string[]> {
  return ruleLines(await lab.save("ipv4"));
}

const rfc1918 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

// 1. A v1 ConfigMap keeps the defaults until a file names nonMasqueradeCIDRs.
netnsTest(
  "issue 15.1: a v1 ConfigMap without nonMasqueradeCIDRs keeps the RFC 1918 defaults",
  async () => {
    await withLab("nft", "v1defaults", async (lab) => {
      const cases: { text: string; args?: string[]; want: string[] }[] = [
        { text: "masqLinkLocal: true\n", want: rfc1918 },
        { text: "", want: ["169.254.0.0/16", ...rfc1918] },
        { text: "nonMasqueradeCIDRs:\n", want: ["169.254.0.0/16", ...rfc1918] },
        {
          text: "masqLinkLocal: true\n",
          args: ["--nomasq-all-reserved-ranges"],
          want: [
            ...rfc1918,
            "100.64.0.0/10",
            "192.0.0.0/24",
            "192.0.2.0/24",
            "192.88.99.0/24",
            "198.18.0.0/15",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "240.0.0.0/4",
          ],
        },
        // Naming the key, even as [], replaces the defaults.
        { text: "nonMasqueradeCIDRs: []\nmasqLinkLocal: true\n", want: [] },
        {
          text: "nonMasqueradeCIDRs: [10.244.0.0/16]\n",
          want: ["169.254.0.0/16", "10.244.0.0/16"],
        },
      ];
      for (const { text, args = [], want } of cases) {
        await lab.writeConfig(text);
        const result = await lab.agent(["--once", ...args]);
        assertExit(result, 0, JSON.stringify(text));
        deepStrictEqual(chainOf(await nat(lab), CHAIN), ourRules(want), JSON.stringify(text));
      }
      await lab.writeConfig("masqLinkLocal: true\n");
      const run = await lab.agent(["--once"]);
      match(
        run.stderr,
        /no config file names nonMasqueradeCIDRs; the default nonMasqueradeCIDRs stand/,
      );
      const dryRun = await lab.agent(["--dry-run"]);
      match(dryRun.stdout, /-A IP-MASQ-AGENT -d 172\.16\.0\.0\/12 /);
    });
  },
);

// 2. --masq-chain never takes over another tool's chain.
const kubeProxy = [
  "*nat",
  ":KUBE-POSTROUTING - [0:0]",
  ":DOCKER - [0:0]",
  '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
  "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
  "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
  "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
  '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" ' +
  "-j MASQUERADE --random-fully",
  "-A DOCKER -i docker0 -j RETURN",
  "COMMIT",
  "",
].join("\n");

for (const backend of backends) {
  netnsTest(
    `issue 15.2: --masq-chain naming kube-proxy's or Docker's chain is refused in every mode, exit 2, nothing written (${backend})`,
    async () => {
      await withLab(backend, "foreign", async (lab) => {
        await lab.writeConfig("nonMasqueradeCIDRs: [10.0.0.0/8]\n");
        await lab.restore("ipv4", kubeProxy);
        const before = await nat(lab);
        for (
          const [chain, rule] of [
            ["KUBE-POSTROUTING", "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN"],
            ["DOCKER", "-A DOCKER -i docker0 -j RETURN"],
          ]
        ) {
          for (const mode of [["--once"], ["--check"], ["--cleanup"], [], ["--enable-ipv6"]]) {
            const what = `${mode.join(" ") || "run"} --masq-chain=${chain}`;
            const result = await lab.agent([...mode, `--masq-chain=${chain}`]);
            assertExit(result, 2, what);
            match(
              result.stderr,
              new RegExp(`refusing to use the nat chain ${chain} \\(ipv4`),
              what,
            );
            ok(result.stderr.includes(rule), `${what} names a foreign rule:\n${result.stderr}`);
            deepStrictEqual(await nat(lab), before, `${what}: the nat table is untouched`);
          }
        }
        equal(await lab.tools.count(lab.agentTool("ipv4", "restore")), 0, "no restore at all");
        equal(await lab.tools.count(lab.agentTool("ipv6", "restore")), 0, "no restore at all");
      });
    },
  );
}

// 3. Two agents: ours removes the other's chain once, then leaves it alone.
netnsTest(
  "issue 15.3: beside another ip-masq-agent: one removal, one warning, then no writes",
  async () => {
    await withLab("nft", "twoagents", async (lab) => {
      await lab.writeConfig("nonMasqueradeCIDRs: [10.0.0.0/8]\n");
      const restores = () => lab.tools.count(lab.agentTool("ipv4", "restore"));
      const listings = async () =>
        (await lab.tools.calls()).filter((call) =>
          call.startsWith(`${lab.agentTool("ipv4", "main")} -w 5 -t nat -S POSTROUTING`)
        ).length;
      // Reconciles only on SIGHUP: one at start, then each one the test asks for.
      const other = await lab.start(["--resync-interval=3600"]);
      await other.waitForLog(/rules written \(ipv4\)/, 30_000);
      const ours = await lab.start(["--resync-interval=3600", "--masq-chain=MY-MASQ"]);
      /** SIGHUP, then waits until that reconcile has listed POSTROUTING and finished. */
      const reconcile = async (agent: typeof other) => {
        const seen = await listings();
        await agent.signalAgent("SIGHUP");
        await eventually(
          "the reconcile's listing",
          async () => await listings() > seen,
          20_000,
          25,
        );
        // Reconciles run one at a time: once a second one has listed, the first has finished.
        const again = await listings();
        await agent.signalAgent("SIGHUP");
        await eventually("the next listing", async () => await listings() > again, 20_000, 25);
      };
      try {
        await ours.waitForLog(/removing IP-MASQ-AGENT, left by an earlier --masq-chain/, 30_000);
        ok(!(await nat(lab)).some((line) => line.startsWith("-A IP-MASQ-AGENT ")), "removed once");
        // The other agent puts its chain back (and removes ours once, as we did).
        await reconcile(other);
        await reconcile(ours);
        await ours.waitForLog(/another ip-masq-agent runs on this node/, 20_000);
        await reconcile(other);
        await reconcile(ours);
        const steady = await nat(lab);
        deepStrictEqual(chainOf(steady, CHAIN), ourRules(["169.254.0.0/16", "10.0.0.0/8"]));
        deepStrictEqual(
          chainOf(steady, "MY-MASQ"),
          ourRules(["169.254.0.0/16", "10.0.0.0/8"], "MY-MASQ"),
        );
        ok(
          steady.includes(upstreamJumpLine(CHAIN)) && steady.includes(upstreamJumpLine("MY-MASQ")),
        );

        const writes = await restores();
        for (let i = 0; i < 3; i++) {
          await reconcile(ours);
          await reconcile(other);
        }
        equal(await restores(), writes, "steady state: neither agent writes");
        deepStrictEqual(await nat(lab), steady);
      } finally {
        ours.kill("SIGTERM");
        other.kill("SIGTERM");
        await Promise.all([ours.wait(), other.wait()]);
      }
      const warnings = ours.stderr.split("\n").filter((line) => /another ip-masq-agent/.test(line));
      equal(warnings.length, 1, `warned once:\n${ours.stderr}`);
      match(warnings[0], /^W\d{4} /, "at Warning level");
      match(warnings[0], /the nat chain IP-MASQ-AGENT \(ipv4\) came back/);
      equal(
        ours.stderr.match(/removing IP-MASQ-AGENT/g)?.length,
        1,
        `removed once:\n${ours.stderr}`,
      );
    });
  },
);

// 4. Config reads stay inside the config directory.
netnsTest(
  "issue 15.4: an entry resolving outside the config directory is refused, its content never shown",
  async () => {
    await withLab("nft", "escape", async (lab) => {
      await lab.writeConfig("nonMasqueradeCIDRs: [10.0.0.0/8]\n");
      assertExit(await lab.agent(["--once"]), 0, "baseline");
      const before = await nat(lab);
      const secret = `${lab.root}/shadow`;
      await Deno.writeTextFile(secret, "root:*:20228:0:99999:7:::\n");
      await Deno.remove(`${lab.configDir}/ip-masq-agent`);
      await Deno.symlink(secret, `${lab.configDir}/ip-masq-agent`);
      for (const mode of [["--once"], ["--check"], ["--dry-run"], ["--explain=10.1.1.1"], []]) {
        const what = mode.join(" ") || "run";
        const result = await lab.agent(mode);
        assertExit(result, 2, what);
        match(
          result.stderr,
          /\/etc\/config\/ip-masq-agent[^\n]*outside the config directory; not read/,
          what,
        );
        ok(!/root:\*|20228/.test(result.stderr + result.stdout), `${what}: content leaked`);
      }
      deepStrictEqual(await nat(lab), before, "rules untouched");

      // kubelet's layout (ip-masq-agent -> ..data/ip-masq-agent -> ..<timestamp>/) keeps working.
      await Deno.remove(lab.configDir, { recursive: true });
      await ConfigMapDir.create(lab.configDir, {
        "ip-masq-agent": "nonMasqueradeCIDRs: [10.9.0.0/16]\n",
      });
      assertExit(await lab.agent(["--once"]), 0, "kubelet layout");
      deepStrictEqual(chainOf(await nat(lab), CHAIN), ourRules(["169.254.0.0/16", "10.9.0.0/16"]));
    });
  },
);

// 5. A file ignored for its name is warned about.
netnsTest(
  "issue 15.5: a directory holding only v1's `config` key warns, naming the file",
  async () => {
    await withLab("nft", "ignored", async (lab) => {
      await lab.writeConfig("nonMasqueradeCIDRs: [10.0.0.0/8]\n", "config");
      await lab.writeConfig("x: y\n", "..data-like-hidden");
      for (const mode of [["--once"], ["--dry-run"], ["--check"]]) {
        const what = mode.join(" ");
        const result = await lab.agent(mode);
        const warnings = result.stderr.split("\n").filter((line) => /is ignored/.test(line));
        equal(warnings.length, 1, `${what}: one warning:\n${result.stderr}`);
        match(warnings[0], /^W\d{4} .*\/etc\/config\/config is ignored: only entries whose name/);
      }
      // A running agent warns once, not at every resync.
      const agent = await lab.start(["--resync-interval=1"]);
      try {
        await agent.waitForLog(/desired ipv4 rules/, 30_000);
        const seen = (await lab.tools.calls()).length;
        await eventually(
          "two more resyncs",
          async () => (await lab.tools.calls()).length >= seen + 4,
          20_000,
          50,
        );
      } finally {
        agent.kill("SIGTERM");
        await agent.wait();
      }
      equal(agent.stderr.match(/\/etc\/config\/config is ignored/g)?.length, 1, agent.stderr);
    });
  },
);
