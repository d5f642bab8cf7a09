/**
 * A root filesystem laid out like the shipped image's base,
 * registry.k8s.io/build-image/distroless-iptables, assembled from this
 * machine's Debian 12 packages:
 *
 * - `iptables`: xtables-nft-multi and xtables-legacy-multi with every name
 *   Debian links to them (iptables-nft-save, ip6tables-legacy-restore, ...)
 *   and the extension modules in /usr/lib/x86_64-linux-gnu/xtables;
 * - `nftables` (`nft`) and `ipset`;
 * - `/bin/sh` as dash, and the few tools the image stages for its wrapper
 *   script (see {@link wrapperTools});
 * - the plain `iptables`, `iptables-save`, `iptables-restore` and their
 *   ip6tables twins as links to /usr/sbin/iptables-wrapper, a double of the
 *   upstream wrapper (lab/iptables_wrapper.sh);
 * - exactly the shared libraries all of these link (ldd), nothing else.
 *
 * `deno compile` cannot run here, so the image's entry point (the Dockerfile's
 * ENTRYPOINT, /ip-masq-agent) is a stand-in: a dash script that runs the deno
 * binary (with its libraries) as `deno run` with the compile task's own
 * permission set and V8 flags, read from deno.json. It needs the repository
 * at {@link labMounts}.repo and the module cache at {@link labMounts}.denoDir,
 * which the OCI bundle bind-mounts read-only (lab/oci_bundle.ts).
 *
 * Built once and cached in /tmp/ip-masq-agent-rootfs-<hash>, where the hash
 * covers every source file (path, inode, size, mtime) and every generated
 * file, so an upgraded package or an edited wrapper makes a new one. Files are
 * hard links where possible (same file system), copies otherwise.
 *
 * @module
 */

import denoConfig from "../deno.json" with { type: "json" };
import { multiBinary, plainToolNames } from "./netns.ts";

const repoRoot = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const wrapperSource = new URL("./iptables_wrapper.sh", import.meta.url).pathname;
const decoder = new TextDecoder();

/** Bump to rebuild every cached root after a change to how it is assembled. */
const layoutVersion = 2;

/** Where the lab's own mounts go inside the root (none of them exists in the real image). */
export const labMounts = {
  /** The repository, read-only: main.ts and deno.json for the stand-in entry point. */
  repo: "/src",
  /** A populated DENO_DIR, read-only. */
  denoDir: "/deno-dir",
  /** A writable directory for the lab's accounting (the wrapper double's log). */
  lab: "/run/lab",
} as const;

/** Appended to by the wrapper double when it exists (see lab/iptables_wrapper.sh). */
export const wrapperLogPath = `${labMounts.lab}/wrapper.log`;

/** The six names the image points at the wrapper: the plain iptables names. */
export const wrappedNames = plainToolNames;

export const wrapperPath = "/usr/sbin/iptables-wrapper";
/** Each backend's multi-call binary, where Debian and the image install it. */
export const multiBinaries = { nft: multiBinary("nft"), legacy: multiBinary("legacy") } as const;

/**
 * Besides dash, distroless-iptables stages exactly these for its wrapper script
 * (kubernetes/release, images/build/distroless-iptables/distroless-bookworm/
 * Dockerfile: "below binaries and dash are used by iptables-wrapper-installer.sh").
 * Without grep and wc the wrapper's detection would always answer nft, and
 * without rm and ln its relink would fail for another reason than a read-only
 * root, so a faithful double needs them. The agent runs none of them.
 */
export const wrapperTools = ["cat", "chmod", "grep", "ln", "rm", "sleep", "wc"] as const;

/** The stand-in entry point's deno, outside PATH: the agent must not find a `deno` tool. */
const denoInRoot = "/opt/deno/bin/deno";

export interface Rootfs {
  /** Host path of the root directory; mount it read-only. */
  readonly path: string;
  /** The image's entry point inside the root (the stand-in script). */
  readonly entrypoint: string;
  /** The deno run command line the entry point runs, before the agent's arguments. */
  readonly denoCommand: readonly string[];
  /** True when this call built the root, false when it was cached. */
  readonly built: boolean;
}

export interface RootfsOptions {
  /** Mount points the runtime needs in the root (directories), e.g. the manifest's. */
  readonly mountDirs?: readonly string[];
  /** Mount points that are files (a bind-mounted lock file). */
  readonly mountFiles?: readonly string[];
}

// ---------------------------------------------------------------------------------------------
// What the machine must have.

function commandPath(name: string): string | undefined {
  try {
    const output = new Deno.Command("sh", { args: ["-c", `command -v ${name}`], stdout: "piped" })
      .outputSync();
    const path = decoder.decode(output.stdout).trim();
    return output.success && path.startsWith("/") ? path : undefined;
  } catch {
    return undefined;
  }
}

