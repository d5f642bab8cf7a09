/**
 * End-to-end: real TCP connections from a pod namespace cross a node
 * namespace running the real agent (`deno task start`'s command line, the
 * production permission set, /etc/config bind-mounted) to servers in an ext
 * namespace that answer with the source address and port they saw. Each case
 * asserts that answer: the node's ext-facing address means masqueraded, the
 * pod's own address means not. Every case runs for the iptables dataplane on
 * the nft and the legacy backend, and for the nftables dataplane, each in
 * namespaces it creates and deletes.
 *
 * Conntrack remembers the NAT decision of a connection, so every check opens
 * fresh connections (each from a new source port) after a rule change.
 *
 * @module
 */

import { deepStrictEqual, equal, fail, match, ok } from "node:assert/strict";
import { AgentProcess } from "../../lab/agent_process.ts";
import { saveNat } from "../../lab/netns.ts";
import { listOurNftTable, ruleTextOf } from "../../lab/dataplanes.ts";
import {
  describeResult as describe,
  type E2eEnv,
  e2eTest,
  expectSeen,
  runAgent,
  writeConfig as writeNamedConfig,
} from "../../lab/e2e.ts";
import type { ConnectResult } from "../../lab/source_echo_server.ts";
import {
  destinations as dest,
  extLinkLocalFromNode,
  nodeExt,
  type Seen,
  seenAs,
  target,
} from "../../lab/topology.ts";
import { upstreamChain, upstreamMasqueradeComment } from "../support/upstream_rules.ts";

const chain = upstreamChain;
const masqueradeComment = `"${upstreamMasqueradeComment}"`;
const toPorts = { first: 20000, last: 20100 };

type Env = E2eEnv;

/** This file names each file it writes: several cases merge files. */
const writeConfig = (env: Env, name: string, text: string) => writeNamedConfig(env, text, name);

function syncOnce(env: Env, args: readonly string[] = [], options: { config?: boolean } = {}) {
  return runAgent(env, ["--once", ...args], options);
}

function inRange(port: number, ranges: readonly { first: number; last: number }[]): boolean {
  return ranges.some((range) => port >= range.first && port <= range.last);
}

function answers(results: readonly ConnectResult[]) {
  return results.map((result) => {
    if (!result.answer) fail(`${result.target}: ${result.error}`);
    return result.answer;
  });
}

/** Our rules of `family` as the dataplane lists them: `iptables-save -t nat` or `nft list table`. */
function ourRules(env: Env, family: "ipv4" | "ipv6" = "ipv4"): Promise<string> {
  return ruleTextOf(env.topology.node, env.binDir, env.dataplane, family);
}

/** Whether the rules keep the pod's source for `cidr`: a RETURN rule, or an element of our set. */
function assertExempt(env: Env, rules: string, cidr: string): void {
  if (env.dataplane === "iptables") {
    ok(rules.includes(`-A ${chain} -d ${cidr} `), `${cidr}:\n${rules}`);
  } else {ok(
      new RegExp(`[{ \t]${cidr.replaceAll(".", "\\.")}[,\n }]`).test(rules),
      `${cidr}:\n${rules}`,
    );}
}

/** Whether anything of ours is in the listing. */
function hasOurRules(env: Env, rules: string): boolean {
  return env.dataplane === "iptables" ? rules.includes(chain) : rules.includes("ip-masq-agent");
}

/** The last rule: MASQUERADE (nft: masquerade), with --random-fully when asked for. */
function assertMasqueradeLast(env: Env, save: string, options: { randomFully: boolean }): void {
  if (env.dataplane === "nftables") {
    const rules = save.split("\n").map((line) => line.trim()).filter((line) => line !== "");
    equal(rules.at(-3), `masquerade${options.randomFully ? " fully-random" : ""}`, save);
    ok(rules.includes("fib daddr type local return"), save);
    return;
  }
  const rules = save.split("\n").filter((line) => line.startsWith(`-A ${chain} `));
  ok(rules.length > 0, `no ${chain} rules in:\n${save}`);
  equal(
    rules.at(-1),
    `-A ${chain} -m comment --comment ${masqueradeComment} -j MASQUERADE` +
      (options.randomFully ? " --random-fully" : ""),
    save,
  );
}

const allIpv4 = [dest.testNet2, dest.testNet3, dest.shared, dest.private, dest.linkLocal];

