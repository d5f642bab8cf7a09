import assert from "node:assert/strict";
import { maxQuotedLength, quoteInput } from "../../lib/base/quote.ts";

Deno.test("quoteInput shows printable ASCII as is, in double quotes", () => {
  assert.equal(quoteInput(""), '""');
  assert.equal(quoteInput("10.0.0.0/8 -j ACCEPT"), '"10.0.0.0/8 -j ACCEPT"');
});

Deno.test("quoteInput escapes quotes, backslashes and everything outside printable ASCII", () => {
  const cases: [string, string][] = [
    ['a"b', String.raw`"a\"b"`],
    ["a\\b", String.raw`"a\\b"`],
    ["a\nb\rc\td", String.raw`"a\nb\rc\td"`],
    ["\0\x1b[31m\x7f", String.raw`"\u0000\u001b[31m\u007f"`],
    ["caf\u00e9", String.raw`"caf\u00e9"`],
    ["\u202eevil\u2028", String.raw`"\u202eevil\u2028"`],
    ["\u{1F600}", String.raw`"\ud83d\ude00"`],
  ];
  for (const [input, want] of cases) {
    assert.equal(quoteInput(input), want, JSON.stringify(input));
    // A valid JSON string literal that reads back as the input.
    assert.equal(JSON.parse(quoteInput(input)), input, JSON.stringify(input));
    assert.match(quoteInput(input), /^[\x20-\x7e]*$/);
  }
});

Deno.test("quoteInput cuts long input and says so after the closing quote", () => {
  const exact = "x".repeat(maxQuotedLength);
  assert.equal(quoteInput(exact), `"${exact}"`);
  assert.equal(quoteInput(exact + "y"), `"${exact}"…`);
  assert.equal(quoteInput("\n".repeat(1_000_000)).length, 2 * maxQuotedLength + 3);
});
