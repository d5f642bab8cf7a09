/**
 * The nftables dataplane on real nftables, in namespaces made here: every
 * golden `nft -f` file loads and reads back in sync; drift (table deleted,
 * element removed, chain edited, a foreign rule or object in our table) is
 * repaired by one reconcile; a one-CIDR change writes only elements; config
 * errors leave our table byte for byte (handles included); `--check` works
 * for both dataplanes; and switching dataplanes both ways under a steady
 * stream of connections masquerades none of them wrongly.
 *
 * @module
 */

import { deepStrictEqual, equal, fail, match, ok } from "node:assert/strict";
import { AgentProcess, type AgentResult } from "../../lab/agent_process.ts";
import { listOurNftTable, nftApply } from "../../lab/dataplanes.ts";
import { netnsSkipReason, nftSkipReason, rootTest } from "../../lab/host.ts";
import { backendBin, NetNs, saveNat } from "../../lab/netns.ts";
import {
  destinations as dest,
  type Seen,
  type Topology,
  withTopology,
} from "../../lab/topology.ts";
import { defaultFlags } from "../../lib/settings/flags.ts";
import { desiredChains, loadConfig } from "../../lib/policy/desired.ts";
import { parseNftTable } from "../../lib/nftables/parse.ts";
import { planNftReconcile } from "../../lib/nftables/plan.ts";
import { nftDesired } from "../../lib/nftables/render.ts";
import type { ConfigDirContents } from "../../lib/config/directory.ts";
import { nftGoldenCases } from "../support/nft_goldens.ts";

function nftTest(name: string, fn: () => Promise<void>): void {
  rootTest({ name, skipReason: netnsSkipReason ?? nftSkipReason, fn });
}

interface Bench {
  readonly ns: NetNs;
  readonly binDir: string;
  readonly configDir: string;
}

