/**
 * The fakes against the real thing. The host tests trust FakeNatTable
 * (tests/support/fake_iptables.ts) and FakeNft (tests/support/fake_nft.ts);
 * here the same operations go, through the same client interface, to the fake
 * and to the real tools in a throwaway network namespace — iptables-nft,
 * iptables-legacy (both families) and nft — and every outcome and listing
 * must be the same: restores that succeed or fail, `-S` of the table and of
 * single chains, the agent's own plans computed from each side's listing
 * (the drift cases), quoted comments and canonical spellings.
 *
 * The real clients are lib/'s own (`natTableClient`, `nftClient`) on an
 * `Exec` that runs each tool under `ip netns exec`, so the listings are
 * exactly what the agent reads in production.
 */

import assert from "node:assert/strict";
import type { Family } from "../../lib/net/cidr.ts";
import { defaultFlags } from "../../lib/settings/flags.ts";
import { desiredChains, loadConfig } from "../../lib/policy/desired.ts";
import { parseNftTable } from "../../lib/nftables/parse.ts";
import { planNftReconcile, planNftRemoval } from "../../lib/nftables/plan.ts";
import { nftDesired, renderNftFromEmpty } from "../../lib/nftables/render.ts";
import { jumpRuleLine, renderFromEmpty } from "../../lib/iptables/render.ts";
import { type DesiredChain } from "../../lib/policy/chain.ts";
import { parseNatTable, planCleanup, planReconcile } from "../../lib/iptables/plan.ts";
import type { ConfigDirContents } from "../../lib/config/directory.ts";
import { denoExec, type Exec } from "../../lib/base/exec.ts";
import { type NatTableClient, natTableClient } from "../../lib/iptables/client.ts";
import { ToolError } from "../../lib/base/tool.ts";
import { type NftClient, nftClient } from "../../lib/nftables/client.ts";
import {
  type Backend,
  backends,
  netnsSkipReason,
  nftSkipReason,
  rootTest,
} from "../../lab/host.ts";
import { NetNs } from "../../lab/netns.ts";
import { FakeNatTable } from "../support/fake_iptables.ts";
import { FakeNft } from "../support/fake_nft.ts";
import { nftGoldenCases } from "../support/nft_goldens.ts";
import {
  upstreamChain,
  upstreamJumpLine,
  upstreamQuotedJumpLine,
  upstreamReturnComment,
  upstreamReturnLine,
} from "../support/upstream_rules.ts";

/** Runs every program inside `ns`: the real clients' view of a throwaway node. */
function execIn(ns: NetNs): Exec {
  return (command, args, options) =>
    denoExec("ip", ["netns", "exec", ns.name, command, ...args], options);
}

function nat(...lines: string[]): string {
  return ["*nat", ...lines, "COMMIT", ""].join("\n");
}

// --- iptables

/** What a restore did: applied, or failed (with the tool's words). */
async function outcome(run: Promise<void>): Promise<{ ok: boolean; message?: string }> {
  try {
    await run;
    return { ok: true };
  } catch (error) {
    if (!(error instanceof ToolError)) throw error;
    return { ok: false, message: error.message };
  }
}

/** Both sides' view after a step, to be equal. */
async function listings(client: NatTableClient, chains: readonly string[]) {
  const table = await client.listTable();
  const single: Record<string, string | null> = {};
  for (const chain of chains) single[chain] = await client.listChain(chain);
  return { table, single };
}

/** The chains whose single listing is compared after each step (besides the whole table). */
const listedChains = ["POSTROUTING", upstreamChain, "X", "NOPE"];

interface IptablesCase {
  readonly name: string;
  readonly family?: Family;
  /** Applied to both first; must succeed on both. */
  readonly seed?: string;
  /** Each restored on both sides; outcomes and listings compared after each. */
  readonly steps: readonly string[];
  /**
   * The backend that accepts the last step where the other refuses it: the fake refuses it
   * (the stricter behaviour, documented in fake_iptables.ts), so on that backend the last step
   * must succeed for real and fail in the fake, and no listing is compared after it.
   */
  readonly stricterThan?: Backend;
}

const v4 = (cidrs: readonly string[]): DesiredChain => desired("ipv4", cidrs);