e2eTest(
  "with no config file, 10.0.0.0/8 keeps the pod's address and the rest is masqueraded",
  async (env) => {
    await expectSeen(
      env,
      Object.fromEntries(allIpv4.map((address) => [address, "pod"])),
      "before the agent runs nothing is masqueraded (the topology routes without NAT)",
    );
    await syncOnce(env, [], { config: false });
    await expectSeen(env, {
      [dest.testNet2]: "node",
      [dest.testNet3]: "node",
      [dest.shared]: "node",
      [dest.private]: "pod",
      [dest.linkLocal]: "pod",
    }, "defaults: RFC 1918 and link-local are not masqueraded");
    const save = await ourRules(env);
    assertMasqueradeLast(env, save, { randomFully: true });
    if (env.dataplane === "iptables") {
      match(save, /-A POSTROUTING .*-m addrtype ! --dst-type LOCAL -j IP-MASQ-AGENT/);
    }
  },
);

e2eTest(
  "a config file replaces the defaults: only its CIDRs keep the pod's address",
  async (env) => {
    await writeConfig(env, "ip-masq-agent", "nonMasqueradeCIDRs:\n  - 198.51.100.0/24\n");
    await syncOnce(env);
    await expectSeen(env, {
      [dest.testNet2]: "pod",
      [dest.private]: "node",
      [dest.testNet3]: "node",
      [dest.linkLocal]: "pod",
    }, "nonMasqueradeCIDRs: [198.51.100.0/24]; RFC 1918 is no longer exempt once a file exists");
  },
);

e2eTest("several ip-masq* files are merged; other and hidden files are ignored", async (env) => {
  await writeConfig(env, "ip-masq-agent", "nonMasqueradeCIDRs:\n  - 198.51.100.0/24\n");
  await writeConfig(
    env,
    "ip-masq-extra.json",
    JSON.stringify({ nonMasqueradeCIDRs: ["10.99.0.0/16"], masqLinkLocal: true }),
  );
  await writeConfig(env, "other-config", "nonMasqueradeCIDRs:\n  - 203.0.113.0/24\n");
  await writeConfig(env, ".ip-masq-hidden", "nonMasqueradeCIDRs:\n  - 100.64.0.0/10\n");
  await syncOnce(env);
  await expectSeen(env, {
    [dest.testNet2]: "pod",
    [dest.private]: "pod",
    [dest.testNet3]: "node",
    [dest.shared]: "node",
    [dest.linkLocal]: "node",
  }, "union of both ip-masq* files' CIDRs, masqLinkLocal ORed to true");
});

e2eTest(
  "--nomasq-all-reserved-ranges with no file keeps the pod's address for reserved ranges",
  async (env) => {
    await syncOnce(env);
    await expectSeen(
      env,
      { [dest.testNet2]: "node" },
      "without the flag, TEST-NET-2 is masqueraded",
    );
    await syncOnce(env, ["--nomasq-all-reserved-ranges"]);
    await expectSeen(
      env,
      Object.fromEntries(allIpv4.map((address) => [address, "pod"])),
      "every reserved range (and link-local) is exempt with the flag",
    );
    const save = await ourRules(env);
    assertMasqueradeLast(env, save, { randomFully: true });
    for (const cidr of ["198.51.100.0/24", "203.0.113.0/24", "100.64.0.0/10", "10.0.0.0/8"]) {
      assertExempt(env, save, cidr);
    }
  },
);

e2eTest("masqLinkLocal decides whether 169.254.0.0/16 is masqueraded", async (env) => {
  await writeConfig(env, "ip-masq-agent", "nonMasqueradeCIDRs: [10.0.0.0/8]\n");
  await syncOnce(env);
  await expectSeen(env, {
    [dest.linkLocal]: "pod",
    [dest.private]: "pod",
    [dest.testNet2]: "node",
  }, "masqLinkLocal absent: link-local is exempt");
  await writeConfig(
    env,
    "ip-masq-agent",
    "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqLinkLocal: true\n",
  );
  await syncOnce(env);
  await expectSeen(env, {
    [dest.linkLocal]: "node",
    [dest.private]: "pod",
    [dest.testNet2]: "node",
  }, "masqLinkLocal: true masquerades link-local");
});

e2eTest(
  "IPv6 with --enable-ipv6: 2001:db8:: is masqueraded by default and not when listed",
  async (env) => {
    await syncOnce(env, [], { config: false });
    await expectSeen(
      env,
      { [dest.doc6a]: "pod", [dest.testNet2]: "node" },
      "IPv6 untouched without --enable-ipv6",
    );
    ok(
      !hasOurRules(env, await ourRules(env, "ipv6")),
      "no IPv6 rules of ours without --enable-ipv6",
    );

    await syncOnce(env, ["--enable-ipv6"], { config: false });
    await expectSeen(env, {
      [dest.doc6a]: "node",
      [dest.doc6b]: "node",
      [dest.testNet2]: "node",
      [dest.private]: "pod",
    }, "defaults with --enable-ipv6: only fe80::/10 is exempt for IPv6");
    assertMasqueradeLast(env, await ourRules(env, "ipv6"), {
      randomFully: true,
    });

    await writeConfig(
      env,
      "ip-masq-agent",
      "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - 2001:db8:1::/48\n",
    );
    await syncOnce(env, ["--enable-ipv6"]);
    await expectSeen(env, {
      [dest.doc6a]: "pod",
      [dest.doc6b]: "node",
      [dest.private]: "pod",
      [dest.testNet2]: "node",
    }, "2001:db8:1::/48 listed");
  },
);

