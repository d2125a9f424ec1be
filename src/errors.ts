// Errors every command shares.

/** A problem the operator must fix; the message is the whole story (one line, exit 2). */
export class UsageError extends Error {}