function desired(family: Family, cidrs: readonly string[], randomFully = true): DesiredChain {
  const text = `nonMasqueradeCIDRs: [${cidrs.map((cidr) => `'${cidr}'`).join(", ")}]\n` +
    "masqLinkLocal: false\nmasqLinkLocalIPv6: false\n";
  const contents: ConfigDirContents = {
    kind: "files",
    files: [{ path: "/etc/config/ip-masq-agent", bytes: new TextEncoder().encode(text) }],
  };
  const flags = { ...defaultFlags, enableIpv6: true, randomFully };
  const chain = desiredChains(loadConfig(contents, flags).effective, flags, {
    ipv4: randomFully,
    ipv6: randomFully,
  }).find((candidate) => candidate.family === family);
  assert.ok(chain, `a desired ${family} chain`);
  return chain;
}

const iptablesCases: IptablesCase[] = [
  {
    name: "the agent's fresh install, then the same payload again",
    steps: [renderFromEmpty(v4(["10.0.0.0/8", "192.168.0.0/16"]))],
  },
  {
    name: "the agent's fresh install (ipv6)",
    family: "ipv6",
    steps: [renderFromEmpty(desired("ipv6", ["fd00::/8", "2001:db8::/32"]))],
  },
  {
    name: "canonical spellings: option order, masks, /0, implicit matches, probability",
    seed: nat(":X - [0:0]"),
    steps: [
      nat(
        '-A X -m comment --comment "a b" -d 10.1.2.3/8 -j RETURN',
        "-A X -d 10.1.2.3 -m comment --comment abc -j RETURN",
        "-A X -d 0.0.0.0/0 -j RETURN",
        "-A X -p TCP --dport 80 -j RETURN",
        "-A X -j RETURN -m comment --comment x",
        "-A X -m statistic --mode random --probability 0.333333333 -j RETURN",
        "-A X -d 10.0.0.0/8 -o eth0 -s 1.2.3.4 -i lo -p udp -j RETURN",
        "-A X ! -d 10.0.0.0/8 -m addrtype ! --dst-type LOCAL -j MASQUERADE --random-fully",
        "-A X -p tcp -j MASQUERADE --to-ports 1024-29999",
      ),
    ],
  },
  {
    name: "quoted comments: quotes, backslashes, apostrophes, colons, empty",
    seed: nat(":X - [0:0]"),
    steps: [
      nat(
        `-A X -m comment --comment "it's \\"q\\"" -j RETURN`,
        '-A X -m comment --comment "" -j RETURN',
        '-A X -m comment --comment "back\\\\slash" -j RETURN',
        '-A X -m comment --comment "a:b" -j RETURN',
        `-A X -m comment --comment ${JSON.stringify(upstreamReturnComment)} -j RETURN`,
      ),
    ],
  },
  {
    name: "the v2 quoted jump and the v1 jump side by side",
    seed: nat(`:${upstreamChain} - [0:0]`),
    steps: [nat(upstreamQuotedJumpLine(), upstreamJumpLine()), nat(upstreamQuotedJumpLine("X"))],
  },
  {
    name: "ipv6 addresses masked and printed as inet_ntop prints them",
    family: "ipv6",
    seed: nat(":X - [0:0]"),
    steps: [
      nat(
        "-A X -d fe80::1 -j RETURN",
        "-A X -d 2001:db8::1/32 -j RETURN",
        "-A X -d 2001:0DB8:0:0:1:0:0:0/128 -j RETURN",
        "-A X -d 1:0:2:3:4:5:6:7/128 -j RETURN",
        "-A X -d ::ffff:1.2.3.4/128 -j RETURN",
        "-A X -d ::1.2.3.4/128 -j RETURN",
        "-A X -d ::2/128 -j RETURN",
        "-A X -d ::1/128 -j RETURN",
        "-A X -d ::ffff:0:0/96 -j RETURN",
        "-A X -d 0:0:0:0:0:ffff:a00:1/128 -j RETURN",
        "-A X -d 1::/16 -j RETURN",
        "-A X -d ::/0 -j RETURN",
      ),
    ],
  },
  {
    name: "chain declarations: a user chain is created or flushed, a built-in keeps its rules",
    seed: nat(":X - [0:0]", "-A X -j RETURN", "-A X -j ACCEPT", "-A POSTROUTING -j MASQUERADE"),
    steps: [
      nat(":X - [0:0]", "-A X -j MASQUERADE"),
      nat(":POSTROUTING DROP [5:6]", ":PREROUTING - [0:0]"),
      nat(":B - [0:0]", ":A - [0:0]", "-A B -j RETURN", "-A POSTROUTING -j B"),
    ],
  },
  {
    name: "-D by spec deletes the first identical rule whatever the spelling; failures undo",
    seed: nat(":X - [0:0]", "-A X -j RETURN", "-A X -d 1.2.3.4/32 -j RETURN", "-A X -j RETURN"),
    steps: [
      nat("-D X -j RETURN"),
      nat("-D X -j RETURN -d 1.2.3.4"),
      nat(":X - [0:0]", "-A X -j MASQUERADE", "-D X -d 9.9.9.9/32 -j RETURN"),
      nat("-D X 2"),
      nat("-D NOPE -j RETURN"),
      nat("-D POSTROUTING -j NOPE"),
    ],
  },
  {
    name: "-X on a referenced, non-empty, missing or built-in chain fails; then succeeds",
    seed: nat(":X - [0:0]", "-A X -j RETURN", "-A POSTROUTING -j X"),
    steps: [
      nat("-F X", "-X X"),
      nat("-D POSTROUTING -j X", "-X X"),
      nat("-X NOPE"),
      nat("-X POSTROUTING"),
      nat("-D POSTROUTING -j X", ":X - [0:0]", "-X X"),
    ],
  },
  {
    name: "-A needs an existing chain, a known target, valid addresses",
    steps: [
      nat("-A NOPE -j RETURN"),
      nat(`-A POSTROUTING -j ${upstreamChain}`),
      nat("-A POSTROUTING -m nosuchmatch -j RETURN"),
      nat("-A POSTROUTING bogus"),
      nat("-A POSTROUTING -s 1.2.3.4 -s 1.2.3.5 -j RETURN"),
      nat("-A POSTROUTING -d 1.2.3.400/32 -j RETURN"),
      nat("-A POSTROUTING -d 1.2.3.4/33 -j RETURN"),
      nat("-A POSTROUTING -d fe80::/10 -j RETURN"),
    ],
  },
  {
    name: "-I, -R, -F, -N and -P",
    seed: nat(":X - [0:0]", "-A X -j RETURN"),
    steps: [
      nat("-I X -j ACCEPT", "-I X 3 -j DROP", "-R X 2 -j MASQUERADE"),
      nat("-I X 9 -j RETURN"),
      nat("-R X 9 -j RETURN"),
      nat("-N X"),
      nat("-P X ACCEPT"),
      nat("-F X", "-N Y", "-P OUTPUT DROP"),
      nat("-F X", "-N Y", "-P OUTPUT ACCEPT"),
    ],
  },
  {
    name: "a policy on a user chain: iptables-nft ignores it, legacy and the fake refuse it",
    seed: nat(":X - [0:0]", "-A X -j RETURN"),
    steps: [nat(":X ACCEPT [0:0]")],
    // The fake takes the stricter backend's behaviour, so what it accepts works on both.
    stricterThan: "nft",
  },
  {
    name: "chain names: 28 characters is the limit",
    steps: [nat(`:${"A".repeat(29)} - [0:0]`), nat(`:${"A".repeat(28)} - [0:0]`)],
  },
  {
    name: "the restore framing: COMMIT required, each COMMIT its own transaction",
    steps: [
      "",
      "*nat\nCOMMIT\n",
      "*nat\n:X - [0:0]\n",
      "*nat\nCOMMIT\n-A POSTROUTING -j RETURN\n",
      nat(":A - [0:0]") + nat(":B - [0:0]", "-X NOPE"),
    ],
  },
];

