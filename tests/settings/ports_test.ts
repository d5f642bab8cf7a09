import assert from "node:assert/strict";
import {
  formatPortRange,
  parsePortRanges,
  type PortRange,
  portRangeSize,
} from "../../lib/settings/ports.ts";

function ranges(spec: string): PortRange[] {
  const result = parsePortRanges(spec);
  if (!result.ok) assert.fail(`expected ${JSON.stringify(spec)} to parse: ${result.error}`);
  return result.value;
}

function reason(spec: string): string {
  const result = parsePortRanges(spec);
  if (result.ok) assert.fail(`expected ${JSON.stringify(spec)} to be rejected`);
  return result.error;
}

Deno.test("an empty --to-ports means no port restriction", () => {
  assert.deepEqual(ranges(""), []);
});

Deno.test("port ranges and single ports parse in the order given", () => {
  const cases: [string, PortRange[]][] = [
    ["1024-29999,32768-65535", [{ first: 1024, last: 29999 }, { first: 32768, last: 65535 }]],
    ["32768-65535", [{ first: 32768, last: 65535 }]],
    ["80", [{ first: 80, last: 80 }]],
    ["1", [{ first: 1, last: 1 }]],
    ["65535", [{ first: 65535, last: 65535 }]],
    ["1-65535", [{ first: 1, last: 65535 }]],
    ["5000-5000", [{ first: 5000, last: 5000 }]],
    ["3-4,1-2", [{ first: 3, last: 4 }, { first: 1, last: 2 }]],
    ["1-2,3-4", [{ first: 1, last: 2 }, { first: 3, last: 4 }]],
    ["80,443,8000-8999", [{ first: 80, last: 80 }, { first: 443, last: 443 }, {
      first: 8000,
      last: 8999,
    }]],
  ];
  for (const [spec, want] of cases) assert.deepEqual(ranges(spec), want, spec);
});

Deno.test("malformed items are rejected, naming the item", () => {
  const cases: [string, string][] = [
    ["a", "a"],
    ["1,", ""],
    [",1", ""],
    ["1,,2", ""],
    ["1-", "1-"],
    ["-1", "-1"],
    [" 1", " 1"],
    ["1 ", "1 "],
    ["1--2", "1--2"],
    ["1-2-3", "1-2-3"],
    ["1:2", "1:2"],
    ["0x10", "0x10"],
    ["+80", "+80"],
  ];
  for (const [spec, item] of cases) {
    assert.equal(
      reason(spec),
      `${
        JSON.stringify(item)
      } is not a port or port range (want a comma-separated list of N or N-M)`,
      spec,
    );
  }
});

Deno.test("ports outside 1-65535 are rejected", () => {
  const cases: [string, string][] = [
    ["0", "port 0 is out of range 1-65535"],
    ["0-100", "port 0 is out of range 1-65535"],
    ["65536", "port 65536 is out of range 1-65535"],
    ["1024-70000", "port 70000 is out of range 1-65535"],
    ["99999999999999999999", "port 99999999999999999999 is out of range 1-65535"],
  ];
  for (const [spec, want] of cases) assert.equal(reason(spec), want, spec);
});

Deno.test("a leading zero is rejected because iptables would read it as octal", () => {
  assert.equal(reason("010"), 'port "010" must not have a leading zero');
  assert.equal(reason("1024-08000"), 'port "08000" must not have a leading zero');
});

Deno.test("a range whose start is above its end is rejected", () => {
  assert.equal(reason("65535-1024"), "port range 65535-1024 has its start above its end");
});

Deno.test("overlapping ranges are rejected, naming both", () => {
  const cases: [string, string][] = [
    ["1-2,2-3", "ports 1-2 and 2-3 overlap"],
    ["100,100", "ports 100 and 100 overlap"],
    ["2000-3000,1000-2500", "ports 1000-2500 and 2000-3000 overlap"],
    ["1-10,20-30,5", "ports 1-10 and 5 overlap"],
  ];
  for (const [spec, want] of cases) assert.equal(reason(spec), want, spec);
});

Deno.test("the size of a range counts both ends", () => {
  assert.equal(portRangeSize({ first: 1024, last: 29999 }), 28976);
  assert.equal(portRangeSize({ first: 32768, last: 65535 }), 32768);
  assert.equal(portRangeSize({ first: 80, last: 80 }), 1);
});

Deno.test("a range prints as iptables-save prints it: a bare number for one port", () => {
  assert.equal(formatPortRange({ first: 1024, last: 29999 }), "1024-29999");
  assert.equal(formatPortRange({ first: 80, last: 80 }), "80");
});
