/**
 * The agent's version line; its one source is deno.json's `version`, which `deno compile` embeds.
 *
 * @module
 */

import denoConfig from "../../deno.json" with { type: "json" };

/** What `--version` prints and the start-up line logs: the agent's, Deno's and V8's versions. */
export function versionText(): string {
  return `ip-masq-agent ${denoConfig.version} (deno ${Deno.version.deno}, v8 ${Deno.version.v8})`;
}
