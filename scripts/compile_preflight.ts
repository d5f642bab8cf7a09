/**
 * Runs before `deno task compile` and `deno task compile:arm64` (their
 * `dependencies` in deno.json): `deno compile --target` needs the Deno
 * runtime of that target (`denort`), which it downloads from dl.deno.land on
 * first use. Offline it failed with a DNS error after creating an empty
 * `dist/`. This says up front what is missing and how to compile offline:
 * `DENORT_BIN=/path/to/denort deno task compile`, with the denort of the same
 * Deno version and target.
 *
 *   deno run --allow-env --allow-read --allow-write=dist --allow-net=dl.deno.land \
 *     scripts/compile_preflight.ts x86_64-unknown-linux-gnu
 *
 * Exit 0 when the compile can proceed, 1 (with the reason on stderr) when not.
 *
 * @module
 */

/** Where the runtime for `target` can come from, as far as this machine can tell. */
export type DenortSource =
  | { readonly kind: "env"; readonly path: string }
  | { readonly kind: "cached"; readonly path: string }
  | { readonly kind: "download"; readonly url: string };

/** What the preflight found out, for {@link preflightVerdict}. */
export interface PreflightFacts {
  /** The target triple `deno compile --target` builds for. */
  readonly target: string;
  /** `Deno.version.deno`. */
  readonly denoVersion: string;
  /** `DENORT_BIN`, if set. */
  readonly denortBin?: string;
  /** Whether `DENORT_BIN` names an executable file. */
  readonly denortBinExecutable?: boolean;
  /** The cached zip of this version and target in DENO_DIR, if present. */
  readonly cachedZip?: string;
  /** Why dl.deno.land could not be reached; undefined when it answered. */
  readonly downloadFailure?: string;
}

/** The release archive `deno compile` downloads for `target`. */
export function denortUrl(denoVersion: string, target: string): string {
  return `https://dl.deno.land/release/v${denoVersion}/denort-${target}.zip`;
}

/**
 * Whether the compile can proceed, and from which runtime; or the message that says why not
 * and what to do.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { preflightVerdict } from "./compile_preflight.ts";
 *
 * const offline = preflightVerdict({
 *   target: "x86_64-unknown-linux-gnu",
 *   denoVersion: "2.9.6",
 *   downloadFailure: "dns error",
 * });
 * assert.ok(!offline.ok);
 * assert.match(offline.message, /DENORT_BIN=\/path\/to\/denort deno task compile/);
 * ```
 */
export function preflightVerdict(
  facts: PreflightFacts,
): { ok: true; source: DenortSource } | { ok: false; message: string } {
  const url = denortUrl(facts.denoVersion, facts.target);
  if (facts.denortBin !== undefined && facts.denortBin !== "") {
    return facts.denortBinExecutable
      ? { ok: true, source: { kind: "env", path: facts.denortBin } }
      : {
        ok: false,
        message: `DENORT_BIN=${facts.denortBin} is not an executable file: it must be the ` +
          `denort binary of Deno ${facts.denoVersion} for ${facts.target} (unzipped from ${url})`,
      };
  }
  if (facts.cachedZip !== undefined) {
    return { ok: true, source: { kind: "cached", path: facts.cachedZip } };
  }
  if (facts.downloadFailure === undefined) return { ok: true, source: { kind: "download", url } };
  return {
    ok: false,
    message: `deno compile --target ${facts.target} needs the Deno ${facts.denoVersion} runtime ` +
      `for that target (denort), which is not in DENO_DIR, and ${url} cannot be reached ` +
      `(${facts.downloadFailure}). To compile offline, fetch that zip on a machine with network ` +
      `access, unzip it here, and run:\n  DENORT_BIN=/path/to/denort deno task compile` +
      (facts.target.startsWith("aarch64") ? ":arm64" : "") +
      "\nNothing was compiled and no dist/ was created.",
  };
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    const info = await Deno.stat(path);
    return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

function denoDir(): string {
  const explicit = Deno.env.get("DENO_DIR");
  if (explicit) return explicit;
  const cache = Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME") ?? "/root"}/.cache`;
  return `${cache}/deno`;
}

async function downloadFailure(url: string): Promise<string | undefined> {
  try {
    const response = await fetch(url, { method: "HEAD", signal: AbortSignal.timeout(10_000) });
    await response.body?.cancel();
    return response.ok ? undefined : `HTTP ${response.status}`;
  } catch (error) {
    const messages: string[] = [];
    for (let current: unknown = error; current instanceof Error; current = current.cause) {
      messages.push(current.message);
    }
    return messages.join(": ") || String(error);
  }
}

/** An empty dist/ left by an earlier failed compile says nothing: remove it. */
async function removeEmptyDist(): Promise<void> {
  try {
    for await (const _ of Deno.readDir("dist")) return;
    await Deno.remove("dist");
  } catch {
    // Absent, or not ours to touch.
  }
}

async function main(args: readonly string[]): Promise<number> {
  const target = args[0];
  if (!target) {
    console.error("usage: compile_preflight.ts TARGET (e.g. x86_64-unknown-linux-gnu)");
    return 2;
  }
  const denoVersion = Deno.version.deno;
  const denortBin = Deno.env.get("DENORT_BIN");
  const zip = `${denoDir()}/dl/release/v${denoVersion}/denort-${target}.zip`;
  const facts: PreflightFacts = {
    target,
    denoVersion,
    denortBin,
    denortBinExecutable: denortBin ? await isExecutableFile(denortBin) : undefined,
    cachedZip: (await exists(zip)) ? zip : undefined,
  };
  const needsDownload = !denortBin && facts.cachedZip === undefined;
  const verdict = preflightVerdict({
    ...facts,
    downloadFailure: needsDownload
      ? await downloadFailure(denortUrl(denoVersion, target))
      : undefined,
  });
  await removeEmptyDist();
  if (verdict.ok) return 0;
  console.error(`deno task compile: ${verdict.message}`);
  return 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