/**
 * A router never forwards to a link-local destination (the kernel looks such
 * a route up on the incoming interface only), so no pod connection can reach
 * ext's fe80:: address through the node. The node's own connections do pass
 * our POSTROUTING jump, and MASQUERADE keeps the node's (only) link-local
 * address as source, so the decision shows in the source port instead:
 * with --to-ports a masqueraded connection's port falls in the range, an
 * exempt one keeps its ephemeral port (32768-60999, outside it).
 */
e2eTest(
  "masqLinkLocalIPv6 decides whether fe80::/10 is masqueraded (node traffic, seen in the port)",
  async (env) => {
    const args = ["--enable-ipv6", `--to-ports=${toPorts.first}-${toPorts.last}`];
    const targets = [extLinkLocalFromNode, extLinkLocalFromNode, extLinkLocalFromNode].map((host) =>
      target(host)
    );
    const control = target(dest.doc6b);

    await writeConfig(env, "ip-masq-agent", "nonMasqueradeCIDRs: [10.0.0.0/8]\n");
    await syncOnce(env, args);
    const exempt = answers(await env.topology.connect([...targets, control], { from: "node" }));
    for (const answer of exempt.slice(0, -1)) {
      equal(answer.source, nodeExt.linkLocal);
      ok(!inRange(answer.sourcePort, [toPorts]), `fe80::/10 exempt, yet port ${answer.sourcePort}`);
    }
    const controlPort = exempt.at(-1)!.sourcePort;
    ok(inRange(controlPort, [toPorts]), `node traffic to 2001:db8:2:: got port ${controlPort}`);

    await writeConfig(
      env,
      "ip-masq-agent",
      "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqLinkLocalIPv6: true\n",
    );
    await syncOnce(env, args);
    const masqueraded = answers(await env.topology.connect(targets, { from: "node" }));
    for (const answer of masqueraded) {
      equal(answer.source, nodeExt.linkLocal);
      ok(inRange(answer.sourcePort, [toPorts]), `masqLinkLocalIPv6, yet port ${answer.sourcePort}`);
    }
    ok(
      !(await ourRules(env, "ipv6")).includes(
        env.dataplane === "iptables" ? "-d fe80::/10" : "fe80::/10",
      ),
      "no fe80::/10 RETURN with masqLinkLocalIPv6",
    );
  },
);

e2eTest(
  "--to-ports: masqueraded source ports fall in the ranges; --random-fully is in the rule",
  async (env) => {
    await syncOnce(env, ["--enable-ipv6", `--to-ports=${toPorts.first}-${toPorts.last}`], {
      config: false,
    });
    const masqueraded = [dest.testNet2, dest.testNet3, dest.doc6b];
    const results = await env.topology.connect(
      [...masqueraded, ...masqueraded, ...masqueraded].map((address) => target(address)),
    );
    for (const result of results) {
      equal(seenAs(result), "node", result.target);
      ok(inRange(result.answer!.sourcePort, [toPorts]), JSON.stringify(result));
    }
    deepStrictEqual(await env.topology.sourcesSeen([dest.private]), { [dest.private]: "pod" });
    for (const family of ["ipv4", "ipv6"] as const) {
      const save = await ourRules(env, family);
      for (const protocol of ["tcp", "udp", "sctp"]) {
        const rule = env.dataplane === "iptables"
          ? `-A ${chain} -p ${protocol} -m comment --comment ${masqueradeComment} ` +
            `-j MASQUERADE --to-ports ${toPorts.first}-${toPorts.last} --random-fully`
          : `meta l4proto ${protocol} masquerade to :${toPorts.first}-${toPorts.last} fully-random`;
        ok(save.includes(rule), `${family} ${protocol} --to-ports rule in:\n${save}`);
      }
      assertMasqueradeLast(env, save, { randomFully: true });
    }

    // Two ranges: each new connection picks one (statistic match), every port is in one of them.
    // Each range alone must hold all 24 connections to one destination: closed connections keep
    // their conntrack entry (TIME_WAIT), so a range smaller than that can run out of free tuples
    // and drop a SYN.
    const ranges = [{ first: 21000, last: 21049 }, { first: 22000, last: 22049 }];
    await syncOnce(env, ["--to-ports=21000-21049,22000-22049"], { config: false });
    const ports = answers(await env.topology.connect(Array(24).fill(target(dest.testNet2))))
      .map((answer) => answer.sourcePort);
    for (const port of ports) ok(inRange(port, ranges), `port ${port} outside ${ranges}`);
    // 24 connections all in one range has a probability of 2^-23.
    ok(ranges.every((range) => ports.some((port) => inRange(port, [range]))), `${ports}`);
  },
);