/** The drifts the agent tests play on the fake, each repaired by the agent's own plan. */
const jump = upstreamJumpLine();
const driftSeeds: { name: string; drift: string }[] = [
  { name: "the jump deleted", drift: nat(`-D ${jump.slice(3)}`) },
  { name: "the chain flushed", drift: nat(`-F ${upstreamChain}`) },
  {
    name: "the chain and jump deleted",
    drift: nat(`-D ${jump.slice(3)}`, `-F ${upstreamChain}`, `-X ${upstreamChain}`),
  },
  {
    name: "a rule edited",
    drift: nat(
      `-R ${upstreamChain} 2 ${
        upstreamReturnLine("10.0.0.0/16").slice(3 + upstreamChain.length + 1)
      }`,
    ),
  },
  { name: "a rule inserted", drift: nat(`-I ${upstreamChain} 1 -j RETURN`) },
  {
    name: "a RETURN removed by spec",
    drift: nat(`-D ${upstreamReturnLine("10.0.0.0/8").slice(3)}`),
  },
  { name: "a second jump added", drift: nat(jump) },
  {
    name: "the v2 quoted jump and an old chain's jump beside ours, foreign rules around",
    drift: nat(
      ":KUBE-POSTROUTING - [0:0]",
      ":OLD-CHAIN - [0:0]",
      "-I POSTROUTING 1 -m comment --comment kube -j KUBE-POSTROUTING",
      upstreamQuotedJumpLine(),
      jumpRuleLine("OLD-CHAIN"),
      "-A KUBE-POSTROUTING -j RETURN",
    ),
  },
];

