/**
 * End-to-end for issue 17 on real packets, on every dataplane and backend
 * (iptables nft, iptables legacy, nftables), in namespaces each case creates
 * and deletes (lab/topology.ts):
 *
 * - `--postrouting-jump=insert`: an exempt destination keeps the pod's source
 *   although a foreign MASQUERADE comes after our jump (iptables: our ACCEPT
 *   ends nat POSTROUTING; nftables: our identity binding at srcnat - 1 is the
 *   connection's NAT), while traffic kube-proxy marked (0x4000) to that same
 *   destination is still masqueraded by kube-proxy's rule; replies come back
 *   (every check is a full request/answer exchange);
 * - `outputAddress` / `outputAddressIPv6`: traffic arrives from that address;
 * - `outputInterface`: only what leaves by that interface is masqueraded;
 * - a conflict between files leaves the live rules byte for byte as they were,
 *   and a running agent switches keys in one transaction.
 *
 * @module
 */

import { equal, fail, match, ok } from "node:assert/strict";
import { AgentProcess, type AgentResult } from "../../lab/agent_process.ts";
import { ruleTextOf } from "../../lab/dataplanes.ts";
import {
  allRuns,
  type E2eEnv,
  e2eTest as sharedE2eTest,
  expectSeen,
  runAgent as runE2eAgent,
  writeConfig,
} from "../../lab/e2e.ts";
import { destinations as dest, pod, type Seen, target } from "../../lab/topology.ts";

function e2eTest(name: string, fn: (env: E2eEnv) => Promise<void>): void {
  sharedE2eTest(name, fn, allRuns);
}

function runAgent(env: E2eEnv, args: readonly string[], code = 0): Promise<AgentResult> {
  return runE2eAgent(env, args, { code });
}

/** One reconcile; a second must write nothing and --check must find it in sync. */
async function syncOnce(env: E2eEnv, args: readonly string[] = []): Promise<AgentResult> {
  const first = await runAgent(env, ["--once", ...args]);
  const again = await runAgent(env, ["--once", ...args]);
  ok(!/rules written|drift repaired/.test(again.stderr), `a second run wrote:\n${again.stderr}`);
  match((await runAgent(env, ["--check", ...args])).stdout, /^in sync: /m);
  return first;
}

async function nodeRun(env: E2eEnv, command: string): Promise<void> {
  await env.topology.node.exec(["sh", "-c", command], {
    check: true,
    env: { PATH: `${env.binDir}:/usr/sbin:/usr/bin:/sbin:/bin` },
  });
}