async function withBench(fn: (bench: Bench) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "imt-nft-" });
  const ns = await NetNs.create("nft");
  try {
    const binDir = await backendBin("nft", root);
    const configDir = `${root}/config`;
    await Deno.mkdir(configDir);
    await fn({ ns, binDir, configDir });
  } finally {
    await ns.dispose();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

function describe(result: AgentResult): string {
  return `exit ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
}

async function agent(
  bench: { ns: NetNs; binDir: string; configDir: string },
  args: readonly string[],
  code = 0,
): Promise<AgentResult> {
  const result = await AgentProcess.run({
    ns: bench.ns,
    binDir: bench.binDir,
    configDir: bench.configDir,
    args,
  });
  equal(result.code, code, `agent ${args.join(" ")}: ${describe(result)}`);
  return result;
}

const once = ["--once", "--dataplane=nftables"];

nftTest("every golden nft file loads into nft and reads back in sync", async () => {
  const encoder = new TextEncoder();
  await withBench(async ({ ns }) => {
    for (const golden of nftGoldenCases) {
      const flags = { ...defaultFlags, ...golden.flags };
      const contents: ConfigDirContents = Object.keys(golden.files).length === 0
        ? { kind: "missing" }
        : {
          kind: "files",
          files: Object.entries(golden.files).map(([name, text]) => ({
            path: `/etc/config/${name}`,
            bytes: encoder.encode(text),
          })),
        };
      const chains = desiredChains(loadConfig(contents, flags).effective, flags, {
        ipv4: true,
        ipv6: true,
      });
      for (const chain of chains) {
        const name = golden.goldens[chain.family]!;
        const text = await Deno.readTextFile(new URL(`../golden/${name}`, import.meta.url));
        await nftApply(ns, text);
        const listing = await listOurNftTable(ns, chain.family, { json: true });
        ok(listing !== null, name);
        const plan = planNftReconcile(nftDesired(chain), parseNftTable(listing, chain.family));
        deepStrictEqual(plan, { drift: [], payload: null }, `${name}:\n${listing}`);
        await nftApply(
          ns,
          `delete table ${chain.family === "ipv4" ? "ip" : "ip6"} ip-masq-agent\n`,
        );
      }
    }
  });
});

const cidrs = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"];
const configText = `nonMasqueradeCIDRs: [${cidrs.join(", ")}]\n`;

const driftCases: { name: string; payload: string; message: RegExp }[] = [
  {
    name: "the table deleted",
    payload: "delete table ip ip-masq-agent\n",
    message: /table ip ip-masq-agent does not exist/,
  },
  {
    name: "an element removed",
    payload: "delete element ip ip-masq-agent nonmasq-dst { 100.64.0.0/10 }\n",
    message: /set nonmasq-dst differs \(1 missing: 100\.64\.0\.0\/10\)/,
  },
  {
    name: "an element added",
    payload: "add element ip ip-masq-agent nonmasq-dst { 198.51.100.0/24 }\n",
    message: /1 unexpected: 198\.51\.100\.0\/24/,
  },
  {
    name: "the chain flushed and a rule put back",
    payload: "flush chain ip ip-masq-agent postrouting\n" +
      "add rule ip ip-masq-agent postrouting masquerade\n",
    message: /chain postrouting: 4 missing: .*1 unexpected: "masquerade"/,
  },
  {
    name: "a foreign rule inserted into our chain",
    payload: "insert rule ip ip-masq-agent postrouting ip daddr 203.0.113.0/24 accept\n",
    message: /1 unexpected: "ip daddr 203\.0\.113\.0\/24 <\\"accept\\">"/,
  },
  {
    name: "a foreign chain, set and rule with a comment in our table",
    payload: "add chain ip ip-masq-agent extra\n" +
      "add set ip ip-masq-agent bag { type ipv4_addr; }\n" +
      'add rule ip ip-masq-agent postrouting counter comment "\\u001b[31mgotcha"\n',
    message: /unexpected chain "extra"/,
  },
  {
    name: "the chain's priority changed",
    payload: "delete chain ip ip-masq-agent postrouting\n" +
      "add chain ip ip-masq-agent postrouting { type nat hook postrouting priority 50; }\n",
    message: /not a nat postrouting srcnat chain/,
  },
];

for (const { name, payload, message } of driftCases) {
  nftTest(`drift repaired by one reconcile on real nft: ${name}`, async () => {
    await withBench(async (bench) => {
      await Deno.writeTextFile(`${bench.configDir}/ip-masq-agent`, configText);
      await agent(bench, once);
      const applied = await listOurNftTable(bench.ns, "ipv4");
      ok(applied !== null);
      await nftApply(bench.ns, payload);
      notEqualText(await listOurNftTable(bench.ns, "ipv4"), applied, "the edit took");
      const repaired = await agent(bench, once);
      match(repaired.stderr, /rules written \(ipv4\): /);
      match(repaired.stderr, message);
      equal(
        await listOurNftTable(bench.ns, "ipv4"),
        applied,
        "repaired to exactly the desired table",
      );
      const steady = await agent(bench, once);
      ok(!/rules written/.test(steady.stderr), `nothing more to write:\n${steady.stderr}`);
      await agent(bench, ["--check", "--dataplane=nftables"]);
    });
  });
}

function notEqualText(actual: string | null, expected: string, what: string) {
  ok(actual !== expected, `${what}:\n${actual}`);
}

nftTest(
  "a one-CIDR change writes only that element, keeping the rest and the handles",
  async () => {
    await withBench(async (bench) => {
      await Deno.writeTextFile(`${bench.configDir}/ip-masq-agent`, configText);
      await agent(bench, once);
      const before = JSON.parse((await listOurNftTable(bench.ns, "ipv4", { json: true }))!);
      await Deno.writeTextFile(
        `${bench.configDir}/ip-masq-agent`,
        `nonMasqueradeCIDRs: [${[...cidrs, "198.51.100.0/24"].join(", ")}]\n`,
      );
      const changed = await agent(bench, once);
      match(changed.stderr, /set nonmasq-dst differs \(1 missing: 198\.51\.100\.0\/24\)/);
      const after = JSON.parse((await listOurNftTable(bench.ns, "ipv4", { json: true }))!);
      const handles = (listing: { nftables: Record<string, { handle?: number }>[] }) =>
        listing.nftables.flatMap((entry) => Object.values(entry).map((body) => body.handle));
      deepStrictEqual(handles(after), handles(before), "no object was recreated");
    });
  },
);

const badConfigs = [
  "nonMasqueradeCIDRs: [10.0.0.1/8]\n",
  "nonMasqueradeCIRDs: [10.0.0.0/8]\n",
  "nonMasqueradeCIDRs: ['10.0.0.0/8 } ; flush ruleset ; #']\n",
  "nonMasqueradeCIDRs: [2001:db8::/32]\n",
  `nonMasqueradeCIDRs: [${Array.from({ length: 70 }, (_, i) => `10.${i}.0.0/16`).join(", ")}]\n`,
];

nftTest("config errors exit 2 and leave our table byte for byte, handles included", async () => {
  await withBench(async (bench) => {
    await Deno.writeTextFile(`${bench.configDir}/ip-masq-agent`, configText);
    await agent(bench, [...once, "--enable-ipv6"]);
    const before = [
      await listOurNftTable(bench.ns, "ipv4", { json: true }),
      await listOurNftTable(bench.ns, "ipv6", { json: true }),
    ];
    for (const bad of badConfigs) {
      await Deno.writeTextFile(`${bench.configDir}/ip-masq-agent`, bad);
      await agent(bench, once, 2);
      await agent(bench, ["--check", "--dataplane=nftables"], 2);
      deepStrictEqual(
        [
          await listOurNftTable(bench.ns, "ipv4", { json: true }),
          await listOurNftTable(bench.ns, "ipv6", { json: true }),
        ],
        before,
        bad,
      );
    }
  });
});

nftTest("--check and --cleanup see both dataplanes", async () => {
  await withBench(async (bench) => {
    await agent(bench, once);
    await agent(bench, ["--check", "--dataplane=nftables"]);
    const iptablesCheck = await agent(bench, ["--check", "--dataplane=iptables"], 1);
    match(iptablesCheck.stdout, /ipv4: POSTROUTING has no jump to IP-MASQ-AGENT/);
    // Read-only: what is there, and what the agent would do (issue 15).
    match(
      iptablesCheck.stdout,
      /ipv4: nftables: table ip ip-masq-agent is left over; the agent would remove it/,
    );
    await agent(bench, ["--once", "--dataplane=iptables"]);
    equal(await listOurNftTable(bench.ns, "ipv4"), null, "switching removed our nft table");
    await agent(bench, ["--check", "--dataplane=iptables"]);
    // Both at once (as a half-finished switch would leave them), then --cleanup removes both.
    await nftApply(
      bench.ns,
      await Deno.readTextFile(new URL("../golden/nft-default-ipv4.nft", import.meta.url)),
    );
    await agent(bench, ["--cleanup"]);
    equal(await listOurNftTable(bench.ns, "ipv4"), null);
    ok(!(await saveNat(bench.ns, bench.binDir)).includes("IP-MASQ-AGENT"));
  });
});

// --- switching under a steady stream of connections

/** Connects pod → `masqueraded` and pod → `exempt` in a loop until stopped; every answer kept. */
function stream(topology: Topology, masqueraded: string, exempt: string) {
  const seen: { address: string; seen: Seen }[] = [];
  let stopped = false;
  const done = (async () => {
    while (!stopped) {
      const batch = await topology.sourcesSeen([masqueraded, exempt, masqueraded, exempt]);
      const addresses = [masqueraded, exempt, masqueraded, exempt];
      // sourcesSeen keys by address; re-read each result of the batch by position.
      for (const address of addresses) seen.push({ address, seen: batch[address] });
    }
  })();
  return {
    seen,
    async stop() {
      stopped = true;
      await done;
    },
  };
}

async function waitFor(what: string, predicate: () => Promise<boolean>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

for (const [from, to] of [["iptables", "nftables"], ["nftables", "iptables"]] as const) {
  nftTest(
    `switching ${from} → ${to} on a running node masquerades no connection wrongly`,
    async () => {
      const root = await Deno.makeTempDir({ prefix: "imt-switch-" });
      try {
        const binDir = await backendBin("nft", root);
        const configDir = `${root}/config`;
        await Deno.mkdir(configDir);
        await Deno.writeTextFile(
          `${configDir}/ip-masq-agent`,
          "nonMasqueradeCIDRs: [10.0.0.0/8]\n",
        );
        await withTopology(async (topology) => {
          const start = (dataplane: string) =>
            AgentProcess.start({
              ns: topology.node,
              binDir,
              configDir,
              args: [`--dataplane=${dataplane}`, "--resync-interval=3600"],
            });
          const first = await start(from);
          await first.waitForLog(/rules written \(ipv4\)/);
          const connections = stream(topology, dest.testNet2, dest.private);
          try {
            await waitFor(
              "connections under the first dataplane",
              () => Promise.resolve(connections.seen.length >= 8),
            );
            // A DaemonSet rollout: the old pod stops (leaving its rules), the new one starts.
            first.kill("SIGTERM");
            equal((await first.wait()).code, 0);
            const before = connections.seen.length;
            const second = await start(to);
            try {
              await second.waitForLog(/rules written \(ipv4\)/);
              match(
                second.stderr,
                from === "iptables"
                  ? /iptables \(nft\): removing IP-MASQ-AGENT/
                  : /nftables: removing table ip ip-masq-agent/,
              );
              await waitFor(
                "connections under the new dataplane",
                () => Promise.resolve(connections.seen.length >= before + 16),
              );
            } finally {
              second.kill("SIGTERM");
              await second.wait();
            }
          } finally {
            await connections.stop();
          }
          const wrong = connections.seen.filter(({ address, seen }) =>
            seen !== (address === dest.private ? "pod" : "node")
          );
          deepStrictEqual(wrong, [], `${connections.seen.length} connections`);
          ok(connections.seen.length >= 24);
          const leftovers = to === "nftables"
            ? (await saveNat(topology.node, binDir)).includes("IP-MASQ-AGENT")
            : (await listOurNftTable(topology.node, "ipv4")) !== null;
          ok(!leftovers, `no rules of ours left in the ${from} dataplane`);
        });
      } finally {
        await Deno.remove(root, { recursive: true }).catch(() => {});
      }
    },
  );
}

nftTest(
  "masqueradeCIDRs and nonMasqueradeSrcCIDRs (issue 12) render as intervals that read back in sync",
  async () => {
    await withBench(async (bench) => {
      await Deno.writeTextFile(
        `${bench.configDir}/ip-masq-agent`,
        "nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqueradeCIDRs: [10.1.0.0/16]\n" +
          "nonMasqueradeSrcCIDRs: [10.244.0.0/16]\n",
      );
      await agent(bench, once);
      const listing = (await listOurNftTable(bench.ns, "ipv4"))!;
      match(listing, /10\.2\.0\.0-10\.255\.255\.255/);
      match(listing, /ip saddr @nonmasq-src return/);
      const steady = await agent(bench, once);
      ok(!/rules written/.test(steady.stderr), `in sync:\n${steady.stderr}`);
      await agent(bench, ["--check", "--dataplane=nftables"]);
    });
  },
);