async function withNs<T>(label: string, fn: (ns: NetNs) => Promise<T>): Promise<T> {
  const ns = await NetNs.create(label);
  try {
    return await fn(ns);
  } finally {
    await ns.dispose();
  }
}

/** The agent's read of its chain: POSTROUTING, then the chain (absent: nothing). */
async function agentRead(client: NatTableClient, chain: string) {
  const postrouting = (await client.listChain("POSTROUTING")) ?? "";
  return parseNatTable(postrouting + ((await client.listChain(chain)) ?? ""));
}

async function compareListings(fake: NatTableClient, real: NatTableClient, where: string) {
  const [got, want] = [await listings(fake, listedChains), await listings(real, listedChains)];
  assert.deepEqual(got, want, `${where}: the fake's listings (actual) against the real ones`);
}

for (const backend of backends) {
  rootTest({
    name: `conformance: FakeNatTable against iptables-${backend}, step by step`,
    skipReason: netnsSkipReason,
    fn: async (t) => {
      for (const c of iptablesCases) {
        const family = c.family ?? "ipv4";
        await t.step(`${c.name} (${family})`, async () => {
          await withNs(`cf-${backend}`, async (ns) => {
            const real = natTableClient(family, backend, execIn(ns));
            const fake = new FakeNatTable({ family, mode: backend });
            if (c.seed !== undefined) {
              await real.restore(c.seed);
              await fake.restore(c.seed);
            }
            await compareListings(fake, real, "after the seed");
            for (const [index, payload] of c.steps.entries()) {
              const where = `step ${index + 1}:\n${payload}`;
              const want = await outcome(real.restore(payload));
              const got = await outcome(fake.restore(payload));
              if (c.stricterThan === backend && index === c.steps.length - 1) {
                assert.deepEqual([got.ok, want.ok], [false, true], `${where}: stricter`);
                continue;
              }
              // Applied or failed must agree; the wording and the line each tool blames differ
              // (iptables-nft reports some errors at the COMMIT line), so they are shown only.
              assert.equal(
                got.ok,
                want.ok,
                `${where}\nfake: ${got.message ?? "applied"}\nreal: ${want.message ?? "applied"}`,
              );
              await compareListings(fake, real, where);
            }
          });
        });
      }
    },
  });

  rootTest({
    name: `conformance: the agent's plans read the same from FakeNatTable and iptables-${backend}`,
    skipReason: netnsSkipReason,
    fn: async (t) => {
      for (const family of ["ipv4", "ipv6"] as const) {
        const chain = family === "ipv4"
          ? v4(["10.0.0.0/8", "192.168.0.0/16"])
          : desired("ipv6", ["fd00::/8", "2001:db8::/32"]);
        for (const { name, drift } of driftSeeds) {
          if (family === "ipv6" && name === "a rule edited") continue; // an ipv4 spec
          if (family === "ipv6" && name === "a RETURN removed by spec") continue;
          await t.step(`${name} (${family})`, async () => {
            await withNs(`cd-${backend}`, async (ns) => {
              const real = natTableClient(family, backend, execIn(ns));
              const fake = new FakeNatTable({ family, mode: backend });
              for (const side of [real, fake]) {
                await side.restore(renderFromEmpty(chain));
                await side.restore(drift);
              }
              await compareListings(fake, real, "drifted");
              const [fakePlan, realPlan] = [
                planReconcile(chain, await agentRead(fake, chain.chain)),
                planReconcile(chain, await agentRead(real, chain.chain)),
              ];
              assert.deepEqual(fakePlan, realPlan, "the plan from each side's listing");
              assert.ok(realPlan.payload, "the drift needs a repair");
              for (const side of [real, fake]) await side.restore(realPlan.payload);
              await compareListings(fake, real, "repaired");
              assert.equal(planReconcile(chain, await agentRead(real, chain.chain)).payload, null);
              assert.equal(planReconcile(chain, await agentRead(fake, chain.chain)).payload, null);

              const cleanup = planCleanup(chain.chain, parseNatTable(await real.listTable()));
              assert.deepEqual(
                planCleanup(chain.chain, parseNatTable(await fake.listTable())),
                cleanup,
                "the cleanup plan from each side's listing",
              );
              if (cleanup.payload) {
                for (const side of [real, fake]) await side.restore(cleanup.payload);
              }
              await compareListings(fake, real, "cleaned up");
            });
          });
        }
      }
    },
  });
}

