import { deepStrictEqual, equal, fail, ok } from "node:assert/strict";
import { type Cidr, compareCidrs, contains, familyBits, parseCidr } from "../../lib/net/cidr.ts";

function mustParse(input: string): Cidr {
  const result = parseCidr(input);
  if (!result.ok) fail(`expected ${JSON.stringify(input)} to parse, got: ${result.error}`);
  return result.value;
}

function reasonFor(input: string): string {
  const result = parseCidr(input);
  if (result.ok) fail(`expected ${JSON.stringify(input)} to be rejected, got ${result.value.text}`);
  return result.error;
}

function assertRejected(cases: [input: string, reasonPart: string][]): void {
  for (const [input, reasonPart] of cases) {
    const reason = reasonFor(input);
    ok(
      reason.includes(reasonPart),
      `reason for ${JSON.stringify(input)} should mention ${JSON.stringify(reasonPart)}: ${reason}`,
    );
  }
}

Deno.test("valid IPv4 CIDRs parse to their canonical text", () => {
  const cases: [string, string, bigint, number][] = [
    ["0.0.0.0/0", "0.0.0.0/0", 0n, 0],
    ["10.0.0.0/8", "10.0.0.0/8", 0x0a000000n, 8],
    ["172.16.0.0/12", "172.16.0.0/12", 0xac100000n, 12],
    ["192.168.1.0/24", "192.168.1.0/24", 0xc0a80100n, 24],
    ["255.255.255.255/32", "255.255.255.255/32", 0xffffffffn, 32],
    ["100.64.0.0/10", "100.64.0.0/10", 0x64400000n, 10],
  ];
  for (const [input, text, address, prefix] of cases) {
    deepStrictEqual(mustParse(input), { family: "ipv4", address, prefix, text }, input);
  }
});

Deno.test("valid IPv6 CIDRs print like Go's net.IP.String", () => {
  const cases: [string, string][] = [
    ["2001:DB8:0:0:0:0:0:0/32", "2001:db8::/32"],
    ["2001:0db8::/32", "2001:db8::/32"],
    ["fe80::/10", "fe80::/10"],
    ["FE80::/10", "fe80::/10"],
    ["::/0", "::/0"],
    ["0:0:0:0:0:0:0:0/0", "::/0"],
    ["::1/128", "::1/128"],
    ["2001:db8:0:1::/64", "2001:db8:0:1::/64"],
    ["2001:0:0:1::/64", "2001:0:0:1::/64"],
    ["2001:db8:0:1:1:1:1:1/128", "2001:db8:0:1:1:1:1:1/128"],
    ["2001:db8::1:0:0:1/128", "2001:db8::1:0:0:1/128"],
    ["2001:0:0:1:0:0:0:1/128", "2001:0:0:1::1/128"],
    ["1:0:0:2:0:0:3:4/128", "1::2:0:0:3:4/128"],
    ["1:2:3:4:5:6:7::/128", "1:2:3:4:5:6:7:0/128"],
    ["::2:3:4:5:6:7:8/128", "0:2:3:4:5:6:7:8/128"],
    ["fd00::/8", "fd00::/8"],
    ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"],
    ["::1.2.3.4/128", "::102:304/128"],
    ["64:ff9b::192.0.2.0/120", "64:ff9b::c000:200/120"],
    ["1:2:3:4:5:6:1.2.3.4/128", "1:2:3:4:5:6:102:304/128"],
  ];
  for (const [input, text] of cases) {
    const cidr = mustParse(input);
    equal(cidr.family, "ipv6", input);
    equal(cidr.text, text, input);
    deepStrictEqual(mustParse(text), cidr, `canonical ${text} parses back to the same value`);
  }
});

Deno.test("a prefix length with leading zeros is read as decimal, like Go's dtoi", () => {
  equal(mustParse("10.0.0.0/08").text, "10.0.0.0/8");
  equal(mustParse("10.0.0.0/008").prefix, 8);
  equal(mustParse("2001:db8::/032").text, "2001:db8::/32");
  equal(mustParse("0.0.0.0/00").text, "0.0.0.0/0");
});

Deno.test("empty input is rejected as an empty CIDR", () => {
  equal(reasonFor(""), "empty CIDR");
});

