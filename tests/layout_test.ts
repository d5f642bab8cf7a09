/**
 * The layout of `lib/` as a contract: one folder per concern, each small
 * enough to hold in one's head and opening with a `mod.ts` that says what it
 * owns and what it may import; imports go down the folder order only (no
 * circles, no sideways step between the two dataplanes); and purity is a
 * property of each file: only the seams named here may touch `Deno.`.
 *
 * @module
 */
import assert from "node:assert/strict";

const lib = new URL("../lib/", import.meta.url);

/**
 * The folders from the bottom up. A file may import its own folder and the
 * folders below its own; folders on one level (the two dataplanes) never
 * import each other.
 */
const levels: readonly (readonly string[])[] = [
  ["base"],
  ["net"],
  ["settings"],
  ["config"],
  ["policy"],
  ["iptables", "nftables"],
  ["agent"],
  ["cli"],
];

/** The only files that may name `Deno.`: the process, clock, log, signal and directory seams. */
const effectfulFiles = new Set([
  "base/exec.ts",
  "base/log.ts",
  "agent/signals.ts",
  "cli/version.ts",
  "config/directory.ts",
]);

const maxModulesPerFolder = 12;

function levelOf(folder: string): number {
  const level = levels.findIndex((names) => names.includes(folder));
  assert.notEqual(level, -1, `lib/${folder}/ is not in the layout's folder order`);
  return level;
}

async function libFiles(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for await (const folder of Deno.readDir(lib)) {
    if (!folder.isDirectory) continue;
    for await (const entry of Deno.readDir(new URL(`${folder.name}/`, lib))) {
      if (!entry.isFile || !entry.name.endsWith(".ts")) continue;
      const path = `${folder.name}/${entry.name}`;
      files.set(path, await Deno.readTextFile(new URL(path, lib)));
    }
  }
  return files;
}

/** The code without comments, so a doc example or a comment naming `Deno.` does not count. */
function code(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
}

/** The lib folders a file's static and dynamic imports name (outside comments). */
function importedFolders(path: string, text: string): string[] {
  const folders: string[] = [];
  const specifiers = code(text).matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g);
  for (const [, specifier] of specifiers) {
    const target = new URL(specifier, new URL(path, lib)).href;
    if (!target.startsWith(lib.href)) continue;
    folders.push(target.slice(lib.href.length).split("/")[0]);
  }
  return folders;
}

Deno.test("lib/ has only the layout's folders, none over the module limit, each with a mod.ts map", async () => {
  const files = await libFiles();
  const byFolder = new Map<string, string[]>();
  for (const path of files.keys()) {
    const [folder, name] = path.split("/");
    byFolder.set(folder, [...byFolder.get(folder) ?? [], name]);
  }
  assert.deepEqual([...byFolder.keys()].sort(), levels.flat().sort());
  for (const [folder, names] of byFolder) {
    const modules = names.filter((name) => name !== "mod.ts");
    assert.ok(
      modules.length <= maxModulesPerFolder,
      `lib/${folder}/ holds ${modules.length} modules (at most ${maxModulesPerFolder})`,
    );
    const map = files.get(`${folder}/mod.ts`);
    assert.ok(map, `lib/${folder}/mod.ts is missing`);
    assert.match(map, /Owns:/, `lib/${folder}/mod.ts does not say what the folder owns`);
    assert.match(map, /May import:/, `lib/${folder}/mod.ts does not say what it may import`);
  }
});

Deno.test("imports go down the folder order only: no circles, no step between dataplanes", async () => {
  const upward: string[] = [];
  for (const [path, text] of await libFiles()) {
    const folder = path.split("/")[0];
    for (const target of importedFolders(path, text)) {
      if (target === folder || levelOf(target) < levelOf(folder)) continue;
      upward.push(`lib/${path} imports lib/${target}/`);
    }
  }
  assert.deepEqual(upward, []);
});

Deno.test("each mod.ts's 'May import' line names exactly the folders below it", async () => {
  const files = await libFiles();
  for (const [level, folders] of levels.entries()) {
    const below = levels.slice(0, level).flat();
    for (const folder of folders) {
      const line = /May import: ([^\n]*)/.exec(files.get(`${folder}/mod.ts`) ?? "")?.[1] ?? "";
      const named = [...line.matchAll(/`(\w+)\/`/g)].map((match) => match[1]);
      assert.deepEqual(named, below, `lib/${folder}/mod.ts: ${line}`);
    }
  }
});

Deno.test("purity is per file: only the seams touch Deno", async () => {
  const impure: string[] = [];
  for (const [path, text] of await libFiles()) {
    if (/\bDeno\./.test(code(text)) && !effectfulFiles.has(path)) impure.push(`lib/${path}`);
  }
  assert.deepEqual(impure, []);
  // The list is kept honest both ways: a seam that no longer touches Deno leaves it.
  const files = await libFiles();
  for (const path of effectfulFiles) {
    assert.match(code(files.get(path) ?? ""), /\bDeno\./, `lib/${path} no longer touches Deno`);
  }
});