// --- nft

/** An nft listing without what varies between runs of the same content: object handles. */
function withoutHandles(listing: string | null): unknown {
  if (listing === null) return null;
  const strip = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(strip);
    if (value && typeof value === "object") {
      return Object.fromEntries(
        Object.entries(value).filter(([key]) => key !== "handle").map((
          [key, inner],
        ) => [key, strip(inner)]),
      );
    }
    return value;
  };
  return strip(JSON.parse(listing));
}

async function compareNft(fake: NftClient, real: NftClient, where: string) {
  for (const family of ["ipv4", "ipv6"] as const) {
    const [got, want] = [await fake.listTable(family), await real.listTable(family)];
    assert.deepEqual(
      withoutHandles(got),
      withoutHandles(want),
      `${where} (${family}): the fake's listing (actual) against nft's`,
    );
    if (want !== null && got !== null) {
      assert.deepEqual(
        parseNftTable(got, family),
        parseNftTable(want, family),
        `${where} (${family}): what the agent reads from each`,
      );
    }
  }
}

async function nftOutcome(run: Promise<void>): Promise<{ ok: boolean; message?: string }> {
  try {
    await run;
    return { ok: true };
  } catch (error) {
    if (!(error instanceof ToolError)) throw error;
    return { ok: false, message: error.message };
  }
}

function goldenChains(golden: (typeof nftGoldenCases)[number]): DesiredChain[] {
  const encoder = new TextEncoder();
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
  return desiredChains(loadConfig(contents, flags).effective, flags, { ipv4: true, ipv6: true });
}

const nftDrifts: { name: string; payload: (family: Family) => string }[] = [
  { name: "the table deleted", payload: (f) => `delete table ${ip(f)} ip-masq-agent\n` },
  {
    name: "an element removed",
    payload: (f) =>
      `delete element ${ip(f)} ip-masq-agent nonmasq-dst { ${
        f === "ipv4" ? "10.0.0.0/8" : "fd00::/8"
      } }\n`,
  },
  {
    name: "an element added",
    payload: (f) =>
      `add element ${ip(f)} ip-masq-agent nonmasq-dst { ${
        f === "ipv4" ? "198.51.100.0/24" : "3fff:1::/48"
      } }\n`,
  },
  {
    name: "a host address and a range added",
    payload: (f) =>
      `add element ${ip(f)} ip-masq-agent nonmasq-dst { ${
        f === "ipv4" ? "198.51.100.7, 203.0.113.1-203.0.113.9" : "3fff:2::1, 3fff:3::-3fff:3::9"
      } }\n`,
  },
];

