/**
 * Reading our table back (`nft -j list table`) and planning against it:
 * in sync after our own write, element-only diffs for a CIDR change, the
 * whole table replaced on damage or foreign edits, and hostile listings
 * (garbage, huge or odd values, other kinds of objects) that never crash the
 * parser and never read as in sync.
 */

import assert from "node:assert/strict";
import { parseBuiltInCidr } from "../../lib/net/cidr.ts";
import type { DesiredChain } from "../../lib/policy/chain.ts";
import { builtIn } from "../../lib/base/source.ts";
import { parseNftTable } from "../../lib/nftables/parse.ts";
import { planNftReconcile, planNftRemoval } from "../../lib/nftables/plan.ts";
import { nftDesired, renderNftReplace } from "../../lib/nftables/render.ts";
import { FakeNft } from "../support/fake_nft.ts";

function desired(cidrs: string[], family: "ipv4" | "ipv6" = "ipv4", toPorts = false) {
  const linkLocal = family === "ipv4" ? "169.254.0.0/16" : "fe80::/10";
  const builtInLinkLocal = {
    value: parseBuiltInCidr(linkLocal),
    at: builtIn("link-local, masqLinkLocal is false"),
  };
  const chain: DesiredChain = {
    family,
    chain: "IP-MASQ-AGENT",
    linkLocal: builtInLinkLocal,
    exemptions: [
      builtInLinkLocal,
      ...cidrs.map((text) => ({ value: parseBuiltInCidr(text), at: { file: "f", line: 1 } })),
    ],
    masquerade: {
      randomFully: true,
      toPorts: toPorts ? [{ first: 1024, last: 29999 }, { first: 32768, last: 65535 }] : [],
    },
  };
  return nftDesired(chain);
}

/** A fake nft holding exactly what our replace transaction writes. */
function written(table: ReturnType<typeof desired>): FakeNft {
  const fake = new FakeNft();
  fake.external(renderNftReplace(table));
  return fake;
}

function planAgainst(table: ReturnType<typeof desired>, listing: string | null) {
  return planNftReconcile(
    table,
    listing === null ? { kind: "missing" } : parseNftTable(listing, table.family),
  );
}

Deno.test("our own write reads back in sync, both families, with --to-ports", () => {
  for (
    const table of [
      desired(["10.0.0.0/8", "10.1.0.0/16", "11.0.0.0/8"], "ipv4", true),
      desired(["2001:db8::/32", "fd00::/8"], "ipv6", true),
      desired([]),
    ]
  ) {
    const fake = written(table);
    assert.deepEqual(planAgainst(table, fake.list(table.family)), { drift: [], payload: null });
  }
});

Deno.test("a real nft 1.0.6 listing of our table parses to our rules", () => {
  const listing = JSON.stringify({
    nftables: [
      { metainfo: { version: "1.0.6", release_name: "Lester Gooch #5", json_schema_version: 1 } },
      { table: { family: "ip", name: "ip-masq-agent", handle: 1 } },
      {
        set: {
          family: "ip",
          name: "nonmasq-dst",
          table: "ip-masq-agent",
          type: "ipv4_addr",
          handle: 2,
          flags: ["interval"],
          elem: ["1.2.3.4", { prefix: { addr: "10.0.0.0", len: 8 } }, {
            range: ["172.16.0.0", "172.20.0.255"],
          }],
        },
      },
      {
        chain: {
          family: "ip",
          table: "ip-masq-agent",
          name: "postrouting",
          handle: 1,
          type: "nat",
          hook: "postrouting",
          prio: 100,
          policy: "accept",
        },
      },
      {
        rule: {
          family: "ip",
          table: "ip-masq-agent",
          chain: "postrouting",
          handle: 6,
          expr: [
            { match: { op: "==", left: { meta: { key: "l4proto" } }, right: "tcp" } },
            {
              match: {
                op: "<",
                left: { numgen: { mode: "random", mod: -2147483648, offset: 0 } },
                right: 1073741824,
              },
            },
            { masquerade: { port: { range: [20000, 20100] }, flags: "fully-random" } },
          ],
        },
      },
    ],
  });
  const read = parseNftTable(listing, "ipv4");
  assert.equal(read.kind, "table");
  if (read.kind !== "table") return;
  assert.deepEqual(read.table.chains[0].rules, [
    "meta l4proto tcp numgen random mod 2147483648 < 1073741824 masquerade to :20000-20100 fully-random",
  ]);
  assert.deepEqual(read.table.sets[0].elements, [
    { start: 0x01020304n, end: 0x01020304n },
    { start: 0x0a000000n, end: 0x0affffffn },
    { start: 0xac100000n, end: 0xac1400ffn },
  ]);
});