/** Undefined when the root can be assembled here; otherwise why not (and what to install). */
export const rootfsSkipReason: string | undefined = (() => {
  if (Deno.build.os !== "linux") return "the production-shape root needs Linux";
  const needed: [string, string][] = [
    ["dpkg", "dpkg"],
    ["ldd", "libc-bin"],
    ["xtables-nft-multi", "iptables"],
    ["xtables-legacy-multi", "iptables"],
    ["nft", "nftables"],
    ["ipset", "ipset"],
    ["dash", "dash"],
    ...wrapperTools.map((tool): [string, string] => [tool, tool === "grep" ? "grep" : "coreutils"]),
  ];
  const missing = needed.filter(([tool]) => !commandPath(tool));
  if (missing.length === 0) return undefined;
  const packages = [...new Set(missing.map(([, pkg]) => pkg))].join(" ");
  return `${missing.map(([tool]) => tool).join(", ")} missing (apt-get install -y ${packages})`;
})();

// ---------------------------------------------------------------------------------------------
// The stand-in entry point.

/** Compile-only options and the value each takes; `deno run` has no use for them. */
const compileOnlyOptions = new Set([
  "--target",
  "--output",
  "-o",
  "--include",
  "--exclude",
  "--icon",
]);

function tokens(task: string): string[] {
  return task.trim().split(/\s+/);
}

/** A deno.json task written as an object (with `dependencies`, a description). */
interface TaskObject {
  readonly command: string;
}

/** A task's command line, whether it is written as a string or `{ command }`. */
function commandOf(task: string | TaskObject): string {
  return typeof task === "string" ? task : task.command;
}

/**
 * The compile task's runtime options, which the compiled binary bakes in: its
 * permission flags, V8 flags and code-cache setting, in the task's order. Fails
 * when the start task's permission or V8 flags differ, since then "the
 * production permission set" would be ambiguous.
 */
export function compiledRuntimeFlags(
  tasks: { readonly compile: string | TaskObject; readonly start: string } = denoConfig.tasks,
): string[] {
  const compile = tokens(commandOf(tasks.compile));
  if (compile[0] !== "deno" || compile[1] !== "compile") {
    throw new Error(`tasks.compile is not a deno compile command: ${commandOf(tasks.compile)}`);
  }
  const flags: string[] = [];
  for (let i = 2; i < compile.length - 1; i++) {
    const [name] = compile[i].split("=", 1);
    if (compileOnlyOptions.has(name)) {
      if (!compile[i].includes("=")) i++;
      continue;
    }
    flags.push(compile[i]);
  }
  const shaping = (list: readonly string[]) =>
    list.filter((t) => /^(-P|--permission-set|--allow-|--deny-|-[ARWNES]|--v8-flags)/.test(t));
  const start = tokens(tasks.start);
  if (JSON.stringify(shaping(start)) !== JSON.stringify(shaping(flags))) {
    throw new Error(
      `tasks.start and tasks.compile disagree on permissions or V8 flags: ` +
        `${shaping(start).join(" ")} vs ${shaping(flags).join(" ")}`,
    );
  }
  return flags;
}

function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
}

function denoCommand(): string[] {
  const entry = tokens(commandOf(denoConfig.tasks.compile)).at(-1)!;
  return [
    denoInRoot,
    "run",
    ...compiledRuntimeFlags(),
    // Read-only DENO_DIR and repository: never fetch, never write a lockfile. Deno then
    // keeps its caches (transpiled modules, the type-check and npm resolution caches) in
    // memory, since their SQLite files cannot be opened for writing; nothing else needs to
    // write, so no tmpfs is mounted for it.
    "--cached-only",
    "--frozen",
    `--config=${labMounts.repo}/deno.json`,
    `${labMounts.repo}/${entry}`,
  ];
}

function entrypointScript(command: readonly string[]): string {
  return [
    "#!/bin/sh",
    "# The lab's stand-in for the compiled agent (deno compile cannot run here): the compile",
    "# task's permission set and V8 flags, as deno run. exec, so that deno is PID 1 and gets",
    "# the runtime's signals as the binary would. Generated by lab/rootfs.ts.",
    `exec ${command.map(shellQuote).join(" ")} "$@"`,
    "",
  ].join("\n");
}

/** The final stage's ENTRYPOINT of the repository's Dockerfile, e.g. "/ip-masq-agent". */
export async function imageEntrypoint(): Promise<string> {
  const text = await Deno.readTextFile(`${repoRoot}/Dockerfile`);
  const entries = [...text.matchAll(/^ENTRYPOINT\s+(\[.*\])\s*$/gm)];
  if (entries.length === 0) throw new Error("the Dockerfile has no ENTRYPOINT");
  const argv = JSON.parse(entries.at(-1)![1]) as string[];
  if (argv.length !== 1) throw new Error(`expected a one-word ENTRYPOINT, got ${argv.join(" ")}`);
  return argv[0];
}

