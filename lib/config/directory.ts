/**
 * Reading and watching the config directory: its `ip-masq*` entries, sorted, confined, size-capped.
 *
 * @module
 */

import { ConfigError, type ConfigProblem } from "../base/problems.ts";
import {
  type ConfigDirContents,
  type ConfigFileBytes,
  configFilePrefix,
  maxConfigFileBytes,
} from "./parse.ts";
import { quoteInput } from "../base/quote.ts";
import { SandboxDeniedError } from "../base/errors.ts";
import { type Clock, systemClock } from "../base/clock.ts";

export type { ConfigDirContents };

/** Reads the config directory `dir` (`missing` when absent); `sleep` waits between attempts. */
export async function readConfigDir(
  dir: string,
  { sleep = systemClock.sleep }: Partial<Pick<Clock, "sleep">> = {},
): Promise<ConfigDirContents> {
  for (let attempt = 0;; attempt++) {
    try {
      return await readOnce(dir);
    } catch (error) {
      if (!(error instanceof VanishedEntry)) throw error;
      // kubelet swaps `..data` atomically, but only then removes the links of keys that are gone,
      // so such a link dangles for a moment: read again shortly. Retrying at once would race
      // kubelet and, with `--exit-on-config-error`, turn a routine ConfigMap update into an exit.
      const delayMs = [25, 100][attempt];
      if (delayMs === undefined) {
        const message = "is a dangling symbolic link (its target does not exist)";
        throw new ConfigError([{ at: { file: error.path }, message }]);
      }
      await sleep(delayMs);
    }
  }
}

class VanishedEntry extends Error {
  constructor(readonly path: string) {
    super(`${path} disappeared while reading`);
  }
}

async function readOnce(dir: string): Promise<ConfigDirContents> {
  const names: string[] = [];
  const ignored: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      // Other names are worth a warning (v1's ConfigMap key `config`, a typo), unless hidden
      // (kubelet's `..data` and timestamped directories).
      if (entry.name.startsWith(configFilePrefix)) names.push(entry.name);
      else if (!entry.name.startsWith(".")) ignored.push(entry.name);
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { kind: "missing" };
    // Like an unreadable file: the deployment's config is wrong (exit 2), not iptables (exit 1).
    const invalid = (message: string) => new ConfigError([{ at: { file: dir }, message }]);
    if (error instanceof Deno.errors.PermissionDenied) {
      throw invalid("cannot be listed: permission denied");
    }
    if (error instanceof Deno.errors.NotADirectory) {
      throw invalid("is not a directory (--config-dir)");
    }
    throw translate(error, dir, "cannot list the config directory");
  }
  // Go's sort.Strings compares bytes: for the names kubelet writes, sort()'s code-unit order.
  names.sort();
  ignored.sort();
  const problems: ConfigProblem[] = [];
  const files: ConfigFileBytes[] = [];
  // The config directory's resolved path, ending in `/`: what every entry must resolve inside.
  const inside = names.length === 0 ? "" : await Deno.realPath(dir).then(
    (resolved) => `${resolved.replace(/\/+$/, "")}/`,
    (error) => Promise.reject(translate(error, dir, "cannot resolve the config directory")),
  );
  for (const name of names) {
    const path = `${dir.replace(/\/+$/, "")}/${name}`;
    const escape = await escapesDir(path, inside);
    const read = escape === undefined ? await readCapped(path) : { problem: escape };
    if ("problem" in read) problems.push({ at: { file: path }, message: read.problem });
    else files.push({ path, bytes: read.bytes });
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { kind: "files", files, ...(ignored.length > 0 ? { ignored } : {}) };
}

/**
 * Why an entry resolving outside the config directory is not read (a symlink to /etc/shadow would
 * have its lines echoed in the errors); kubelet's links stay inside. Names only the entry.
 */
async function escapesDir(path: string, inside: string): Promise<string | undefined> {
  let target: string;
  try {
    target = await Deno.realPath(path);
  } catch (error) {
    // readCapped reports any other error (permission denied, ...) as it would without the link.
    return entryProblem(error, path);
  }
  if (target.startsWith(inside)) return undefined;
  return `resolves to ${quoteInput(target)}, outside the config directory; not read (a config ` +
    "entry must be a file in the directory, or a link that stays inside it as kubelet's do)";
}