Deno.test("IPv4 octets with leading zeros, signs or out-of-range values are rejected", () => {
  assertRejected([
    ["010.0.0.0/8", 'octet "010" has a leading zero'],
    ["10.00.0.0/16", 'octet "00" has a leading zero'],
    ["192.168.01.0/24", 'octet "01" has a leading zero'],
    ["256.0.0.0/8", 'octet "256" is greater than 255'],
    ["10.0.0.1000/32", 'octet "1000" is greater than 255'],
    ["10.0.0.99999999999999999999/32", "is greater than 255"],
    ["+10.0.0.0/8", 'octet "+10" is not a decimal number'],
    ["-1.0.0.0/8", 'octet "-1" is not a decimal number'],
    ["0x0a.0.0.0/8", 'octet "0x0a" is not a decimal number'],
    ["10..0.0/8", "empty octet"],
    [".10.0.0/8", "empty octet"],
  ]);
});

Deno.test("IPv4 addresses without exactly four parts are rejected", () => {
  assertRejected([
    ["10.0.0/8", "has 3 parts, want 4"],
    ["10.0/8", "has 2 parts, want 4"],
    ["10.0.0.0.0/8", "has 5 parts, want 4"],
    ["10.0.0.0./8", "has 5 parts, want 4"],
    ["10/8", "is not an IPv4 or IPv6 address"],
    ["localhost/8", "is not an IPv4 or IPv6 address"],
  ]);
});

Deno.test("prefix lengths that are not plain decimal or out of range are rejected", () => {
  assertRejected([
    ["10.0.0.0/", "prefix length is empty"],
    ["10.0.0.0/+8", 'prefix length "+8" must be decimal digits'],
    ["10.0.0.0/-1", 'prefix length "-1" must be decimal digits'],
    ["10.0.0.0/0x8", 'prefix length "0x8" must be decimal digits'],
    ["10.0.0.0/8a", "must be decimal digits"],
    ["10.0.0.0/33", "max 32"],
    ["10.0.0.0/0033", "max 32"],
    ["10.0.0.0/99999999999999999999", "max 32"],
    ["2001:db8::/129", "max 128"],
    ["::/1000", "max 128"],
  ]);
});

Deno.test("a CIDR needs exactly one slash", () => {
  assertRejected([
    ["10.0.0.0", 'missing "/"'],
    ["2001:db8::", 'missing "/"'],
    ["10.0.0.0/8/8", 'more than one "/"'],
    ["10.0.0.0//8", 'more than one "/"'],
    ["/8", "missing address"],
    ["/", "missing address"],
  ]);
});

Deno.test("malformed IPv6 addresses are rejected", () => {
  assertRejected([
    ["2001:db8::1::/64", 'more than one "::"'],
    [":::/0", "too many colons"],
    ["1:::2/64", "too many colons"],
    ["2001:db8:/32", "empty group"],
    [":2001:db8::/32", "empty group"],
    ["2001:db8::1:/128", "empty group"],
    ["12345::/16", 'group "12345" has more than 4 hex digits'],
    ["00001::/16", "more than 4 hex digits"],
    ["2001:db8::g/128", 'group "g" is not hexadecimal'],
    ["1:2:3:4:5:6:7/128", "has 7 groups, want 8"],
    ["1:2:3:4:5:6:7:8:9/128", "has 9 groups, want 8"],
    ["1:2:3:4:5:6:7:8::/128", '"::" must stand for at least one zero group'],
    ["::1:2:3:4:5:6:7:8/128", '"::" must stand for at least one zero group'],
    ["1:2:3:4:5:6::1.2.3.4/128", '"::" must stand for at least one zero group'],
    ["1:2:3:4:5:1.2.3.4/128", "has 7 groups, want 8"],
    ["1.2.3.4::/128", "embedded IPv4 must be at the end"],
    ["::1.2.3.4:1/128", "embedded IPv4 must be at the end"],
    ["::1.2.3.04/128", 'octet "04" has a leading zero'],
    ["::1.2.3/128", "has 3 parts, want 4"],
    ["::256.0.0.0/128", "greater than 255"],
    ["10.0.0.0:80/32", "embedded IPv4 must be at the end"],
  ]);
});