Deno.test("a missing table is created", () => {
  const plan = planAgainst(desired(["10.0.0.0/8"]), null);
  assert.equal(plan.drift[0].kind, "table-missing");
  assert.match(plan.drift[0].message, /table ip ip-masq-agent does not exist/);
  assert.ok(plan.payload?.includes("elements = {\n\t\t\t10.0.0.0/8\n"));
});

Deno.test("a CIDR added or removed writes only that element", () => {
  const before = desired(["10.0.0.0/8", "192.168.0.0/16"]);
  const fake = written(before);
  const added = planAgainst(
    desired(["10.0.0.0/8", "192.168.0.0/16", "100.64.0.0/10"]),
    fake.list("ipv4"),
  );
  assert.equal(added.payload, "add element ip ip-masq-agent nonmasq-dst { 100.64.0.0/10 }\n");
  assert.match(added.drift[0].message, /set nonmasq-dst differs \(1 missing: 100\.64\.0\.0\/10\)/);
  const removed = planAgainst(desired(["10.0.0.0/8"]), fake.list("ipv4"));
  assert.equal(removed.payload, "delete element ip ip-masq-agent nonmasq-dst { 192.168.0.0/16 }\n");
  fake.external(added.payload!);
  assert.deepEqual(fake.elements("ipv4"), ["10.0.0.0/8", "100.64.0.0/10", "192.168.0.0/16"]);
});

Deno.test("a CIDR that merges with a neighbour replaces the merged element, in one transaction", () => {
  const fake = written(desired(["10.0.0.0/8"]));
  const plan = planAgainst(desired(["10.0.0.0/8", "11.0.0.0/8"]), fake.list("ipv4"));
  assert.equal(
    plan.payload,
    "delete element ip ip-masq-agent nonmasq-dst { 10.0.0.0/8 }\n" +
      "add element ip ip-masq-agent nonmasq-dst { 10.0.0.0/7 }\n",
  );
  fake.external(plan.payload!);
  assert.deepEqual(fake.elements("ipv4"), ["10.0.0.0/7"]);
});

const damage: { name: string; edit: (fake: FakeNft) => void; message: RegExp }[] = [
  {
    name: "a rule deleted",
    edit: (fake) => fake.edit("ipv4", (table) => table.chains[0].rules.splice(1, 1)),
    message: /chain postrouting: 1 missing: "ip daddr 169\.254\.0\.0\/16 return"/,
  },
  {
    name: "a foreign rule added to our chain",
    edit: (fake) =>
      fake.edit("ipv4", (table) => table.chains[0].rules.unshift({ expr: [{ accept: null }] })),
    message: /1 unexpected: "<\\"accept\\">"/,
  },
  {
    name: "a rule with a comment",
    edit: (fake) =>
      fake.edit("ipv4", (table) => table.chains[0].rules[3].comment = "edited\u001b[31m"),
    message: /1 unexpected: "masquerade fully-random comment .*\\\\u001b\[31m/,
  },
  {
    name: "a foreign chain",
    edit: (fake) => fake.edit("ipv4", (table) => table.chains.push({ name: "x\ny", rules: [] })),
    message: /unexpected chain "x\\ny"/,
  },
  {
    name: "the base chain's priority changed",
    edit: (fake) =>
      fake.edit("ipv4", (table) => table.chains[0].base = { ...table.chains[0].base!, prio: -100 }),
    message: /not a nat postrouting srcnat chain/,
  },
  {
    name: "a set's element with a comment",
    edit: (fake) => fake.edit("ipv4", (table) => table.sets[0].extra = { timeout: 5 }),
    message: /set nonmasq-dst has "timeout"/,
  },
  {
    name: "a map added",
    edit: (fake) =>
      fake.edit(
        "ipv4",
        (table) =>
          table.others.push({
            map: { family: "ip", table: "ip-masq-agent", name: "m", type: "x" },
          }),
      ),
    message: /unexpected "map" "m"/,
  },
  {
    name: "the set removed",
    edit: (fake) => fake.edit("ipv4", (table) => table.sets.splice(0, 1)),
    message: /set nonmasq-dst missing/,
  },
];

for (const { name, edit, message } of damage) {
  Deno.test(`damage replaces the whole table: ${name}`, () => {
    const table = desired(["10.0.0.0/8"]);
    const fake = written(table);
    edit(fake);
    const plan = planAgainst(table, fake.list("ipv4"));
    assert.equal(plan.drift.length, 1);
    assert.equal(plan.drift[0].kind, "table-differs");
    assert.match(plan.drift[0].message, message);
    assert.equal(plan.payload, renderNftReplace(table));
    fake.external(plan.payload!);
    assert.deepEqual(planAgainst(table, fake.list("ipv4")), { drift: [], payload: null });
  });
}

