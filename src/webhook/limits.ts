// Bounds on what one request may cost, and safe words for values a client controls: no
// input can make the webhook recurse deeply, build a huge answer, or log a huge line.

/** Deeper than any Pod (about 15 levels); far below what would exhaust the stack. */
export const MAX_JSON_DEPTH = 128;

/**
 * The deepest nesting of arrays and objects in a JSON text, counted without parsing, and
 * stopping as soon as it passes `limit` (so a 100,000-level body costs one short scan).
 */
export function jsonDepthExceeds(text: string, limit = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

const SHOWN_CHARS = 64;

/** A short description of a client's value for a message or a log line, whatever its size or shape. */
export function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > SHOWN_CHARS ? `${v.slice(0, SHOWN_CHARS)}…` : v);
  if (v === null || typeof v === "number" || typeof v === "boolean") return String(v);
  if (v === undefined) return "nothing";
  return Array.isArray(v) ? "an array" : "an object";
}

/** Cuts a string a client sent (a path, a header) to a loggable length. */
export function clip(s: string): string {
  return s.length > SHOWN_CHARS ? `${s.slice(0, SHOWN_CHARS)}…` : s;
}

/**
 * A pod with more containers than this is allowed unpatched: real pods have a handful, and
 * the patch (about ten operations per container) must stay a small answer.
 */
export const MAX_CONTAINERS = 256;
/** The largest JSON Patch the webhook returns (before base64); larger: allowed unpatched. */
export const MAX_PATCH_BYTES = 1024 * 1024;

/** Open connections; past this the oldest connection with no request in progress is closed. */
export const MAX_CONNECTIONS = 256;
/** A TLS handshake, and the request headers, must arrive within this. */
export const HEADERS_TIMEOUT_MS = 10_000;
/** A whole request body must arrive within this. */
export const REQUEST_TIMEOUT_MS = 30_000;
/** An idle keep-alive connection is closed after this (the API server reconnects). */
export const KEEP_ALIVE_MS = 30_000;

/** A body this large marks the process for a full garbage collection once it is quiet. */
export const LARGE_BODY_BYTES = 256 * 1024;
/** How long without a large body before that collection runs. */
export const QUIET_MS = 2000;
