// Small pure helpers: ids, times, deterministic sampling.

/** A random UUID v4. `crypto.getRandomValues` also works on plain-http pages, unlike `randomUUID`.
 * @returns {string} */
export function uuid4() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** RFC 3339 UTC with milliseconds.
 * @param {number} ms epoch milliseconds
 * @returns {string} */
export function iso(ms) {
  return new Date(ms).toISOString();
}

/** FNV-1a (32 bit) of the actor's UTF-8 bytes as a fraction in [0, 1). The Python SDK
 * (`analytics_client.sampling`) computes the same number, so an actor is in or out everywhere.
 * @param {string} actor
 * @returns {number} */
export function sampleFraction(actor) {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(actor)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h / 4294967296;
}

/** Whether an actor's events are kept at this sample rate (the same actor always gets the same answer).
 * @param {string} actor
 * @param {number} rate in [0, 1]
 * @returns {boolean} */
export function sampled(actor, rate) {
  if (rate >= 1) return true;
  if (!(rate > 0)) return false;
  return sampleFraction(actor) < rate;
}