/** A vanished or sandbox-denied entry throws; a link loop is the entry's problem. */
function entryProblem(error: unknown, path: string): string | undefined {
  if (error instanceof Deno.errors.NotFound) throw new VanishedEntry(path);
  if (error instanceof Deno.errors.NotCapable) throw new SandboxDeniedError("read", path, error);
  if (error instanceof Deno.errors.FilesystemLoop) return "is a symbolic link loop";
  return undefined;
}

async function readCapped(path: string): Promise<{ bytes: Uint8Array } | { problem: string }> {
  let opened: Deno.FsFile;
  let size: number;
  try {
    const info = await Deno.stat(path);
    if (info.isDirectory) return { problem: "is a directory, not a config file" };
    if (!info.isFile) return { problem: "is not a regular file" };
    size = info.size;
    opened = await Deno.open(path, { read: true });
  } catch (error) {
    const problem = entryProblem(error, path) ??
      (error instanceof Deno.errors.PermissionDenied
        ? "cannot be read: permission denied"
        : `cannot be read: ${error instanceof Error ? error.message : error}`);
    return { problem };
  }
  using file = opened;
  // The buffer starts at the size `stat` reported, plus one byte (reading 0 bytes there proves the
  // end without growing): a fixed 1 MiB one per file per reconcile cost +60 MB RSS per 100
  // reconciles (docs/benchmarks.md).
  const limit = maxConfigFileBytes;
  let buffer = new Uint8Array(Math.min(Math.max(size, 4096), limit) + 1);
  let length = 0;
  while (length <= limit) {
    if (length === buffer.length) {
      const grown = new Uint8Array(Math.min(buffer.length * 2, limit + 1));
      grown.set(buffer);
      buffer = grown;
    }
    const count = await file.read(buffer.subarray(length));
    if (count === null) break;
    length += count;
  }
  if (length > limit) {
    return { problem: `is larger than ${limit} bytes (the ConfigMap limit); not read` };
  }
  return { bytes: buffer.slice(0, length) };
}

function translate(error: unknown, path: string, what: string): Error {
  if (error instanceof Deno.errors.NotCapable) return new SandboxDeniedError("read", path, error);
  return new Error(`${what} ${path}`, { cause: error });
}

/** A running watch of the config directory. */
export interface DirectoryWatch {
  /** Stops watching. */
  close(): void;
  /** True when the directory was removed or replaced: inotify then watches a dead inode. */
  isStale(): Promise<boolean>;
}

/** Watches the directory itself: a watch on a file would not survive kubelet's `..data` swap. */
export async function watchConfigDir(dir: string, onChange: () => void): Promise<DirectoryWatch> {
  // Events name absolute, resolved paths; inode numbers are no identity (a new directory may get
  // the old one's), so removal is recognised by an event about the directory itself. That event
  // may come after the next reconcile's read, so a different inode or birth time (a directory
  // made anew under the same path) says so too, without waiting for it.
  const self = await Deno.realPath(dir);
  const identity = directoryIdentity(await Deno.stat(self));
  let stale = false;
  const watcher = Deno.watchFs(dir, { recursive: false });
  (async () => {
    for await (const event of watcher) {
      if (event.paths.includes(self) && event.kind === "remove") stale = true;
      if (stale || event.paths.some(isRelevant)) onChange();
    }
  })().catch(() => {
    // Closing the watcher ends the iteration; the periodic resync covers anything else.
  });
  return {
    close: () => watcher.close(),
    isStale: async () => {
      if (stale) return true;
      try {
        if (await Deno.realPath(dir) !== self) return true;
        return directoryIdentity(await Deno.stat(self)) !== identity;
      } catch {
        return true;
      }
    },
  };
}

/** Inode and birth time: equal for the same directory; a new one differs in either, mostly. */
function directoryIdentity(info: Deno.FileInfo): string {
  return `${info.ino ?? ""}/${info.birthtime?.getTime() ?? ""}`;
}

function isRelevant(path: string): boolean {
  const name = path.slice(path.lastIndexOf("/") + 1);
  return name.startsWith(configFilePrefix) || name.startsWith("..");
}