/** Everything of ours and the other tools': iptables nat of both families and our nft tables. */
async function allRules(env: E2eEnv): Promise<string> {
  const parts = [];
  for (const family of ["ipv4", "ipv6"] as const) {
    parts.push(await ruleTextOf(env.topology.node, env.binDir, "iptables", family));
    parts.push(await ruleTextOf(env.topology.node, env.binDir, "nftables", family));
  }
  // iptables-save's header and footer carry the time of the save.
  return parts.join("\n").replace(/^# .*$/gm, "");
}

e2eTest(
  "--postrouting-jump=insert: exemptions win over a later foreign MASQUERADE; kube-proxy-marked traffic is still masqueraded",
  async (env) => {
    await writeConfig(env, "nonMasqueradeCIDRs: [10.0.0.0/8, 198.51.100.0/24]\n");
    // Another tool's MASQUERADE of every pod packet, and kube-proxy's shape: mark what is to be
    // masqueraded (here: traffic to TEST-NET-2, as for a service), masquerade the mark in its
    // own chain. Both come after our jump.
    await nodeRun(
      env,
      "iptables -w -t nat -A POSTROUTING -s 10.244.0.0/16 -m comment --comment foreign -j MASQUERADE && " +
        "iptables -w -t nat -N KUBE-POSTROUTING && " +
        "iptables -w -t nat -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN && " +
        "iptables -w -t nat -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000 && " +
        "iptables -w -t nat -A KUBE-POSTROUTING -j MASQUERADE && " +
        "iptables -w -t nat -A POSTROUTING -j KUBE-POSTROUTING && " +
        `iptables -w -t mangle -A PREROUTING -d ${dest.testNet2} -j MARK --set-xmark 0x4000/0x4000`,
    );

    // append: our exemption RETURNs (or, nftables, does not bind), so the foreign rule takes it.
    await syncOnce(env);
    await expectSeen(env, {
      [dest.private]: "node",
      [dest.testNet2]: "node",
      [dest.testNet3]: "node",
    }, "append: the foreign MASQUERADE takes what we exempt");

    const insert = ["--postrouting-jump=insert"];
    await syncOnce(env, insert);
    await expectSeen(env, {
      [dest.private]: "pod",
      [dest.testNet2]: "node",
      [dest.testNet3]: "node",
    }, "insert: the exemption is final; the marked destination is kube-proxy's");
    const explained = await runAgent(env, [
      ...insert,
      `--explain=${dest.private}`,
      `--explain-source=${pod.ipv4}`,
    ]);
    match(
      explained.stdout,
      env.dataplane === "nftables"
        ? /decided by our nftables chain \(--postrouting-jump=insert\): it binds the source to itself/
        : /decided by our chain's ACCEPT rule \(--postrouting-jump=insert\)/,
    );
    match(explained.stdout, /mark 0x4000\/0x4000/);
    if (env.dataplane === "iptables") match(explained.stdout, /live \(.*\): same answer/);

    // A mark bit other than kube-proxy's: the marked traffic is ours again, and exempt.
    await syncOnce(env, [...insert, "--kube-proxy-masquerade-bit=15"]);
    await expectSeen(env, { [dest.testNet2]: "pod" }, "bit 15: 0x4000 is not left to kube-proxy");

    // Back to append: the chain and the jump (or the table's priority) change back.
    await syncOnce(env);
    await expectSeen(env, { [dest.private]: "node" }, "append again");
    await runAgent(env, ["--cleanup"]);
    ok(!/IP-MASQ-AGENT|ip-masq-agent/.test(await allRules(env)), "cleanup removed ours");
    match(await allRules(env), /foreign/, "cleanup left the foreign rule");
  },
);

e2eTest("outputAddress and outputAddressIPv6: traffic arrives from that address", async (env) => {
  await nodeRun(
    env,
    "ip addr add 192.0.2.9/24 dev n1 && ip addr add 2001:db8:ff::9/64 dev n1 nodad",
  );
  await writeConfig(
    env,
    "nonMasqueradeCIDRs: [10.0.0.0/8]\noutputAddress: 192.0.2.9\noutputAddressIPv6: '2001:db8:ff::9'\n",
  );
  const flags = ["--enable-ipv6", "--to-ports=20000-20100"];
  const first = await syncOnce(env, flags);
  match(first.stderr, /\\"outputAddress\\":\\"192\.0\.2\.9\\"/, "the change log names it");
  await expectSeen(env, {
    [dest.testNet3]: "192.0.2.9",
    [dest.doc6b]: "2001:db8:ff::9",
    [dest.private]: "pod",
  }, "SNAT to the configured addresses");
  for (
    const result of await env.topology.connect([dest.testNet3, dest.doc6b].map((a) => target(a)))
  ) {
    const port = result.answer!.sourcePort;
    ok(port >= 20000 && port <= 20100, `--to-ports kept with SNAT: ${port}`);
  }
  const dry = await runAgent(env, [...flags, "--dry-run"]);
  match(
    dry.stdout,
    env.dataplane === "nftables"
      ? /snat to 192\.0\.2\.9:20000-20100/
      : /-j SNAT --to-source 192\.0\.2\.9:20000-20100/,
  );
  match(
    dry.stdout,
    env.dataplane === "nftables"
      ? /snat to \[2001:db8:ff::9\]:20000-20100/
      : /--to-source \[2001:db8:ff::9\]:20000-20100/,
  );
  const explained = await runAgent(env, [...flags, `--explain=${dest.testNet3},${dest.doc6b}`]);
  match(
    explained.stdout,
    /SNAT to 192\.0\.2\.9 \(outputAddress at \/etc\/config\/ip-masq-agent:2:16\)/,
  );
  match(explained.stdout, /SNAT to 2001:db8:ff::9 \(outputAddressIPv6 at/);
});

e2eTest("outputInterface: only what leaves by that interface is masqueraded", async (env) => {
  // A second link node n2 (192.168.77.1) -- ext e1 (192.168.77.2); TEST-NET-3 is routed over it.
  const ext = env.topology.ext;
  await nodeRun(
    env,
    `ip link add n2 index 14 type veth peer name e1 index 15 netns ${ext.name} && ` +
      "ip addr add 192.168.77.1/24 dev n2 && ip link set n2 up && " +
      `ip route add ${dest.testNet3}/32 via 192.168.77.2`,
  );
  await ext.exec([
    "sh",
    "-c",
    "ip addr add 192.168.77.2/24 dev e1 && ip link set e1 up && " +
    `ip route add ${pod.ipv4}/32 via 192.168.77.1`,
  ], { check: true });
  await waitUntilReachable(env);

  await writeConfig(env, "nonMasqueradeCIDRs: [10.0.0.0/8]\noutputInterface: n1\n");
  await syncOnce(env);
  await expectSeen(env, {
    [dest.testNet2]: "node",
    [dest.testNet3]: "pod",
    [dest.private]: "pod",
  }, "masquerade only by n1; n2 keeps the pod source");

  await writeConfig(env, "nonMasqueradeCIDRs: [10.0.0.0/8]\noutputInterface: n+\n");
  await syncOnce(env);
  await expectSeen(env, {
    [dest.testNet2]: "node",
    [dest.testNet3]: "192.168.77.1",
  }, "n+ matches both links");
  const dry = await runAgent(env, ["--dry-run"]);
  match(
    dry.stdout,
    env.dataplane === "nftables" ? /oifname "n\*" masquerade/ : / -o n\+ -m comment/,
  );
});

/** Until both ends report the new link up, the kernel drops what is sent over it. */
async function waitUntilReachable(env: E2eEnv): Promise<void> {
  for (let i = 0; i < 250; i++) {
    const states = [];
    for (const [ns, name] of [[env.topology.node, "n2"], [env.topology.ext, "e1"]] as const) {
      states.push((await ns.exec(["cat", `/sys/class/net/${name}/operstate`])).stdout.trim());
    }
    if (states.every((state) => state === "up")) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  fail("the second link does not come up");
}

e2eTest(
  "conflicting outputAddress or outputInterface across files leave the live rules byte-identical",
  async (env) => {
    await writeConfig(env, "nonMasqueradeCIDRs: [10.0.0.0/8]\noutputInterface: n1\n");
    await syncOnce(env, ["--enable-ipv6"]);
    const before = await allRules(env);
    await writeConfig(env, "outputAddress: 192.0.2.9\noutputInterface: n1\n", "ip-masq-b");
    await writeConfig(env, "outputAddress: 192.0.2.10\noutputInterface: n2\n", "ip-masq-c");
    const rejected = await runAgent(env, ["--once", "--enable-ipv6"], 2);
    match(
      rejected.stderr,
      /ip-masq-c:1:16: outputAddress: outputAddress is 192\.0\.2\.10 here but 192\.0\.2\.9 at \/etc\/config\/ip-masq-b:1:16/,
    );
    match(
      rejected.stderr,
      /ip-masq-c:2:18: outputInterface: outputInterface is n2 here but n1 at \/etc\/config\/ip-masq-agent:2:18/,
    );
    match(rejected.stderr, /the live rules were left unchanged/);
    equal(await allRules(env), before, "a rejected config changes nothing");
    await runAgent(env, ["--check", "--enable-ipv6"], 2);
    equal(await allRules(env), before);
  },
);

e2eTest(
  "a running agent applies the new keys on a config change, in one transaction",
  async (env) => {
    await nodeRun(env, "ip addr add 192.0.2.9/24 dev n1");
    await writeConfig(env, "nonMasqueradeCIDRs: [10.0.0.0/8]\n");
    const agent = await AgentProcess.start({
      ns: env.topology.node,
      binDir: env.binDir,
      configDir: env.configDir,
      args: [`--dataplane=${env.dataplane}`, "--resync-interval=3600", "--postrouting-jump=insert"],
    });
    try {
      await agent.waitForLog(/rules written \(ipv4\)/);
      await expectSeen(env, { [dest.testNet3]: "node", [dest.private]: "pod" }, "initial");
      const writes = (agent.stderr.match(/rules written \(ipv4\)/g) ?? []).length;
      await writeConfig(env, "nonMasqueradeCIDRs: [10.0.0.0/8]\noutputAddress: 192.0.2.9\n");
      let seen: Record<string, Seen> = {};
      for (let i = 0; i < 100; i++) {
        seen = await env.topology.sourcesSeen([dest.testNet3]);
        ok(
          seen[dest.testNet3] === "node" || seen[dest.testNet3] === "192.0.2.9",
          JSON.stringify(seen),
        );
        if (seen[dest.testNet3] === "192.0.2.9") break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      equal(seen[dest.testNet3], "192.0.2.9", agent.stderr);
      await agent.waitForLog(/\\"outputAddress\\":\\"192\.0\.2\.9\\"/);
      equal(
        (agent.stderr.match(/rules written \(ipv4\)/g) ?? []).length,
        writes + 1,
        `one write for the change:\n${agent.stderr}`,
      );
    } finally {
      await agent.signalAgent("SIGTERM");
      await agent.wait();
    }
  },
);
