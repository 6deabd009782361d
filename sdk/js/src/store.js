// The persistent queue: events tracked but not sent, and batches cut but not acknowledged.
//
// Each page keeps its own queue under `<prefix>:q:<pageId>` and refreshes a heartbeat in it, so
// two tabs never overwrite each other's queue (the scheme of Segment's localstorage-retry). A
// queue whose page left (its heartbeat is set to 0 on pagehide) or died (heartbeat stale) is
// claimed by the next page of the same prefix, batches and all: a claimed batch keeps its
// batch_id and event_ids, so if its first send did reach the collector, the resend is answered
// as duplicates and nothing counts twice. Every change is written through synchronously, so a
// crash right after `track()` loses nothing.

/** @typedef {{event_id: string, event_name: string, event_version: number, t: number,
 *   actor: string, session_id: string | null, payload: Record<string, unknown>,
 *   app_version: string, platform: string}} QueuedEvent */
/** @typedef {{batch_id: string, events: QueuedEvent[]}} QueuedBatch */
/** @typedef {{hb: number, events: QueuedEvent[], batches: QueuedBatch[]}} PageQueue */
/** @typedef {Pick<Storage, "getItem" | "setItem" | "removeItem" | "key" | "length">} KeyValue */

/** A Storage-like map for when localStorage is missing or refuses (private modes, quotas).
 * @returns {KeyValue} */
export function memoryStorage() {
  /** @type {Map<string, string>} */
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? /** @type {string} */ (m.get(k)) : null),
    setItem: (k, v) => void m.set(k, String(v)),
    removeItem: (k) => void m.delete(k),
    key: (i) => [...m.keys()][i] ?? null,
    get length() { return m.size; },
  };
}

/** localStorage if it works here, else memory.
 * @returns {KeyValue} */
export function defaultStorage() {
  try {
    const ls = globalThis.localStorage;
    const probe = "__va_probe__";
    ls.setItem(probe, "1");
    ls.removeItem(probe);
    return ls;
  } catch {
    return memoryStorage();
  }
}

export class Store {
  /** @param {KeyValue} storage @param {string} prefix @param {string} pageId */
  constructor(storage, prefix, pageId) {
    this.storage = storage;
    this.prefix = prefix;
    this.key = `${prefix}:q:${pageId}`;
    /** @type {PageQueue} */
    this.queue = { hb: Date.now(), events: [], batches: [] };
    this.released = false;
    this.save();
  }

  /** @param {string} name @returns {any} */
  get(name) {
    try {
      const raw = this.storage.getItem(`${this.prefix}:${name}`);
      return raw === null ? null : JSON.parse(raw);
    } catch {
      return null;
    }
  }

  /** @param {string} name @param {unknown} value */
  set(name, value) {
    try {
      if (value === null || value === undefined) this.storage.removeItem(`${this.prefix}:${name}`);
      else this.storage.setItem(`${this.prefix}:${name}`, JSON.stringify(value));
    } catch {
      // quota: state other than the queue is a nicety; the queue itself is handled in save()
    }
  }

  /** Write this page's queue through. On a quota error the oldest events are dropped until it fits.
   * @returns {number} events dropped to make it fit */
  save() {
    this.queue.hb = this.released ? 0 : Date.now();
    let dropped = 0;
    for (;;) {
      try {
        this.storage.setItem(this.key, JSON.stringify(this.queue));
        return dropped;
      } catch {
        const n = Math.max(1, Math.ceil(this.size() / 4));
        if (this.size() === 0) return dropped; // nothing left to shed: keep it in memory
        dropped += this.dropOldest(n);
      }
    }
  }

  /** @returns {number} events queued or in batches */
  size() {
    return this.queue.events.length + this.queue.batches.reduce((n, b) => n + b.events.length, 0);
  }

  /** @param {QueuedEvent} ev @param {number} max @returns {number} how many old events were dropped */
  push(ev, max) {
    this.queue.events.push(ev);
    const over = this.size() - max;
    const dropped = (over > 0 ? this.dropOldest(over) : 0) + this.save();
    return dropped;
  }

  /** Drop the `n` oldest events not in flight (batches are older than loose events).
   * @param {number} n @param {Set<string>} [inflight] @returns {number} */
  dropOldest(n, inflight = new Set()) {
    let left = n;
    for (const b of this.queue.batches) {
      if (left === 0) break;
      if (inflight.has(b.batch_id)) continue;
      const k = Math.min(left, b.events.length);
      b.events.splice(0, k);
      left -= k;
    }
    this.queue.batches = this.queue.batches.filter((b) => b.events.length > 0);
    const k = Math.min(left, this.queue.events.length);
    this.queue.events.splice(0, k);
    return n - (left - k);
  }

  /** Cut every loose event into batches of at most `size`, each with a fresh batch_id.
   * @param {number} size @param {() => string} newId */
  cut(size, newId) {
    if (this.queue.events.length === 0) return;
    while (this.queue.events.length > 0) {
      this.queue.batches.push({ batch_id: newId(), events: this.queue.events.splice(0, size) });
    }
    this.save();
  }

  /** @param {string} id */
  remove(id) {
    this.queue.batches = this.queue.batches.filter((b) => b.batch_id !== id);
    this.save();
  }

  /** Replace a batch by its two halves (after a 413), each with a new batch_id.
   * @param {string} id @param {() => string} newId */
  split(id, newId) {
    const i = this.queue.batches.findIndex((b) => b.batch_id === id);
    if (i < 0) return;
    const evs = this.queue.batches[i].events;
    const half = Math.ceil(evs.length / 2);
    this.queue.batches.splice(i, 1, { batch_id: newId(), events: evs.slice(0, half) },
      { batch_id: newId(), events: evs.slice(half) });
    this.save();
  }

  clear() {
    this.queue.events = [];
    this.queue.batches = [];
    this.save();
  }

  /** Take over the queues of pages that left or died (heartbeat older than `staleMs`).
   * @param {number} staleMs @returns {number} events claimed */
  claimOrphans(staleMs) {
    const now = Date.now();
    /** @type {string[]} */
    const keys = [];
    for (let i = 0; i < this.storage.length; i++) {
      const k = this.storage.key(i);
      if (k && k !== this.key && k.startsWith(`${this.prefix}:q:`)) keys.push(k);
    }
    let claimed = 0;
    for (const k of keys) {
      /** @type {PageQueue | null} */
      let q = null;
      try {
        q = JSON.parse(this.storage.getItem(k) || "null");
      } catch {
        q = null;
      }
      if (q && typeof q.hb === "number" && now - q.hb < staleMs) continue;
      this.storage.removeItem(k);
      if (!q) continue;
      const seen = new Set(this.queue.batches.map((b) => b.batch_id));
      for (const b of q.batches || []) if (!seen.has(b.batch_id)) this.queue.batches.push(b);
      this.queue.events.push(...(q.events || []));
      claimed += (q.events || []).length + (q.batches || []).reduce((n, b) => n + b.events.length, 0);
    }
    if (claimed) {
      this.queue.events.sort((a, b) => a.t - b.t);
      this.save();
    }
    return claimed;
  }

  /** This page is leaving: let the next page claim the queue at once (heartbeat 0). */
  release() {
    this.released = true;
    this.save();
  }

  /** The page came back (bfcache): heartbeats again. */
  reclaim() {
    this.released = false;
    this.save();
  }
}
