/**
 * End-to-end for issue 12 on real packets: `masqueradeCIDRs` exceptions
 * inside a non-masquerade range, `nonMasqueradeSrcCIDRs`, and
 * `--postrouting-jump=insert` winning over another tool's MASQUERADE that
 * sits before our jump; and `--explain`'s answer (config and live) against
 * what the ext namespace actually sees, for every destination of the
 * topology (lab/topology.ts). Each case runs on the nft and the legacy
 * backend, in namespaces it creates and deletes.
 *
 * Conntrack remembers a connection's NAT decision, and every check opens
 * fresh connections, so a rule change shows in the next check.
 *
 * @module
 */

import { deepStrictEqual, equal, match, ok } from "node:assert/strict";
import type { AgentResult } from "../../lab/agent_process.ts";
import {
  type E2eEnv,
  e2eTest as sharedE2eTest,
  expectSeen,
  iptablesRuns,
  runAgent as runE2eAgent,
  writeConfig,
} from "../../lab/e2e.ts";
import { saveNat } from "../../lab/netns.ts";
import { destinations as dest, pod, seenAs, target } from "../../lab/topology.ts";

type Env = E2eEnv;

/** The iptables dataplane only: --postrouting-jump and the live explain read iptables. */
function e2eTest(name: string, fn: (env: Env) => Promise<void>): void {
  sharedE2eTest(name, fn, iptablesRuns);
}

/** Runs the agent and asserts its exit `code`. */
function runAgent(env: Env, args: readonly string[], code = 0): Promise<AgentResult> {
  return runE2eAgent(env, args, { code });
}

/** One reconcile; then a second must find everything in sync (the rendered text reads back). */
async function syncOnce(env: Env, args: readonly string[] = []): Promise<AgentResult> {
  const first = await runAgent(env, ["--once", ...args]);
  const again = await runAgent(env, ["--once", ...args]);
  ok(!/rules written|drift repaired/.test(again.stderr), `a second run wrote:\n${again.stderr}`);
  const check = await runAgent(env, ["--check", ...args]);
  match(check.stdout, /^in sync: /m);
  return first;
}

async function ipt(env: Env, args: readonly string[]): Promise<void> {
  await env.topology.node.exec([`${env.binDir}/iptables`, "-w", ...args], { check: true });
}

const foreignMasquerade = [
  "-s",
  "10.244.0.0/16",
  "-m",
  "comment",
  "--comment",
  "foreign CNI",
  "-j",
  "MASQUERADE",
];
const foreignAccept = [
  "-d",
  "198.51.100.0/24",
  "-m",
  "comment",
  "--comment",
  "foreign bypass",
  "-j",
  "ACCEPT",
];

e2eTest("a masqueradeCIDRs exception inside a non-masquerade range is masqueraded", async (env) => {
  await writeConfig(
    env,
    "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - 198.51.100.0/24\nmasqueradeCIDRs:\n  - 10.99.0.0/16\n",
  );
  // --to-ports shapes the exception's rules too: a steady second run proves they read back.
  await syncOnce(env, ["--to-ports=20000-29999"]);
  await expectSeen(env, {
    [dest.private]: "node",
    [dest.testNet2]: "pod",
    [dest.testNet3]: "node",
    [dest.linkLocal]: "pod",
  }, "10.99.0.0/16 is an exception inside 10.0.0.0/8");

  // Nested again: a RETURN inside the exception, and an exception inside TEST-NET-2's RETURN.
  await writeConfig(
    env,
    "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - 198.51.100.0/24\n  - 10.99.0.0/24\n" +
      "masqueradeCIDRs:\n  - 10.99.0.0/16\n  - 198.51.100.10/32\n",
  );
  await syncOnce(env);
  await expectSeen(env, {
    [dest.private]: "pod",
    [dest.testNet2]: "node",
    [dest.testNet3]: "node",
  }, "10.99.0.0/24 RETURN inside the 10.99.0.0/16 exception; 198.51.100.10/32 exception");
});

e2eTest("nonMasqueradeSrcCIDRs: traffic from those pods is never masqueraded", async (env) => {
  await writeConfig(
    env,
    "nonMasqueradeCIDRs: [10.0.0.0/8]\nnonMasqueradeSrcCIDRs: [10.244.1.0/24]\n",
  );
  await syncOnce(env, ["--enable-ipv6"]);
  await expectSeen(env, {
    [dest.testNet2]: "pod",
    [dest.testNet3]: "pod",
    [dest.shared]: "pod",
    [dest.doc6b]: "node",
  }, `the pod ${pod.ipv4} is in 10.244.1.0/24; IPv6 has no source exemption`);

  await writeConfig(
    env,
    "nonMasqueradeCIDRs: [10.0.0.0/8]\nnonMasqueradeSrcCIDRs: [10.244.2.0/24, fd00:244::/64]\n",
  );
  await syncOnce(env, ["--enable-ipv6"]);
  await expectSeen(env, {
    [dest.testNet2]: "node",
    [dest.private]: "pod",
    [dest.doc6b]: "pod",
  }, "another IPv4 pod range; the IPv6 pod range exempt");
});

