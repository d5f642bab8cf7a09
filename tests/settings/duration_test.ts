import assert from "node:assert/strict";
import { parseGoDuration } from "../../lib/settings/duration.ts";

function milliseconds(text: string): number {
  const result = parseGoDuration(text);
  if (!result.ok) assert.fail(`expected ${JSON.stringify(text)} to parse: ${result.error}`);
  return result.value;
}

function reason(text: string): string {
  const result = parseGoDuration(text);
  if (result.ok) assert.fail(`expected ${JSON.stringify(text)} to be rejected`);
  return result.error;
}

Deno.test("Go durations parse to milliseconds as time.ParseDuration reads them", () => {
  const cases: [string, number][] = [
    ["60s", 60_000],
    ["1m30s", 90_000],
    ["1m", 60_000],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["24h", 86_400_000],
    ["1.5h", 5_400_000],
    ["1h2m3.5s", 3_723_500],
    ["500ms", 500],
    ["1000ms", 1_000],
    ["2000000us", 2_000],
    ["3000000000ns", 3_000],
    [".5s", 500],
    ["5.s", 5_000],
    ["1m1h", 3_660_000],
    ["5m0s", 300_000],
    ["00s", 0],
  ];
  for (const [text, want] of cases) assert.equal(milliseconds(text), want, text);
});

Deno.test("every unit Go knows is accepted, micro in all three spellings", () => {
  const cases: [string, number][] = [
    ["1ns", 1e-6],
    ["1us", 1e-3],
    ["1\u00b5s", 1e-3], // micro sign
    ["1\u03bcs", 1e-3], // Greek small mu
    ["1ms", 1],
    ["1s", 1_000],
    ["1m", 60_000],
    ["1h", 3_600_000],
  ];
  for (const [text, want] of cases) assert.equal(milliseconds(text), want, text);
});

Deno.test("a sign is allowed in front, as in Go", () => {
  assert.equal(milliseconds("-2s"), -2_000);
  assert.equal(milliseconds("+5s"), 5_000);
  assert.equal(milliseconds("-1m30s"), -90_000);
});

Deno.test("a bare zero needs no unit, any other number does", () => {
  for (const text of ["0", "+0", "-0"]) assert.equal(milliseconds(text), 0, text);
  for (const text of ["1", "60", "0.5", "10"]) {
    assert.ok(reason(text).includes("invalid duration"), text);
  }
});

Deno.test("malformed durations are rejected with an example of the right form", () => {
  for (const text of ["", "-", "+", "s", ".s", "abc", "1s2", "1.2.3s", "--1s"]) {
    assert.equal(
      reason(text),
      `invalid duration ${JSON.stringify(text)}: use a Go duration such as "60s" or "1m30s"`,
      text,
    );
  }
});

Deno.test("an unknown unit is named in the error with the list of valid units", () => {
  const cases: [string, string][] = [
    ["10x", "x"],
    ["1d", "d"],
    ["1e3s", "e"],
    ["1ss", "ss"],
    ["1s ", "s "],
    ["1 s", " s"],
    ["1sec", "sec"],
    ["1H", "H"],
  ];
  for (const [text, unit] of cases) {
    assert.equal(
      reason(text),
      `unknown unit ${JSON.stringify(unit)} in duration ${JSON.stringify(text)}` +
        " (valid units: ns, us, ms, s, m, h)",
      text,
    );
  }
});

Deno.test("durations beyond Go's int64 range are rejected", () => {
  for (const text of ["3000000h", "9999999999h", `1${"0".repeat(400)}s`]) {
    assert.ok(reason(text).startsWith("invalid duration"), text);
  }
});
