/**
 * What the fake's parsing throws inside one restore; the restore turns it
 * into an ToolError naming the line, as iptables-restore does.
 *
 * @module
 */

/** A line of restore input the fake (like iptables-restore) rejects. */
export class RestoreProblem extends Error {}