/**
 * What `insert` wins. In insert mode our exemptions ACCEPT (issue 17), which ends nat
 * POSTROUTING, so a foreign MASQUERADE after our jump no longer applies to a destination we
 * exempt (asserted below, and --explain says so). And every destination we masquerade: our
 * MASQUERADE (with our --to-ports and --random-fully) decides before the foreign one, and a
 * foreign ACCEPT or RETURN before our jump no longer keeps the source of traffic we masquerade.
 */
e2eTest(
  "--postrouting-jump=insert wins over a foreign MASQUERADE appended before our jump",
  async (env) => {
    await writeConfig(env, "nonMasqueradeCIDRs: [10.0.0.0/8]\n");
    const toPorts = { first: 20000, last: 20100 };
    const flags = [`--to-ports=${toPorts.first}-${toPorts.last}`];
    // Other tools were there first: their rules precede our appended jump and decide.
    await ipt(env, ["-t", "nat", "-A", "POSTROUTING", ...foreignMasquerade]);
    await ipt(env, ["-t", "nat", "-I", "POSTROUTING", "1", ...foreignAccept]);
    await syncOnce(env, flags);
    const portsOf = async (address: string) =>
      (await env.topology.connect(Array(4).fill(target(address)))).map((result) => {
        equal(seenAs(result), "node", JSON.stringify(result));
        return result.answer!.sourcePort;
      });
    const inRange = (port: number) => port >= toPorts.first && port <= toPorts.last;
    ok(
      (await portsOf(dest.testNet3)).every((port) => !inRange(port)),
      "append: the foreign MASQUERADE decides",
    );
    await expectSeen(
      env,
      { [dest.testNet2]: "pod" },
      "append: the foreign ACCEPT keeps the source",
    );
    const explained = await runAgent(env, [
      ...flags,
      `--explain=${dest.testNet2}`,
      `--explain-source=${pod.ipv4}`,
    ]);
    match(
      explained.stdout,
      /a POSTROUTING rule of another tool before our jump decides first: .*-j ACCEPT/,
    );

    const insert = [...flags, "--postrouting-jump=insert"];
    await runAgent(env, ["--check", ...insert], 1);
    const moved = await runAgent(env, ["--once", ...insert]);
    match(
      moved.stderr,
      /is rule 3, not first \(--postrouting-jump=insert\); moving it to first place/,
    );
    ok(
      (await portsOf(dest.testNet3)).every(inRange),
      "insert: our MASQUERADE, with our --to-ports, decides",
    );
    await expectSeen(
      env,
      { [dest.testNet2]: "node" },
      "insert: ours decides before the foreign ACCEPT",
    );
    // Issue 17: in insert mode an exemption ACCEPTs, which ends nat POSTROUTING: the foreign
    // MASQUERADE after our jump no longer takes what we exempt.
    await expectSeen(env, { [dest.private]: "pod" }, "a destination we exempt, ACCEPTed");
    const limit = await runAgent(env, [
      ...insert,
      `--explain=${dest.private}`,
      `--explain-source=${pod.ipv4}`,
    ]);
    match(limit.stdout, /decided by our chain's ACCEPT rule \(--postrouting-jump=insert\)/);
    match(limit.stdout, /live \(.*\): same answer \(keep source\)/);

    // Someone inserts another rule at the top: the next reconcile moves ours back, once.
    await ipt(env, ["-t", "nat", "-I", "POSTROUTING", "1", ...foreignAccept]);
    await expectSeen(env, { [dest.testNet2]: "pod" }, "the foreign rule is first again");
    await syncOnce(env, insert);
    await expectSeen(env, { [dest.testNet2]: "node" }, "moved back to first place");
    const postrouting = (await saveNat(env.topology.node, env.binDir)).split("\n")
      .filter((line) => line.startsWith("-A POSTROUTING "));
    match(postrouting[0], /-j IP-MASQ-AGENT$/);
    equal(postrouting.filter((line) => line.includes("foreign")).length, 3, "foreign rules kept");
  },
);

/** The verdict ext sees for each pod connection: masqueraded means the node's address. */
const seenFor = { masquerade: "node", "keep source": "pod" } as const;

e2eTest("--explain agrees with real packets for every destination of the topology", async (env) => {
  const addresses = [
    dest.testNet2,
    dest.testNet3,
    dest.shared,
    dest.private,
    dest.linkLocal,
    dest.doc6a,
    dest.doc6b,
  ];
  const configs: (string | undefined)[] = [
    undefined,
    "nonMasqueradeCIDRs: [10.0.0.0/8, 198.51.100.0/24, 2001:db8::/32]\n" +
    "masqueradeCIDRs: [10.99.0.0/16, 2001:db8:2::/48]\nmasqLinkLocal: true\n",
    "nonMasqueradeCIDRs: [0.0.0.0/0]\nmasqueradeCIDRs: [100.64.0.0/10, 203.0.113.0/24]\n" +
    "nonMasqueradeSrcCIDRs: [fd00:244::/64]\n",
  ];
  for (const config of configs) {
    await Deno.remove(`${env.configDir}/ip-masq-agent`).catch(() => {});
    if (config !== undefined) await writeConfig(env, config);
    const args = ["--enable-ipv6", `--explain=${addresses.join(",")}`, "--log-format=json"];
    // Before the agent runs: the config's answer. One run per pod address; each destination
    // takes the answer of the run whose source is of its family.
    const answers = [];
    for (const source of [pod.ipv4, pod.ipv6]) {
      const before = await runAgent(env, [...args, `--explain-source=${source}`]);
      const lines = before.stdout.trim().split("\n").map((line) => JSON.parse(line));
      equal(lines.length, addresses.length, before.stdout);
      answers.push(...lines.filter((answer) => answer.source === source));
    }
    equal(answers.length, addresses.length, JSON.stringify(answers));

    await syncOnce(env, ["--enable-ipv6"]);
    const expected = Object.fromEntries(
      answers.map((
        answer,
      ) => [answer.destination, seenFor[answer.verdict as keyof typeof seenFor]]),
    );
    await expectSeen(env, expected, `--explain's answers for ${config ?? "(no config file)"}`);

    // After: the live rules must be read as giving the same answer for each.
    for (const family of [pod.ipv4, pod.ipv6]) {
      const after = await runAgent(env, [...args, `--explain-source=${family}`]);
      for (const line of after.stdout.trim().split("\n")) {
        const answer = JSON.parse(line);
        if (answer.source === undefined) continue; // the other family's source does not apply
        equal(answer.live.status, "agrees", `${config}: ${line}`);
      }
    }
  }
});

/**
 * The nftables dataplane renders the same decision from the same DesiredChain fields: the
 * explain answers (its live part read through that dataplane's planner) against real packets.
 */
e2eTest(
  "--dataplane=nftables: exceptions, source exemptions and --explain on real packets",
  async (env) => {
    const addresses = [dest.testNet2, dest.testNet3, dest.shared, dest.private, dest.linkLocal];
    await writeConfig(
      env,
      "nonMasqueradeCIDRs: [10.0.0.0/8, 198.51.100.0/24, 100.64.0.10/32]\n" +
        "masqueradeCIDRs: [10.99.0.0/16, 100.64.0.0/10]\nnonMasqueradeSrcCIDRs: [10.245.0.0/16]\n",
    );
    const nft = ["--dataplane=nftables"];
    await syncOnce(env, nft);
    const explained = await runAgent(env, [
      ...nft,
      `--explain=${addresses.join(",")}`,
      `--explain-source=${pod.ipv4}`,
      "--log-format=json",
    ]);
    const answers = explained.stdout.trim().split("\n").map((line) => JSON.parse(line));
    for (const answer of answers) equal(answer.live.status, "agrees", JSON.stringify(answer));
    await expectSeen(
      env,
      Object.fromEntries(
        answers.map((
          answer,
        ) => [answer.destination, seenFor[answer.verdict as keyof typeof seenFor]]),
      ),
      "nftables dataplane against --explain",
    );
    deepStrictEqual(
      Object.fromEntries(answers.map((answer) => [answer.destination, answer.verdict])),
      {
        [dest.testNet2]: "keep source",
        [dest.testNet3]: "masquerade",
        [dest.shared]: "keep source",
        [dest.private]: "masquerade",
        [dest.linkLocal]: "keep source",
      },
    );
    await writeConfig(
      env,
      "nonMasqueradeCIDRs: [10.0.0.0/8]\nnonMasqueradeSrcCIDRs: [10.244.1.0/24]\n",
    );
    await syncOnce(env, nft);
    await expectSeen(
      env,
      { [dest.testNet3]: "pod", [dest.private]: "pod" },
      "nftables: the pod is exempt",
    );
  },
);
