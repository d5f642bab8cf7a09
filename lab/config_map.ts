/**
 * A config directory laid out and updated the way kubelet projects a
 * ConfigMap volume (kubelet's AtomicWriter):
 *
 * ```
 * ..2026_01_15_10_20_30.000000001/ip-masq-agent   (the data)
 * ..data -> ..2026_01_15_10_20_30.000000001
 * ip-masq-agent -> ..data/ip-masq-agent
 * ```
 *
 * An update writes a new timestamped directory, points `..data_tmp` at it,
 * renames `..data_tmp` over `..data` (the atomic moment), adds the links of
 * new keys, removes the links of keys that are gone, and removes the old
 * directory. The one helper for this layout: the loop tests, the fault tests
 * and the benchmark all use it.
 *
 * @module
 */

let generation = 0;

/** `..YYYY_MM_DD_HH_MM_SS.<9 digits>`, as kubelet names its data directories. */
function timestampedName(date: Date): string {
  const two = (n: number) => String(n).padStart(2, "0");
  return `..${date.getUTCFullYear()}_${two(date.getUTCMonth() + 1)}_${two(date.getUTCDate())}_` +
    `${two(date.getUTCHours())}_${two(date.getUTCMinutes())}_${two(date.getUTCSeconds())}.` +
    String(++generation).padStart(9, "0");
}

export class ConfigMapDir {
  #current?: string;
  #names = new Set<string>();

  /** Nothing is created until the first `update`: until then the directory may be absent. */
  constructor(readonly path: string) {}

  /** Creates the directory with the given files, as kubelet's first write does. */
  static async create(path: string, files: Record<string, string>): Promise<ConfigMapDir> {
    const dir = new ConfigMapDir(path);
    await dir.update(files);
    return dir;
  }

  /**
   * Replaces the whole content atomically, as kubelet does on a ConfigMap
   * change. `afterRename` runs in kubelet's window between the rename of
   * `..data` and the removal of links to keys that are gone (they dangle
   * meanwhile). Returns `Date.now()` taken right after the rename.
   */
  async update(
    files: Record<string, string>,
    options: { afterRename?: () => Promise<void> } = {},
  ): Promise<number> {
    const { path } = this;
    await Deno.mkdir(path, { recursive: true });
    const next = timestampedName(new Date());
    await Deno.mkdir(`${path}/${next}`, { mode: 0o755 });
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${path}/${next}/${name}`, text, { mode: 0o644 });
    }
    await Deno.remove(`${path}/..data_tmp`).catch(() => {});
    await Deno.symlink(next, `${path}/..data_tmp`);
    await Deno.rename(`${path}/..data_tmp`, `${path}/..data`);
    const swappedAt = Date.now();
    await options.afterRename?.();
    for (const name of Object.keys(files)) {
      if (this.#names.has(name)) continue;
      await Deno.symlink(`..data/${name}`, `${path}/${name}`);
      this.#names.add(name);
    }
    for (const name of [...this.#names]) {
      if (name in files) continue;
      await Deno.remove(`${path}/${name}`);
      this.#names.delete(name);
    }
    if (this.#current) await Deno.remove(`${path}/${this.#current}`, { recursive: true });
    this.#current = next;
    return swappedAt;
  }
}