const hostileListings: { name: string; listing: string }[] = [
  { name: "not JSON", listing: "{nftables: [" },
  { name: "empty", listing: "" },
  { name: "JSON null", listing: "null" },
  { name: "nftables not an array", listing: '{"nftables": {"table": 1}}' },
  {
    name: "our objects without the table",
    listing: JSON.stringify({
      nftables: [
        { chain: { family: "ip", table: "ip-masq-agent", name: "postrouting" } },
      ],
    }),
  },
];

const table = { table: { family: "ip", name: "ip-masq-agent", handle: 1 } };
const hostileEntries: { name: string; entries: unknown[] }[] = [
  { name: "an entry of two kinds", entries: [{ set: {}, chain: {} }] },
  { name: "a number entry", entries: [42] },
  {
    name: "a set with a huge element",
    entries: [{
      set: {
        family: "ip",
        table: "ip-masq-agent",
        name: "nonmasq-dst",
        type: "ipv4_addr",
        flags: ["interval"],
        elem: ["1".repeat(1_000_000)],
      },
    }],
  },
  {
    name: "a set with an IPv6 element",
    entries: [{
      set: {
        family: "ip",
        table: "ip-masq-agent",
        name: "nonmasq-dst",
        type: "ipv4_addr",
        flags: ["interval"],
        elem: ["::1"],
      },
    }],
  },
  {
    name: "a reversed range",
    entries: [{
      set: {
        family: "ip",
        table: "ip-masq-agent",
        name: "nonmasq-dst",
        type: "ipv4_addr",
        flags: ["interval"],
        elem: [{ range: ["10.0.0.9", "10.0.0.1"] }],
      },
    }],
  },
  {
    name: "a prefix length of 99",
    entries: [{
      set: {
        family: "ip",
        table: "ip-masq-agent",
        name: "nonmasq-dst",
        type: "ipv4_addr",
        flags: "interval",
        elem: [{ prefix: { addr: "10.0.0.0", len: 99 } }],
      },
    }],
  },
  {
    name: "a type that is an object",
    entries: [{
      set: {
        family: "ip",
        table: "ip-masq-agent",
        name: "nonmasq-dst",
        type: { typeof: 1 },
        flags: ["interval"],
      },
    }],
  },
  {
    name: "rules whose expressions are not a list",
    entries: [{
      chain: {
        family: "ip",
        table: "ip-masq-agent",
        name: "postrouting",
        type: "nat",
        hook: "postrouting",
        prio: 100,
        policy: "accept",
      },
    }, { rule: { family: "ip", table: "ip-masq-agent", chain: "postrouting", expr: "return" } }],
  },
  {
    name: "a rule in an undeclared chain",
    entries: [{
      rule: { family: "ip", table: "ip-masq-agent", chain: "ghost", expr: [{ return: null }] },
    }],
  },
  {
    name: "a masquerade to a non-numeric port",
    entries: [{
      rule: {
        family: "ip",
        table: "ip-masq-agent",
        chain: "postrouting",
        expr: [{ masquerade: { port: "http" } }],
      },
    }],
  },
  { name: "a prototype key", entries: [JSON.parse('{"__proto__": {"chain": {}}}')] },
];

Deno.test("hostile listings never crash and never read as in sync", () => {
  const wanted = desired(["10.0.0.0/8"]);
  const cases = [
    ...hostileListings,
    ...hostileEntries.map(({ name, entries }) => ({
      name,
      listing: JSON.stringify({ nftables: [table, ...entries] }),
    })),
  ];
  for (const { name, listing } of cases) {
    const plan = planAgainst(wanted, listing);
    assert.equal(plan.payload, renderNftReplace(wanted), name);
    assert.equal(plan.drift.length, 1, name);
    for (const drift of plan.drift) {
      assert.ok(drift.message.length < 1000, `${name}: a bounded message`);
      // Printable ASCII, and quoteInput's "…" where it cut a value short.
      assert.doesNotMatch(drift.message, /[^\x20-\x7e…]/, `${name}: printable`);
    }
  }
});

Deno.test("entries of other tables and families are ignored", () => {
  const wanted = desired(["10.0.0.0/8"]);
  const fake = written(wanted);
  const parsed = JSON.parse(fake.list("ipv4")!);
  parsed.nftables.push(
    { table: { family: "ip", name: "kube-proxy", handle: 9 } },
    { chain: { family: "ip", table: "kube-proxy", name: "x" } },
    { chain: { family: "ip6", table: "ip-masq-agent", name: "y" } },
  );
  assert.deepEqual(planAgainst(wanted, JSON.stringify(parsed)), { drift: [], payload: null });
});

Deno.test("removal: nothing to do without our table, one delete with it", () => {
  assert.deepEqual(planNftRemoval("ipv4", { kind: "missing" }), { drift: [], payload: null });
  const plan = planNftRemoval("ipv6", { kind: "unreadable", reason: "x" });
  assert.equal(plan.payload, "table ip6 ip-masq-agent\ndelete table ip6 ip-masq-agent\n");
});
