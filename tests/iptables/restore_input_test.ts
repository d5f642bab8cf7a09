import assert from "node:assert/strict";
import { NatTransaction } from "../../lib/iptables/restore_input.ts";

Deno.test("an empty transaction builds to null: no change is never an empty write", () => {
  const tx = new NatTransaction();
  assert.equal(tx.empty, true);
  assert.equal(tx.build(), null);
});

Deno.test("each operation is spelled as iptables-restore reads it, in order", () => {
  const tx = new NatTransaction()
    .declareChain("NEW")
    .rule("-A NEW -j RETURN")
    .deleteRule("-A POSTROUTING -j OLD")
    .declareChain("OLD")
    .deleteChain("OLD")
    .rule("-I POSTROUTING 1 -j NEW");
  assert.equal(tx.empty, false);
  assert.equal(
    tx.build(),
    [
      "*nat",
      ":NEW - [0:0]",
      "-A NEW -j RETURN",
      "-D POSTROUTING -j OLD",
      ":OLD - [0:0]",
      "-X OLD",
      "-I POSTROUTING 1 -j NEW",
      "COMMIT",
      "",
    ].join("\n"),
  );
});