e2eTest("a config change applies while the agent runs, long before the resync", async (env) => {
  const file = `${env.configDir}/ip-masq-agent`;
  await Deno.writeTextFile(file, "nonMasqueradeCIDRs: [198.51.100.0/24]\n");
  const agent = await AgentProcess.start({
    ns: env.topology.node,
    binDir: env.binDir,
    configDir: env.configDir,
    args: [`--dataplane=${env.dataplane}`, "--resync-interval=3600"],
  });
  try {
    await agent.waitForLog(/rules written \(ipv4\)/);
    let current: Record<string, Seen> = {
      [dest.testNet2]: "pod",
      [dest.testNet3]: "node",
      [dest.shared]: "node",
    };
    await expectSeen(env, current, "initial file");

    /** Makes connections until ext sees `next`; each one must see the old or the new rules. */
    const changeTo = async (next: Record<string, Seen>, what: string) => {
      const started = Date.now();
      for (;;) {
        const seen = await env.topology.sourcesSeen(Object.keys(next));
        for (const [address, got] of Object.entries(seen)) {
          ok(
            got === current[address] || got === next[address],
            `${what}: ${address} seen as ${got}, neither before (${current[address]}) ` +
              `nor after (${next[address]})\n${agent.stderr}`,
          );
        }
        if (Object.entries(next).every(([address, want]) => seen[address] === want)) break;
        // The resync is an hour away, so any change seen here is the watch's doing; the bound
        // only turns a watch that never fires into a failure, generous for a loaded machine.
        if (Date.now() - started > 30_000) {
          fail(
            `${what}: not applied within 30 s; last seen ${JSON.stringify(seen)}\n${agent.stderr}`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      current = next;
    };

    await Deno.writeTextFile(file, "nonMasqueradeCIDRs: [203.0.113.0/24]\n");
    await changeTo(
      { [dest.testNet2]: "node", [dest.testNet3]: "pod", [dest.shared]: "node" },
      "file rewritten in place",
    );

    // kubelet's ConfigMap layout: the file is a symlink through ..data, which is swapped.
    await Deno.mkdir(`${env.configDir}/..v3`);
    await Deno.writeTextFile(
      `${env.configDir}/..v3/ip-masq-agent`,
      "nonMasqueradeCIDRs: [100.64.0.0/10]\n",
    );
    await Deno.symlink("..v3", `${env.configDir}/..data`);
    await Deno.symlink("..data/ip-masq-agent", `${env.configDir}/ip-masq-agent.tmp`);
    await Deno.rename(`${env.configDir}/ip-masq-agent.tmp`, file);
    await changeTo(
      { [dest.testNet2]: "node", [dest.testNet3]: "node", [dest.shared]: "pod" },
      "file replaced by a symlink through ..data",
    );

    await Deno.mkdir(`${env.configDir}/..v4`);
    await Deno.writeTextFile(
      `${env.configDir}/..v4/ip-masq-agent`,
      "nonMasqueradeCIDRs: [100.64.0.0/10, 198.51.100.0/24]\n",
    );
    await Deno.symlink("..v4", `${env.configDir}/..data_tmp`);
    await Deno.rename(`${env.configDir}/..data_tmp`, `${env.configDir}/..data`);
    await changeTo(
      { [dest.testNet2]: "pod", [dest.testNet3]: "node", [dest.shared]: "pod" },
      "..data swapped as kubelet does",
    );

    agent.kill("SIGTERM");
    const result = await agent.wait();
    equal(result.code, 0, describe(result));
  } finally {
    agent.kill("SIGKILL");
    await agent.wait();
  }
  ok(hasOurRules(env, await ourRules(env)), "rules left in place");
});

e2eTest("--cleanup returns to no masquerade for every destination", async (env) => {
  await syncOnce(env, ["--enable-ipv6"], { config: false });
  await expectSeen(env, { [dest.testNet2]: "node", [dest.doc6a]: "node" }, "agent applied");
  await runAgent(env, ["--cleanup"], { config: false });
  for (const family of ["ipv4", "ipv6"] as const) {
    const save = await saveNat(env.topology.node, env.binDir, family);
    ok(!save.includes(chain), `${family} still has our iptables rules after --cleanup:\n${save}`);
    const table = await listOurNftTable(env.topology.node, family);
    equal(table, null, `${family} still has our nft table after --cleanup`);
  }
  await expectSeen(
    env,
    Object.fromEntries([...allIpv4, dest.doc6a, dest.doc6b].map((address) => [address, "pod"])),
    "after --cleanup",
  );
});
