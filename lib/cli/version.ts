/**
 * The agent's version line. The version's one source is `version` in deno.json, which
 * `deno compile` embeds along with the code.
 *
 * @module
 */

import denoConfig from "../../deno.json" with { type: "json" };

/** What `--version` prints and the start-up line logs: the agent's, Deno's and V8's versions. */
export function versionText(): string {
  return `ip-masq-agent ${denoConfig.version} (deno ${Deno.version.deno}, v8 ${Deno.version.v8})`;
}
