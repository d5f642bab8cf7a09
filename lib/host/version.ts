/**
 * The agent's version. Its one source is `version` in deno.json, which
 * `deno compile` embeds along with the code.
 *
 * @module
 */

import denoConfig from "../../deno.json" with { type: "json" };

export const agentVersion: string = denoConfig.version;

export function versionText(): string {
  return `ip-masq-agent ${agentVersion} (deno ${Deno.version.deno}, v8 ${Deno.version.v8})`;
}