function ip(family: Family): string {
  return family === "ipv4" ? "ip" : "ip6";
}

rootTest({
  name: "conformance: FakeNft against nft: goldens, drift, the agent's plans",
  skipReason: netnsSkipReason ?? nftSkipReason,
  fn: async (t) => {
    for (const golden of nftGoldenCases) {
      await t.step(`golden: ${golden.name}`, async () => {
        await withNs("cn", async (ns) => {
          const real = nftClient(execIn(ns));
          const fake = new FakeNft();
          for (const chain of goldenChains(golden)) {
            const payload = renderNftFromEmpty(chain);
            for (const side of [real, fake]) await side.apply(payload);
            await compareNft(fake, real, `${golden.name}: loaded`);
            // The same payload again: a second table block merges into the first.
            const again = [
              await nftOutcome(real.apply(payload)),
              await nftOutcome(fake.apply(payload)),
            ];
            assert.equal(again[1].ok, again[0].ok, `loading twice: ${JSON.stringify(again)}`);
            await compareNft(fake, real, `${golden.name}: loaded twice`);
            const removal = planNftRemoval(
              chain.family,
              parseNftTable(
                (await real.listTable(chain.family))!,
                chain.family,
              ),
            );
            assert.ok(removal.payload);
            for (const side of [real, fake]) await side.apply(removal.payload);
            await compareNft(fake, real, `${golden.name}: removed`);
          }
        });
      });
    }

    for (const family of ["ipv4", "ipv6"] as const) {
      const chain = desired(
        family,
        family === "ipv4"
          ? ["10.0.0.0/8", "172.16.0.0/12", "100.64.0.0/10"]
          : ["fd00::/8", "2001:db8::/32"],
      );
      const want = nftDesired(chain);
      for (const drift of nftDrifts) {
        await t.step(`drift: ${drift.name} (${family})`, async () => {
          await withNs("cn", async (ns) => {
            const real = nftClient(execIn(ns));
            const fake = new FakeNft();
            for (const side of [real, fake]) {
              await side.apply(renderNftFromEmpty(chain));
              await side.apply(drift.payload(family));
            }
            await compareNft(fake, real, "drifted");
            const read = async (side: NftClient) => {
              const listing = await side.listTable(family);
              return listing === null
                ? { kind: "missing" as const }
                : parseNftTable(listing, family);
            };
            const plan = planNftReconcile(want, await read(real));
            assert.deepEqual(planNftReconcile(want, await read(fake)), plan, "the plans");
            assert.ok(plan.payload, "the drift needs a repair");
            for (const side of [real, fake]) await side.apply(plan.payload);
            await compareNft(fake, real, "repaired");
            assert.equal(planNftReconcile(want, await read(real)).payload, null);
          });
        });
      }
    }

    await t.step("failures: what nft rejects, the fake rejects, and nothing changes", async () => {
      await withNs("cn", async (ns) => {
        const real = nftClient(execIn(ns));
        const fake = new FakeNft();
        const chain = desired("ipv4", ["10.0.0.0/8"]);
        for (const side of [real, fake]) await side.apply(renderNftFromEmpty(chain));
        const payloads = [
          "delete table ip ip-masq-agent\ndelete table ip ip-masq-agent\n",
          "delete element ip ip-masq-agent nonmasq-dst { 192.0.2.0/24 }\n",
          "add element ip ip-masq-agent nonmasq-dst { 10.1.0.0/16 }\n",
          "add element ip ip-masq-agent nonmasq-dst { 192.0.2.1/24 }\n",
          "add element ip ip-masq-agent nosuchset { 192.0.2.0/24 }\n",
          "delete table ip6 ip-masq-agent\n",
        ];
        for (const payload of payloads) {
          const want = await nftOutcome(real.apply(payload));
          const got = await nftOutcome(fake.apply(payload));
          assert.equal(
            got.ok,
            want.ok,
            `${payload}fake: ${got.message ?? "applied"}\nnft: ${want.message ?? "applied"}`,
          );
          await compareNft(fake, real, payload);
        }
      });
    });
  },
});
