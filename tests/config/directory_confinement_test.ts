/**
 * lib/config/directory.ts on real directories (no root needed): entries that
 * resolve outside the config directory, kubelet's `..data` links, and names
 * that are ignored.
 */

import assert from "node:assert/strict";
import { ConfigError } from "../../lib/base/problems.ts";
import { readConfigDir } from "../../lib/config/directory.ts";
import { ConfigMapDir } from "../../lab/config_map.ts";

Deno.test("issue 15: an entry resolving outside the directory is refused, naming only the entry", async () => {
  const root = await Deno.makeTempDir({ prefix: "imt-confine-" });
  try {
    const secret = `${root}/shadow`;
    await Deno.writeTextFile(secret, "root:*:20228:0:99999:7:::\n");
    const dir = `${root}/config`;
    await Deno.mkdir(dir);
    await Deno.symlink(secret, `${dir}/ip-masq-agent`);
    // A relative link that climbs out counts the same.
    await Deno.symlink("../shadow", `${dir}/ip-masq-climb`);
    await assert.rejects(readConfigDir(dir), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.problems.length, 2);
      assert.deepEqual(error.problems.map((problem) => problem.at.file), [
        `${dir}/ip-masq-agent`,
        `${dir}/ip-masq-climb`,
      ]);
      assert.match(error.message, /outside the config directory; not read/);
      assert.doesNotMatch(error.message, /root:\*|20228/);
      return true;
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("issue 15: kubelet's ..data links stay inside and are read; other names are listed as ignored", async () => {
  const root = await Deno.makeTempDir({ prefix: "imt-confine-" });
  try {
    const dir = `${root}/config`;
    await ConfigMapDir.create(dir, {
      "ip-masq-agent": "nonMasqueradeCIDRs: [10.0.0.0/8]\n",
      config: "nonMasqueradeCIDRs: [10.1.0.0/16]\n",
    });
    const contents = await readConfigDir(dir);
    assert.equal(contents.kind, "files");
    if (contents.kind !== "files") return;
    assert.deepEqual(contents.files.map((file) => file.path), [`${dir}/ip-masq-agent`]);
    assert.deepEqual(contents.ignored, ["config"], "hidden ..data entries are not listed");
    // A directory reached through a symlink still resolves its entries inside it.
    await Deno.symlink(dir, `${root}/linked`);
    const linked = await readConfigDir(`${root}/linked`);
    assert.equal(linked.kind === "files" && linked.files.length, 1);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
