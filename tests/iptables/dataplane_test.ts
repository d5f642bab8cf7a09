import assert from "node:assert/strict";
import { parseBuiltInCidr } from "../../lib/net/cidr.ts";
import { renderFromEmpty } from "../../lib/iptables/render.ts";
import { type DesiredChain } from "../../lib/policy/chain.ts";
import { ForeignChainError } from "../../lib/base/errors.ts";
import { builtIn } from "../../lib/base/source.ts";
import { applyDesired, readAndPlan, removeAll } from "../../lib/policy/dataplane.ts";
import {
  iptablesDataplane,
  type VerifiedListings,
  verifiedListings,
} from "../../lib/iptables/dataplane.ts";
import { FakeNatTable } from "../support/fake_iptables.ts";
import {
  upstreamJumpLine,
  upstreamMasqueradeLine,
  upstreamReturnLine,
} from "../support/upstream_rules.ts";

function desired(chain = "IP-MASQ-AGENT", ...cidrs: string[]): DesiredChain {
  return {
    family: "ipv4",
    chain,
    exemptions: cidrs.map((text) => ({ value: parseBuiltInCidr(text), at: builtIn("test") })),
    masquerade: { randomFully: true, toPorts: [] },
  };
}

/** What `desired(undefined, "10.0.0.0/8")` must become, in upstream's literal text (not lib's). */
const upstreamChainLines = [upstreamReturnLine("10.0.0.0/8"), upstreamMasqueradeLine()];

/** kube-proxy-like rules in chains that are not ours: never read by a steady reconcile. */
const foreign = [
  "*nat",
  ":KUBE-SERVICES - [0:0]",
  ":KUBE-POSTROUTING - [0:0]",
  ...Array.from({ length: 50 }, (_, i) => `-A KUBE-SERVICES -d 10.96.0.${i}/32 -j RETURN`),
  "-A POSTROUTING -j KUBE-POSTROUTING",
  "COMMIT",
  "",
].join("\n");

function listedChains(fake: FakeNatTable) {
  return fake.calls.filter((call) => call.op === "list").map((call) => call.chain ?? "(table)");
}

Deno.test("a reconcile reads POSTROUTING and our chain only, whatever else the table holds", async () => {
  const fake = new FakeNatTable({ seed: foreign });
  const chain = desired(undefined, "10.0.0.0/8");
  const dataplane = iptablesDataplane({ ipv4: fake, ipv6: fake }, "IP-MASQ-AGENT");
  const [first] = await applyDesired([chain], dataplane);
  assert.notEqual(first.plan.payload, null, "a fresh node is written");
  assert.deepEqual(fake.rules("IP-MASQ-AGENT"), upstreamChainLines);
  fake.calls.length = 0;
  const [second] = await applyDesired([chain], dataplane);
  assert.deepEqual(second.plan, { drift: [], payload: null });
  assert.deepEqual(listedChains(fake), ["POSTROUTING", "IP-MASQ-AGENT"]);
  assert.equal(fake.restoreCalls, 0);
});

Deno.test("a jump of ours to another chain (an old --masq-chain) makes one whole-table read", async () => {
  const fake = new FakeNatTable({ seed: renderFromEmpty(desired("OLD-CHAIN", "10.0.0.0/8")) });
  const dataplane = iptablesDataplane({ ipv4: fake, ipv6: fake }, "IP-MASQ-AGENT");
  const plan = await readAndPlan(dataplane, desired(undefined, "10.0.0.0/8"));
  assert.deepEqual(listedChains(fake), ["POSTROUTING", "IP-MASQ-AGENT", "(table)"]);
  assert.ok(plan.drift.some((drift) => drift.kind === "stale-chain"), JSON.stringify(plan.drift));
  await fake.restore(plan.payload!);
  assert.equal(await fake.listChain("OLD-CHAIN"), null, "the old chain is gone");
  assert.deepEqual(fake.rules("POSTROUTING"), [upstreamJumpLine()]);
});

Deno.test("what was verified is not compared again, and any change of it still is", async () => {
  const fake = new FakeNatTable();
  const chain = desired(undefined, "10.0.0.0/8");
  const verified: VerifiedListings = verifiedListings();
  const dataplane = iptablesDataplane(
    { ipv4: fake, ipv6: fake },
    "IP-MASQ-AGENT",
    undefined,
    undefined,
    verified,
  );
  const reconcile = async (wanted: DesiredChain) => {
    const [{ plan }] = await applyDesired([wanted], dataplane);
    return plan;
  };
  await reconcile(chain);
  assert.equal(verified.size, 0, "a written family is verified by the next read, not assumed");
  await reconcile(chain);
  assert.equal(verified.get("ipv4")?.desired, chain);
  const listing = verified.get("ipv4")?.listing;
  assert.deepEqual(listing, [
    (await fake.listChain("POSTROUTING"))!,
    (await fake.listChain("IP-MASQ-AGENT"))!,
  ]);

  // Drift in our chain: the listing differs, so it is planned and repaired in this very reconcile.
  fake.external("*nat\n-A IP-MASQ-AGENT -d 1.2.3.4/32 -j RETURN\nCOMMIT\n");
  const repaired = await reconcile(chain);
  assert.equal(repaired.drift[0]?.kind, "chain-differs");
  assert.deepEqual(fake.rules("IP-MASQ-AGENT"), upstreamChainLines);

  // A new desired state (another config) is planned even over an unchanged listing.
  await reconcile(chain);
  const changed = await reconcile(desired(undefined, "10.0.0.0/8", "192.168.0.0/16"));
  assert.notEqual(changed.payload, null);
});

