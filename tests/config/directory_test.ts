/**
 * The config directory reader (lib/config/directory.ts) on a temporary
 * directory, without root: which entries it reads. The expected names are
 * spelled out literally from the upstream contract (v1 reads
 * `/etc/config/ip-masq-agent`; v2 merges every file whose name starts with
 * `ip-masq`, as kubelet projects a ConfigMap's keys), not from lib/'s prefix
 * constant, so a changed filter fails here and not only in the root tests.
 */

import assert from "node:assert/strict";
import { ConfigError } from "../../lib/base/problems.ts";
import { readConfigDir } from "../../lib/config/directory.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "imt-config-dir-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function namesRead(dir: string): Promise<string[]> {
  const contents = await readConfigDir(dir);
  assert.equal(contents.kind, "files");
  if (contents.kind !== "files") return [];
  return contents.files.map((file) => file.path.slice(dir.length + 1));
}

Deno.test("config dir: only top-level entries named ip-masq* are read, in byte order", async () => {
  await withDir(async (dir) => {
    const text = "nonMasqueradeCIDRs: []\n";
    const names = [
      "ip-masq-agent",
      "ip-masq",
      "ip-masq-agent-v2",
      "ip-masq.yaml",
      "ip-masq-Z",
      "ip-masq-a",
      // Not ours: other keys of the ConfigMap, other spellings, hidden files.
      "IP-MASQ-AGENT",
      "ip_masq_agent",
      "ipmasq",
      "xip-masq-agent",
      "masq",
      "config",
      ".ip-masq-agent",
      ".tmp-ip-masq-agent",
      " ip-masq-agent",
    ];
    for (const name of names) await Deno.writeTextFile(`${dir}/${name}`, text);
    // kubelet's layout: the real files live under ..data and a timestamped directory.
    await Deno.mkdir(`${dir}/..2024_01_01_00_00_00.000000001`);
    await Deno.writeTextFile(`${dir}/..2024_01_01_00_00_00.000000001/ip-masq-inner`, text);
    await Deno.symlink("..2024_01_01_00_00_00.000000001", `${dir}/..data`);
    await Deno.symlink("..data/ip-masq-inner", `${dir}/ip-masq-linked`);
    assert.deepEqual(await namesRead(dir), [
      "ip-masq",
      "ip-masq-Z",
      "ip-masq-a",
      "ip-masq-agent",
      "ip-masq-agent-v2",
      "ip-masq-linked",
      "ip-masq.yaml",
    ]);
  });
});

Deno.test("config dir: the bytes read are the file's, the path is the entry's (not the link's target)", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/..v1`);
    await Deno.writeTextFile(`${dir}/..v1/ip-masq-agent`, "masqLinkLocal: true\n");
    await Deno.symlink("..v1/ip-masq-agent", `${dir}/ip-masq-agent`);
    await Deno.writeTextFile(`${dir}/other`, "not yaml: [");
    const contents = await readConfigDir(dir);
    assert.deepEqual(contents, {
      kind: "files",
      files: [{
        path: `${dir}/ip-masq-agent`,
        bytes: new TextEncoder().encode("masqLinkLocal: true\n"),
      }],
      ignored: ["other"],
    });
  });
});

Deno.test("config dir: no ip-masq* entry is an empty list of files; no directory is missing", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/kube-proxy`, "x");
    assert.deepEqual(await readConfigDir(dir), {
      kind: "files",
      files: [],
      ignored: ["kube-proxy"],
    });
    assert.deepEqual(await readConfigDir(`${dir}/absent`), { kind: "missing" });
  });
});

Deno.test("config dir: an ip-masq* entry that is not a regular file is an error naming it", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/ip-masq-dir`);
    await Deno.mkdir(`${dir}/not-ours-dir`);
    await assert.rejects(readConfigDir(dir), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.problems.map((problem) => problem.at.file), [`${dir}/ip-masq-dir`]);
      assert.match(error.message, /is a directory, not a config file/);
      return true;
    });
  });
});