// ---------------------------------------------------------------------------------------------
// Gathering the files.

interface Entry {
  /** Path inside the root. */
  readonly path: string;
  /** A host file to link or copy, a symlink target, or file content. */
  readonly from:
    | { readonly file: string }
    | { readonly symlink: string }
    | { readonly text: string; readonly mode: number };
}

async function output(command: string, args: readonly string[]): Promise<string> {
  const result = await new Deno.Command(command, {
    args: [...args],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!result.success) {
    throw new Error(`${command} ${args.join(" ")} failed: ${decoder.decode(result.stderr)}`);
  }
  return decoder.decode(result.stdout);
}

async function isElf(path: string): Promise<boolean> {
  const file = await Deno.open(path);
  try {
    const head = new Uint8Array(4);
    return (await file.read(head)) === 4 && decoder.decode(head) === "\x7fELF";
  } finally {
    file.close();
  }
}

/** The iptables package's multi binaries, the names Debian links to them, its extensions. */
async function iptablesEntries(): Promise<Entry[]> {
  const files = (await output("dpkg", ["-L", "iptables"])).split("\n").filter((p) => p !== "");
  const entries: Entry[] = [];
  const multis = Object.values(multiBinaries).map((path) => path.split("/").at(-1)!);
  for (const path of files) {
    const info = await Deno.lstat(path).catch(() => undefined);
    if (!info || info.isDirectory) continue;
    if (path.startsWith("/usr/sbin/")) {
      if (info.isSymlink) {
        const target = await Deno.readLink(path);
        if (multis.includes(target)) entries.push({ path, from: { symlink: target } });
      } else if (multis.includes(path.split("/").at(-1)!)) {
        entries.push({ path, from: { file: path } });
      }
    } else if (/\/xtables\/[^/]+\.so$/.test(path)) {
      entries.push({
        path,
        from: info.isSymlink ? { symlink: await Deno.readLink(path) } : { file: path },
      });
    }
  }
  for (const multi of Object.values(multiBinaries)) {
    if (!entries.some((e) => e.path === multi)) throw new Error(`dpkg -L iptables lacks ${multi}`);
  }
  return entries;
}

/** The shared libraries (and the loader) that `elfs` link, at the paths ldd resolves. */
async function libraryEntries(elfs: readonly string[]): Promise<Entry[]> {
  const paths = new Set<string>();
  for (const line of (await output("ldd", elfs)).split("\n")) {
    if (/=> not found/.test(line)) throw new Error(`ldd: ${line.trim()}`);
    const match = /=>\s+(\/\S+)/.exec(line) ?? /^\s+(\/\S+)\s+\(0x/.exec(line);
    if (match) paths.add(match[1]);
  }
  return [...paths].sort().map((path) => ({ path, from: { file: path } }));
}

async function gatherEntries(
  options: RootfsOptions,
): Promise<{ entries: Entry[]; dirs: string[] }> {
  const entries: Entry[] = [
    // Debian 12's merged /usr, which every path the packages and ldd name assumes.
    { path: "/bin", from: { symlink: "usr/bin" } },
    { path: "/sbin", from: { symlink: "usr/sbin" } },
    { path: "/lib", from: { symlink: "usr/lib" } },
    { path: "/lib64", from: { symlink: "usr/lib64" } },
    ...await iptablesEntries(),
  ];
  const tool = (name: string) => {
    const path = commandPath(name);
    if (!path) throw new Error(`${name} is not installed`);
    return path;
  };
  for (const name of ["nft", "ipset", "dash", ...wrapperTools]) {
    // The real file at its package path, e.g. /usr/bin/dash (not /bin/dash via the /bin link).
    const path = await Deno.realPath(tool(name));
    entries.push({ path, from: { file: path } });
  }
  entries.push({ path: "/usr/bin/sh", from: { symlink: "dash" } });
  entries.push({
    path: wrapperPath,
    from: { text: await Deno.readTextFile(wrapperSource), mode: 0o755 },
  });
  for (const name of wrappedNames) {
    entries.push({ path: `/usr/sbin/${name}`, from: { symlink: wrapperPath } });
  }
  entries.push({ path: denoInRoot, from: { file: await Deno.realPath(Deno.execPath()) } });
  const command = denoCommand();
  entries.push({
    path: await imageEntrypoint(),
    from: { text: entrypointScript(command), mode: 0o755 },
  });
  // What distroless' base provides and a runtime or deno looks at.
  entries.push({
    path: "/etc/passwd",
    from: { text: "root:x:0:0:root:/root:/sbin/nologin\n", mode: 0o644 },
  });
  entries.push({ path: "/etc/group", from: { text: "root:x:0:\n", mode: 0o644 } });
  for (const file of options.mountFiles ?? []) {
    entries.push({ path: file, from: { text: "", mode: 0o644 } });
  }

  const elfs: string[] = [];
  for (const entry of entries) {
    if ("file" in entry.from && await isElf(entry.from.file)) elfs.push(entry.from.file);
  }
  entries.push(...await libraryEntries(elfs));
  const dirs = [
    "/proc",
    "/sys",
    "/dev",
    "/tmp",
    "/root",
    "/etc",
    "/run",
    ...Object.values(labMounts),
    ...options.mountDirs ?? [],
  ];
  return { entries, dirs };
}

// ---------------------------------------------------------------------------------------------
// Building and caching.

async function fingerprint(entries: readonly Entry[], dirs: readonly string[]): Promise<string> {
  const parts: unknown[] = [layoutVersion, dirs];
  for (const entry of entries) {
    if ("file" in entry.from) {
      const info = await Deno.stat(entry.from.file);
      parts.push([entry.path, entry.from.file, info.ino, info.size, info.mtime?.getTime()]);
    } else parts.push([entry.path, entry.from]);
  }
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(JSON.stringify(parts)),
  );
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("")
    .slice(0, 16);
}

async function place(root: string, entry: Entry): Promise<void> {
  const target = `${root}${entry.path}`;
  await Deno.mkdir(target.slice(0, target.lastIndexOf("/")), { recursive: true });
  const from = entry.from;
  if ("symlink" in from) {
    await Deno.symlink(from.symlink, target);
  } else if ("text" in from) {
    await Deno.writeTextFile(target, from.text, { mode: from.mode });
    await Deno.chmod(target, from.mode);
  } else {
    // ldd may name one library by two paths that merged /usr makes one file.
    if (await exists(target)) return;
    // The file itself, not a link to it: link(2) would copy a symlink as a symlink.
    const source = await Deno.realPath(from.file);
    try {
      await Deno.link(source, target);
    } catch {
      await Deno.copyFile(source, target);
    }
  }
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

let cached: Promise<Rootfs> | undefined;
let cachedKey = "";

/**
 * The production-shape root, built on first use and reused by every later call
 * (in this process and, through /tmp, by later runs).
 */
export function productionRootfs(options: RootfsOptions = {}): Promise<Rootfs> {
  const key = JSON.stringify(options);
  if (!cached || cachedKey !== key) {
    cachedKey = key;
    cached = buildRootfs(options);
  }
  return cached;
}

async function buildRootfs(options: RootfsOptions): Promise<Rootfs> {
  const { entries, dirs } = await gatherEntries(options);
  const path = `/tmp/ip-masq-agent-rootfs-${await fingerprint(entries, dirs)}`;
  const result = { path, entrypoint: await imageEntrypoint(), denoCommand: denoCommand() };
  if (await exists(`${path}/.complete`)) return { ...result, built: false };

  // Built aside and renamed into place, so a concurrent run never sees half a root.
  const staging = await Deno.makeTempDir({ dir: "/tmp", prefix: "ip-masq-agent-rootfs-build-" });
  try {
    for (const dir of ["/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib64", ...dirs]) {
      await Deno.mkdir(`${staging}${dir}`, { recursive: true });
    }
    for (const entry of entries) await place(staging, entry);
    await Deno.chmod(`${staging}/tmp`, 0o1777);
    await Deno.writeTextFile(`${staging}/.complete`, "");
    await Deno.chmod(staging, 0o755);
    await Deno.remove(path, { recursive: true }).catch(() => {});
    await Deno.rename(staging, path);
  } catch (error) {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    if (await exists(`${path}/.complete`)) return { ...result, built: false };
    throw new Error(`assembling the production-shape root in ${path} failed`, { cause: error });
  }
  return { ...result, built: true };
}

/** The host's DENO_DIR (what `deno info` reports), to mount read-only at labMounts.denoDir. */
export async function hostDenoDir(): Promise<string> {
  const info = JSON.parse(await output(Deno.execPath(), ["info", "--json"])) as {
    denoDir?: string;
  };
  if (!info.denoDir) throw new Error("deno info --json reports no denoDir");
  return info.denoDir;
}

/**
 * Makes sure the read-only DENO_DIR (and node_modules) hold everything main.ts
 * imports, so that `--cached-only` inside the root finds it: the same
 * `deno install --frozen` CI runs first, a no-op when already done.
 */
export async function cacheAgentModules(): Promise<void> {
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["install", "--frozen"],
    cwd: repoRoot,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!result.success) {
    throw new Error(`deno install --frozen failed: ${decoder.decode(result.stderr)}`);
  }
}
