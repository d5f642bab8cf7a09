/**
 * A PATH directory whose iptables* names are wrapper scripts: each runs the
 * real tool of a backend directory (see backendBin) and then appends one line,
 * `<tool> <args>`, to a log file. Tests put it first in the agent's PATH to
 * count the process launches the agent makes (steady state: one save per
 * family, no restore). A call is logged after the tool exits, so a logged
 * call is a finished one.
 *
 * @module
 */

const toolNames = [
  "iptables",
  "iptables-save",
  "iptables-restore",
  "ip6tables",
  "ip6tables-save",
  "ip6tables-restore",
] as const;

export type ToolName = typeof toolNames[number];

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

export class ToolLog {
  private constructor(readonly binDir: string, readonly logFile: string) {}

  /** Wraps the tools of `realBinDir` in `${root}/${label}`, logging to `${root}/${label}.log`. */
  static async create(realBinDir: string, root: string, label = "tool-log"): Promise<ToolLog> {
    const binDir = `${root}/${label}`;
    const logFile = `${root}/${label}.log`;
    await Deno.mkdir(binDir, { recursive: true });
    await Deno.writeTextFile(logFile, "");
    for (const name of toolNames) {
      const script = [
        "#!/bin/sh",
        `${shellQuote(`${realBinDir}/${name}`)} "$@"`,
        "status=$?",
        `printf '%s\\n' ${shellQuote(name)}" $*" >> ${shellQuote(logFile)}`,
        'exit "$status"',
        "",
      ].join("\n");
      await Deno.writeTextFile(`${binDir}/${name}`, script, { mode: 0o755 });
      await Deno.chmod(`${binDir}/${name}`, 0o755);
    }
    return new ToolLog(binDir, logFile);
  }

  /** Every finished call since the last reset, as `<tool> <args>`. */
  async calls(): Promise<string[]> {
    const text = await Deno.readTextFile(this.logFile);
    return text.split("\n").filter((line) => line !== "");
  }

  /** How many finished calls ran `tool`. */
  async count(tool: ToolName): Promise<number> {
    return (await this.calls()).filter((line) => line.split(" ")[0] === tool).length;
  }

  async reset(): Promise<void> {
    await Deno.writeTextFile(this.logFile, "");
  }
}
