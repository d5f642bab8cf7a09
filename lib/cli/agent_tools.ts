/**
 * Every program the agent may run, in one place: the permission list
 * (`deno.json` `permissions.agent.run`) must name exactly these, and the
 * test that checks it derives its list from here.
 *
 * @module
 */

import { allIptablesTools } from "../iptables/mode.ts";

/** The nftables dataplane's one tool. */
export const nftTool = "nft";

/** The iptables backends' own tools, then `nft`. */
export const allAgentTools: readonly string[] = [...allIptablesTools, nftTool];
