/**
 * A config directory laid out and updated the way kubelet projects a
 * ConfigMap volume: the files live in a timestamped `..<ts>` directory, a
 * `..data` symlink points at it, and each visible name is a symlink through
 * `..data`. An update writes a new directory, swaps `..data` with one
 * rename, then removes the old directory (kubelet's AtomicWriter).
 *
 * @module
 */

let generation = 0;

export class ConfigMapDir {
  #current?: string;
  #names = new Set<string>();

  private constructor(readonly path: string) {}

  /** Creates the directory (which must not exist yet) with the given files. */
  static async create(path: string, files: Record<string, string>): Promise<ConfigMapDir> {
    await Deno.mkdir(path);
    const dir = new ConfigMapDir(path);
    await dir.update(files);
    return dir;
  }

  /** Replaces the whole content atomically, as kubelet does on a ConfigMap change. */
  async update(files: Record<string, string>): Promise<void> {
    const next = `..${Date.now()}_${Deno.pid}_${generation++}`;
    await Deno.mkdir(`${this.path}/${next}`);
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${this.path}/${next}/${name}`, text);
    }
    await Deno.remove(`${this.path}/..data_tmp`).catch(() => {});
    await Deno.symlink(next, `${this.path}/..data_tmp`);
    await Deno.rename(`${this.path}/..data_tmp`, `${this.path}/..data`);
    for (const name of Object.keys(files)) {
      if (this.#names.has(name)) continue;
      await Deno.symlink(`..data/${name}`, `${this.path}/${name}`);
      this.#names.add(name);
    }
    for (const name of [...this.#names]) {
      if (name in files) continue;
      await Deno.remove(`${this.path}/${name}`);
      this.#names.delete(name);
    }
    if (this.#current) await Deno.remove(`${this.path}/${this.#current}`, { recursive: true });
    this.#current = next;
  }
}