Deno.test("removing ours costs two listings where nothing of ours is, and removes only ours", async () => {
  const removeOurs = (fake: FakeNatTable, chain: string) =>
    removeAll(iptablesDataplane({ ipv4: fake, ipv6: fake }, chain), "ipv4");
  const empty = new FakeNatTable({ seed: foreign });
  assert.deepEqual(await removeOurs(empty, "IP-MASQ-AGENT"), { drift: [], payload: null });
  assert.deepEqual(listedChains(empty), ["POSTROUTING", "IP-MASQ-AGENT"]);
  assert.equal(empty.restoreCalls, 0);

  const ours = new FakeNatTable({ seed: foreign });
  ours.external(renderFromEmpty(desired(undefined, "10.0.0.0/8")));
  const before = ours.dump();
  const plan = await removeOurs(ours, "IP-MASQ-AGENT");
  assert.notEqual(plan.payload, null);
  assert.equal(await ours.listChain("IP-MASQ-AGENT"), null);
  assert.deepEqual(ours.rules("POSTROUTING"), ["-A POSTROUTING -j KUBE-POSTROUTING"]);
  assert.equal(ours.rules("KUBE-SERVICES").length, 50, "foreign rules untouched");
  assert.notEqual(ours.dump(), before);
});

Deno.test("issue 15: a chain of ours under another name is removed once; back, it is another agent's", async () => {
  // Another agent manages IP-MASQ-AGENT; we run with --masq-chain=MY-MASQ.
  const theirs = desired("IP-MASQ-AGENT", "10.0.0.0/8");
  const fake = new FakeNatTable({ seed: renderFromEmpty(theirs) });
  const warned: string[] = [];
  const ours = desired("MY-MASQ", "10.0.0.0/8");
  const dataplane = iptablesDataplane(
    { ipv4: fake, ipv6: fake },
    "MY-MASQ",
    undefined,
    (family, chain) => warned.push(`${family} ${chain}`),
  );
  const [first] = await applyDesired([ours], dataplane);
  assert.ok(first.plan.drift.some((drift) => drift.kind === "stale-chain"), "removed once");
  assert.equal(await fake.listChain("IP-MASQ-AGENT"), null);
  assert.deepEqual(warned, []);

  // The other agent puts its chain and jump back.
  await fake.restore(renderFromEmpty(theirs));
  const [second] = await applyDesired([ours], dataplane);
  assert.deepEqual(warned, ["ipv4 IP-MASQ-AGENT"], "warned once");
  assert.deepEqual(second.plan, { drift: [], payload: null }, "left alone, ours in sync");
  assert.notEqual(await fake.listChain("IP-MASQ-AGENT"), null, "their chain stays");

  // Steady state: no write, no second warning, no whole-table read.
  fake.calls.length = 0;
  for (let i = 0; i < 3; i++) await applyDesired([ours], dataplane);
  assert.equal(fake.restoreCalls, 0);
  assert.deepEqual(warned, ["ipv4 IP-MASQ-AGENT"]);
  assert.ok(!listedChains(fake).includes("(table)"), listedChains(fake).join(", "));
});

Deno.test("issue 15: another tool's chain as --masq-chain is refused before anything is written", async () => {
  const fake = new FakeNatTable({
    seed: foreign.replace(
      "COMMIT",
      "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\nCOMMIT",
    ),
  });
  const ipv6 = new FakeNatTable({ family: "ipv6" });
  const dataplane = iptablesDataplane({ ipv4: fake, ipv6 }, "KUBE-POSTROUTING");
  const chain = desired("KUBE-POSTROUTING", "10.0.0.0/8");
  await assert.rejects(
    applyDesired([{ ...chain, family: "ipv6" }, chain], dataplane),
    (error: unknown) => {
      assert.ok(error instanceof ForeignChainError, String(error));
      assert.match(error.message, /nat chain KUBE-POSTROUTING \(ipv4, --masq-chain\)/);
      assert.match(error.message, /-A KUBE-POSTROUTING -m mark ! --mark 0x4000\/0x4000 -j RETURN/);
      return true;
    },
  );
  assert.equal(fake.restoreCalls + ipv6.restoreCalls, 0, "nothing written, not even for ipv6");
  assert.ok(!listedChains(fake).includes("(table)"), "refused before a whole-table read");
  await assert.rejects(removeAll(dataplane, "ipv4"), ForeignChainError);
  assert.equal(fake.restoreCalls, 0);
});
