// What to do with an answer, and how long to wait before the next attempt.

/** Capped exponential backoff with full jitter: uniform in [0, min(max, base * 2^attempt)).
 * @param {number} attempt 0 for the first retry
 * @param {number} baseMs
 * @param {number} maxMs
 * @param {() => number} [random]
 * @returns {number} */
export function backoffDelay(attempt, baseMs, maxMs, random = Math.random) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

const MAX_RETRY_AFTER_MS = 3_600_000;

/** `Retry-After` (seconds or an HTTP date) in milliseconds from now, or 0 if absent or unreadable.
 * @param {string | null} header
 * @param {number} nowMs
 * @returns {number} */
export function retryAfterMs(header, nowMs) {
  if (!header) return 0;
  const secs = Number(header);
  const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(header) - nowMs;
  return Number.isFinite(ms) && ms > 0 ? Math.min(ms, MAX_RETRY_AFTER_MS) : 0;
}

/** @typedef {"done" | "retry" | "split" | "drop"} Outcome */

/** What an HTTP status means for the batch that got it.
 * 2xx: stored (or, 204, refused by an opted-out/disabled collector: never resend).
 * 408, 425, 429, 5xx, 401/403 (a key the operator may fix): keep the batch and retry later.
 * 413 with more than one event: split in two. Other 4xx: the batch can never be accepted; dropped and counted.
 * @param {number} status
 * @param {number} size events in the batch
 * @returns {Outcome} */
export function classify(status, size) {
  if (status >= 200 && status < 300) return "done";
  if (status === 413 && size > 1) return "split";
  if (status >= 500 || [401, 403, 408, 425, 429].includes(status)) return "retry";
  return "drop";
}