Deno.test("IPv6 zones are rejected", () => {
  assertRejected([
    ["fe80::1%eth0/64", "zones are not allowed"],
    ["fe80::%eth0/10", "zones are not allowed"],
    ["fe80::1%/64", "zones are not allowed"],
    ["10.0.0.0%eth0/8", "zones are not allowed"],
  ]);
});

Deno.test("IPv4-mapped IPv6 CIDRs are rejected with a hint to write the IPv4 CIDR", () => {
  assertRejected([
    ["::ffff:10.0.0.0/104", "write the IPv4 CIDR 10.0.0.0/8 instead"],
    ["::FFFF:192.168.1.0/120", "write the IPv4 CIDR 192.168.1.0/24 instead"],
    ["::ffff:0:0/96", "write the IPv4 CIDR 0.0.0.0/0 instead"],
    ["::ffff:a00:1/128", "write the IPv4 CIDR 10.0.0.1/32 instead"],
    ["0:0:0:0:0:ffff:0a00:0000/104", "write the IPv4 CIDR 10.0.0.0/8 instead"],
    ["::ffff:10.0.0.1/104", "write the IPv4 CIDR 10.0.0.0/8 instead"],
    ["::ffff:0:0/80", "write an IPv4 CIDR instead"],
  ]);
  ok(reasonFor("::ffff:10.0.0.0/104").includes("ip6tables"));
  // Neighbours of the mapped range are ordinary IPv6.
  equal(mustParse("::fffe:0:0/96").text, "::fffe:0:0/96");
  equal(mustParse("::1:ffff:0:0/96").text, "::1:ffff:0:0/96");
  equal(mustParse("::/0").text, "::/0");
});

Deno.test("misaligned prefixes are rejected and the reason names the network", () => {
  const cases: [string, string][] = [
    ["10.0.0.1/8", '"10.0.0.1/8" is not aligned: the network is 10.0.0.0/8'],
    ["192.168.1.1/24", '"192.168.1.1/24" is not aligned: the network is 192.168.1.0/24'],
    ["10.0.0.1/08", '"10.0.0.1/08" is not aligned: the network is 10.0.0.0/8'],
    ["1.2.3.4/0", '"1.2.3.4/0" is not aligned: the network is 0.0.0.0/0'],
    ["2001:db8::1/64", '"2001:db8::1/64" is not aligned: the network is 2001:db8::/64'],
    ["fe80::1/10", '"fe80::1/10" is not aligned: the network is fe80::/10'],
    [
      "2001:DB8:0:1:FFFF::/63",
      '"2001:DB8:0:1:FFFF::/63" is not aligned: the network is 2001:db8::/63',
    ],
    ["::1/0", '"::1/0" is not aligned: the network is ::/0'],
  ];
  for (const [input, reason] of cases) equal(reasonFor(input), reason);
});

Deno.test("whitespace anywhere is rejected instead of trimmed", () => {
  const inputs = [
    " 10.0.0.0/8",
    "10.0.0.0/8 ",
    "10.0.0.0 /8",
    "10.0.0.0/ 8",
    "10.0.0.0/8\n",
    "10.0.0.0/8\r\n",
    "\t10.0.0.0/8",
    "10.0.0.0/8 -j ACCEPT",
    "10.0.0.0/8\n-A POSTROUTING -j MASQUERADE",
    "10.0.0.0/8\u00a0",
    "2001:db8::/32\u2028",
    "\ufeff10.0.0.0/8",
  ];
  for (const input of inputs) {
    const reason = reasonFor(input);
    ok(reason.startsWith("whitespace is not allowed"), reason);
    ok(!/[\n\r\t\u2028]/.test(reason), `reason escapes control characters: ${reason}`);
  }
});

