import assert from "node:assert/strict";
import type { ConfigDirContents } from "../../lib/config/parse.ts";
import { sameConfigDirContents } from "../../lib/config/identity.ts";

const encode = (text: string) => new TextEncoder().encode(text);

function files(...entries: [string, string | Uint8Array][]): ConfigDirContents {
  return {
    kind: "files",
    files: entries.map(([path, bytes]) => ({
      path,
      bytes: typeof bytes === "string" ? encode(bytes) : bytes,
    })),
  };
}

const missing: ConfigDirContents = { kind: "missing" };
const agentFile = "/etc/config/ip-masq-agent";
const extraFile = "/etc/config/ip-masq-extra";
const text = "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n";

Deno.test("config identity: table", () => {
  const cases: { name: string; a: ConfigDirContents; b: ConfigDirContents; same: boolean }[] = [
    { name: "both missing", a: missing, b: missing, same: true },
    { name: "missing vs an empty directory", a: missing, b: files(), same: false },
    { name: "two empty directories", a: files(), b: files(), same: true },
    {
      name: "equal bytes in different buffers",
      a: files([agentFile, text]),
      b: files([agentFile, text]),
      same: true,
    },
    {
      name: "one byte differs",
      a: files([agentFile, text]),
      b: files([agentFile, text.replace("10.0.0.0/8", "10.0.0.0/9")]),
      same: false,
    },
    {
      name: "a byte appended",
      a: files([agentFile, text]),
      b: files([agentFile, `${text} `]),
      same: false,
    },
    {
      name: "a file renamed",
      a: files([agentFile, text]),
      b: files([extraFile, text]),
      same: false,
    },
    {
      name: "a file added",
      a: files([agentFile, text]),
      b: files([agentFile, text], [extraFile, "resyncInterval: 5s\n"]),
      same: false,
    },
    {
      name: "the same files in another order (the reader sorts; order changes the merge)",
      a: files([agentFile, text], [extraFile, "x"]),
      b: files([extraFile, "x"], [agentFile, text]),
      same: false,
    },
    { name: "empty files", a: files([agentFile, ""]), b: files([agentFile, ""]), same: true },
    {
      name: "bytes that decode alike but differ (a BOM)",
      a: files([agentFile, text]),
      b: files([agentFile, new Uint8Array([0xef, 0xbb, 0xbf, ...encode(text)])]),
      same: false,
    },
  ];
  for (const { name, a, b, same } of cases) {
    assert.equal(sameConfigDirContents(a, b), same, name);
    assert.equal(sameConfigDirContents(b, a), same, `${name} (swapped)`);
  }
});

Deno.test("config identity: a view into a larger buffer compares by its own bytes", () => {
  const big = encode(`garbage${text}garbage`);
  const view = big.subarray(7, 7 + text.length);
  assert.ok(sameConfigDirContents(files([agentFile, view]), files([agentFile, text])));
});

Deno.test("config identity: a 1 MiB file differing only in its last byte is told apart", () => {
  const a = new Uint8Array(1024 * 1024).fill(0x20);
  const b = a.slice();
  assert.ok(sameConfigDirContents(files([agentFile, a]), files([agentFile, b])));
  b[b.length - 1] = 0x21;
  assert.ok(!sameConfigDirContents(files([agentFile, a]), files([agentFile, b])));
});

Deno.test("every byte value counts: contents differing in one non-UTF-8 byte are not the same", () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const read = (bytes: Uint8Array) =>
    ({ kind: "files", files: [{ path: "/etc/config/ip-masq-agent", bytes }] }) as const;
  assert.ok(sameConfigDirContents(read(all), read(all.slice())));
  for (const index of [0x00, 0x80, 0x81, 0x8d, 0x9d, 0xc3, 0xff]) {
    const changed = all.slice();
    changed[index] = (changed[index] + 1) % 256;
    assert.ok(!sameConfigDirContents(read(all), read(changed)), `byte ${index} changed`);
  }
  // Two different invalid UTF-8 sequences would both decode to U+FFFD as UTF-8.
  assert.ok(!sameConfigDirContents(read(Uint8Array.of(0xff)), read(Uint8Array.of(0xfe))));
});

Deno.test("the byte comparison's decoding is one-to-one over all 256 byte values", () => {
  const decoder = new TextDecoder("windows-1252");
  const decoded = new Set(Array.from({ length: 256 }, (_, i) => decoder.decode(Uint8Array.of(i))));
  assert.equal(decoded.size, 256);
});