Deno.test("hostile input is rejected with a bounded, printable reason", () => {
  const inputs = [
    "10.0.0.0/8;iptables -F",
    "10.0.0.0/8,192.168.0.0/16",
    "10.0.0.0/8\0",
    "\u{1F600}/8",
    "１0.0.0.0/8",
    "10.0.0.0/\u0668",
    "10.0.0.0/8\u0000",
    `"10.0.0.0/8"`,
    "x".repeat(100_000),
    "1.".repeat(100_000) + "/8",
    ":".repeat(100_000) + "/8",
    "10.0.0.0/" + "0".repeat(100_000) + "8",
    "a".repeat(100_000) + "::/64",
  ];
  for (const input of inputs) {
    const result = parseCidr(input);
    if (result.ok) {
      // Go's dtoi accepts any number of leading zeros in the prefix length.
      equal(result.value.text, "10.0.0.0/8");
      continue;
    }
    ok(result.error.length < 300, `reason is bounded: ${result.error.length} chars`);
    ok(/^[\x20-\x7e…]*$/.test(result.error), `reason is printable: ${result.error}`);
  }
});

Deno.test("random inputs never throw and accepted ones round-trip through their text", () => {
  const alphabet = "0123456789abcdefABCDEF:./%x+- \n";
  let seed = 42;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  for (let n = 0; n < 20_000; n++) {
    let input = "";
    const length = Math.floor(random() * 24);
    for (let i = 0; i < length; i++) input += alphabet[Math.floor(random() * alphabet.length)];
    const result = parseCidr(input);
    if (!result.ok) {
      ok(result.error.length > 0);
      continue;
    }
    const cidr = result.value;
    deepStrictEqual(mustParse(cidr.text), cidr, `round trip of ${JSON.stringify(input)}`);
    ok(cidr.prefix <= familyBits(cidr.family));
  }
});

Deno.test("familyBits gives the address width of each family", () => {
  equal(familyBits("ipv4"), 32);
  equal(familyBits("ipv6"), 128);
});

Deno.test("contains is true only when every inner address is inside outer", () => {
  const cases: [string, string, boolean][] = [
    ["10.0.0.0/8", "10.1.2.0/24", true],
    ["10.0.0.0/8", "10.0.0.0/8", true],
    ["10.0.0.0/8", "10.255.255.255/32", true],
    ["10.0.0.0/8", "11.0.0.0/8", false],
    ["10.0.0.0/8", "10.0.0.0/7", false],
    ["10.1.0.0/16", "10.0.0.0/8", false],
    ["0.0.0.0/0", "192.168.1.1/32", true],
    ["192.168.0.0/16", "192.169.0.0/16", false],
    ["2001:db8::/32", "2001:db8:1::/48", true],
    ["2001:db8::/32", "2001:db9::/48", false],
    ["::/0", "fe80::/10", true],
    ["fe80::/10", "::/0", false],
    ["::/0", "0.0.0.0/0", false],
    ["0.0.0.0/0", "::/0", false],
    ["0.0.0.0/0", "::/128", false],
  ];
  for (const [outer, inner, want] of cases) {
    equal(contains(mustParse(outer), mustParse(inner)), want, `${outer} contains ${inner}`);
  }
});

Deno.test("contains masks hand-built values that are not aligned", () => {
  const outer: Cidr = { family: "ipv4", address: 0x0a000001n, prefix: 8, text: "10.0.0.1/8" };
  ok(contains(outer, mustParse("10.2.0.0/16")));
});

Deno.test("compareCidrs orders IPv4 before IPv6, then by address, then shorter prefix first", () => {
  const sorted = [
    "0.0.0.0/0",
    "10.0.0.0/8",
    "10.0.0.0/16",
    "10.0.0.0/24",
    "10.1.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "255.255.255.255/32",
    "::/0",
    "::/128",
    "::1/128",
    "2001:db8::/32",
    "2001:db8::/64",
    "fe80::/10",
  ];
  const shuffled = [...sorted].reverse();
  [shuffled[0], shuffled[5]] = [shuffled[5], shuffled[0]];
  const result = shuffled.map(mustParse).sort(compareCidrs).map((c) => c.text);
  deepStrictEqual(result, sorted);

  const a = mustParse("10.0.0.0/8");
  equal(compareCidrs(a, mustParse("10.0.0.0/08")), 0);
  ok(compareCidrs(mustParse("255.255.255.255/32"), mustParse("::/0")) < 0);
  ok(compareCidrs(mustParse("::/0"), mustParse("0.0.0.0/0")) > 0);
  ok(compareCidrs(mustParse("10.0.0.0/16"), a) > 0);
});
