// The browser client: tracks into the persistent queue, sends batches, retries, honours consent.

import { backoffDelay, classify, retryAfterMs } from "./retry.js";
import { Store, defaultStorage } from "./store.js";
import { iso, sampled, uuid4 } from "./util.js";

export const VERSION = "0.1.0";
const EVENTS_PATH = "/api/analytics/events";
const KEEPALIVE_BUDGET = 60_000; // browsers allow 64 KiB of keepalive bodies in flight

/**
 * @typedef {object} Config
 * @property {string} endpoint the collector's base URL (or its full `/api/analytics/events` URL)
 * @property {string} writeKey sent as `X-Write-Key`
 * @property {string} [appVersion] `app_version` of every event
 * @property {string} [platform] `platform` of every event (default "web")
 * @property {number} [flushAt] send when this many events are queued (default 25)
 * @property {number} [flushIntervalMs] and at least this often (default 5000)
 * @property {number} [sampleRate] share of actors whose events are kept, decided per actor (default 1)
 * @property {boolean} [enabled] the default when the user has made no choice (default true)
 * @property {boolean} [honorDoNotTrack] `navigator.doNotTrack` disables analytics (default true)
 * @property {boolean} [optOutPing] optOut() sends one empty request with `X-Analytics-Opt-Out: 1` (default false)
 * @property {boolean} [sessions] emit session_start / session_end on open, hide and timeout (default true)
 * @property {number} [sessionTimeoutMs] inactivity that ends a session (default 30 min)
 * @property {number} [maxQueueSize] events kept at most; the oldest are dropped first (default 1000)
 * @property {number} [retryBaseMs] first backoff ceiling (default 1000)
 * @property {number} [retryMaxMs] backoff cap (default 60000)
 * @property {string} [storageKey] prefix of the persisted keys (default "village-analytics")
 * @property {import("./store.js").KeyValue} [storage] where to persist (default localStorage)
 */

/** @typedef {{queued: number, sent: number, dropped: number, rejected: number, sampledOut: number,
 *   disabled: number, retries: number, requests: number}} Stats */

const DEFAULTS = {
  appVersion: "0.0.0", platform: "web", flushAt: 25, flushIntervalMs: 5000, sampleRate: 1,
  enabled: true, honorDoNotTrack: true, optOutPing: false, sessions: true,
  sessionTimeoutMs: 30 * 60_000, maxQueueSize: 1000, retryBaseMs: 1000, retryMaxMs: 60_000,
  storageKey: "village-analytics",
};

/** @returns {boolean} */
function doNotTrack() {
  const nav = /** @type {any} */ (globalThis.navigator || {});
  const v = nav.doNotTrack ?? /** @type {any} */ (globalThis).doNotTrack ?? nav.msDoNotTrack;
  return v === "1" || v === "yes" || v === 1;
}

export class AnalyticsClient {
  /** @param {Config} config */
  constructor(config) {
    if (!config || !config.endpoint || !config.writeKey) {
      throw new TypeError("Analytics.init needs {endpoint, writeKey}");
    }
    this.config = { ...DEFAULTS, ...config };
    const base = this.config.endpoint.replace(/\/+$/, "");
    this.url = base.endsWith(EVENTS_PATH) ? base : base + EVENTS_PATH;
    this.store = new Store(this.config.storage || defaultStorage(), this.config.storageKey, uuid4());
    /** @type {Set<string>} */
    this.inflight = new Set();
    /** @type {Stats} */
    this.counters = { queued: 0, sent: 0, dropped: 0, rejected: 0, sampledOut: 0, disabled: 0,
      retries: 0, requests: 0 };
    /** @type {{attempts: number, retryAt: number}} */
    this.backoff = this.store.get("backoff") || { attempts: 0, retryAt: 0 };
    /** @type {number} server clock minus ours, ms (from X-Server-Time) */
    this.offset = Number(this.store.get("offset")) || 0;
    /** @type {string | null} */
    this.actor = this.store.get("actor");
    if (!this.actor) {
      this.anonymous = this.store.get("anon") || `anon-${uuid4()}`;
      this.store.set("anon", this.anonymous);
    } else {
      this.anonymous = this.actor;
    }
    /** @type {{id: string, start: number, last: number, announced: boolean, resumed: boolean} | null} */
    this.session = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.retryTimer = null;
    this.flushQueued = false;
    this.staleMs = Math.max(3 * this.config.flushIntervalMs, 10_000);
    this.store.claimOrphans(this.staleMs);
    /** @type {[EventTarget, string, EventListener][]} */
    this.listeners = [];
    this.listen();
    this.interval = setInterval(() => this.tick(), this.config.flushIntervalMs);
    if (this.isAnalyticsEnabled() && this.visible()) this.beginSession(false);
    if (this.store.size() > 0) this.scheduleFlush();
  }

  // -- public API ---------------------------------------------------------------------------

  /** Set the actor (`anon_village_id`); the collector hashes it, the client never does.
   * @param {string} actor */
  identify(actor) {
    if (typeof actor !== "string" || actor.length === 0) throw new TypeError("identify needs a non-empty id");
    if (actor === this.actor) return;
    const s = this.session;
    if (s && s.announced) this.endSession("quit", Date.now());
    this.actor = actor;
    this.store.set("actor", actor);
    if (this.isAnalyticsEnabled()) {
      if (!this.session) this.beginSession(s !== null);
      this.announce();
    }
  }

  /** Queue one catalog event. Dropped (and counted) while analytics is disabled or the actor is sampled out.
   * @param {string} eventName
   * @param {Record<string, unknown>} [payload]
   * @param {{version?: number}} [options]
   * @returns {string | null} the event_id, or null when not queued */
  track(eventName, payload = {}, options = {}) {
    if (!this.isAnalyticsEnabled()) {
      this.counters.disabled++;
      return null;
    }
    const now = Date.now();
    this.touchSession(now);
    const id = this.enqueue(eventName, payload, now, options.version || 1);
    if (this.session) this.session.last = now;
    return id;
  }

  /** Send everything queued now. Resolves when this round of requests has settled (offline or
   * backing off: at once, the queue stays for later).
   * @param {{keepalive?: boolean}} [options]
   * @returns {Promise<Stats>} */
  async flush(options = {}) {
    const keepalive = !!options.keepalive;
    if (!this.isAnalyticsEnabled()) return this.stats();
    this.store.cut(this.config.flushAt, uuid4);
    if (globalThis.navigator && navigator.onLine === false) return this.stats(); // the online event resumes
    const wait = this.backoff.retryAt - Date.now();
    if (wait > 0 && !keepalive) {
      this.armRetry(wait);
      return this.stats();
    }
    let budget = KEEPALIVE_BUDGET;
    /** @type {Promise<void>[]} */
    const sends = [];
    for (const batch of this.store.queue.batches) {
      if (this.inflight.has(batch.batch_id)) continue;
      const body = this.body(batch);
      const useKeepalive = keepalive && body.length <= budget;
      if (useKeepalive) budget -= body.length;
      sends.push(this.send(batch, body, useKeepalive));
    }
    await Promise.all(sends);
    return this.stats();
  }

  /** The user opts out: remembered, what is queued is discarded, nothing more is sent. */
  optOut() {
    const was = this.isAnalyticsEnabled();
    this.store.set("consent", "out");
    this.store.clear();
    this.session = null;
    if (was && this.config.optOutPing) {
      // one non-identifying state change: no write key, no events
      fetch(this.url, { method: "POST", keepalive: true, credentials: "omit",
        headers: { "Content-Type": "application/json", "X-Analytics-Opt-Out": "1" },
        body: '{"events":[]}' }).catch(() => {});
    }
  }

  /** The user opts (back) in: remembered across reloads. */
  optIn() {
    this.store.set("consent", "in");
    if (this.isAnalyticsEnabled() && !this.session && this.visible()) this.beginSession(false);
  }

  /** @returns {boolean} false under Do Not Track, after optOut(), or when disabled by config and not opted in */
  isAnalyticsEnabled() {
    if (this.config.honorDoNotTrack && doNotTrack()) return false;
    const consent = this.store.get("consent");
    if (consent === "out") return false;
    if (consent === "in") return true;
    return !!this.config.enabled;
  }

  /** Counters since this page loaded, and what is queued now.
   * @returns {Stats} */
  stats() {
    return { ...this.counters, queued: this.store.size() };
  }

  /** Stop timers and listeners (the queue stays persisted). */
  shutdown() {
    clearInterval(this.interval);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const [target, name, fn] of this.listeners) target.removeEventListener(name, fn);
  }

  // -- queue and sessions -------------------------------------------------------------------

  /** @param {string} name @param {Record<string, unknown>} payload @param {number} t @param {number} version
   * @param {string | null} [sessionId] default: the current session's
   * @returns {string | null} */
  enqueue(name, payload, t, version, sessionId) {
    if (!this.isAnalyticsEnabled()) return null; // also session events: nothing is queued while disabled
    const actor = this.actor || this.anonymous;
    if (!sampled(actor, this.config.sampleRate)) {
      this.counters.sampledOut++;
      return null;
    }
    const ev = {
      event_id: uuid4(), event_name: name, event_version: version, t, actor,
      session_id: sessionId !== undefined ? sessionId : this.session ? this.session.id : null, payload: payload || {},
      app_version: this.config.appVersion, platform: this.config.platform,
    };
    this.counters.dropped += this.store.push(ev, this.config.maxQueueSize);
    this.counters.queued++;
    if (this.store.queue.events.length >= this.config.flushAt) this.scheduleFlush();
    return ev.event_id;
  }

  /** @param {boolean} resumed */
  beginSession(resumed) {
    if (!this.config.sessions) return;
    const now = Date.now();
    this.session = { id: uuid4(), start: now, last: now, announced: false, resumed };
    if (this.actor) this.announce(); // a known actor: the session starts now; else at the first event
  }

  announce() {
    const s = this.session;
    if (!s || s.announced || !this.config.sessions) return;
    s.announced = true;
    this.enqueue("session_start", { resumed: s.resumed }, s.start, 1);
  }

  /** Before an event: end a timed-out session, start one if needed, and announce it.
   * @param {number} now */
  touchSession(now) {
    if (!this.config.sessions) return;
    const s = this.session;
    if (s && now - s.last > this.config.sessionTimeoutMs) {
      if (s.announced) this.endSession("timeout", s.last);
      else this.session = null;
    }
    if (!this.session) this.beginSession(s !== null);
    this.announce();
  }

  /** @param {"background" | "timeout" | "quit"} reason @param {number} at */
  endSession(reason, at) {
    const s = this.session;
    this.session = null;
    if (!s || !s.announced) return;
    this.enqueue("session_end", { reason, duration_ms: Math.max(0, at - s.start) }, at, 1, s.id);
  }

  // -- sending ------------------------------------------------------------------------------

  scheduleFlush() {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      this.flush().catch(() => {});
    });
  }

  /** @param {number} ms */
  armRetry(ms) {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.flush().catch(() => {});
    }, ms);
  }

  /** The wire body, with `sent_at` stamped now: every attempt gets its own.
   * @param {import("./store.js").QueuedBatch} batch @returns {string} */
  body(batch) {
    const off = this.offset;
    return JSON.stringify({
      batch_id: batch.batch_id,
      sent_at: iso(Date.now() + off),
      events: batch.events.map((e) => {
        /** @type {Record<string, unknown>} */
        const w = {
          event_id: e.event_id, event_name: e.event_name, event_version: e.event_version,
          ts_utc: iso(e.t + off), client_ts: iso(e.t), anon_village_id: e.actor,
          app_version: e.app_version, platform: e.platform, payload: e.payload,
        };
        if (e.session_id) w.session_id = e.session_id;
        return w;
      }),
    });
  }

  /** @param {import("./store.js").QueuedBatch} batch @param {string} body @param {boolean} keepalive */
  async send(batch, body, keepalive) {
    this.inflight.add(batch.batch_id);
    const t0 = Date.now();
    /** @type {Response} */
    let res;
    try {
      this.counters.requests++;
      res = await fetch(this.url, {
        method: "POST", body, keepalive, credentials: "omit", mode: "cors",
        headers: { "Content-Type": "application/json", "X-Write-Key": this.config.writeKey },
      });
    } catch {
      this.inflight.delete(batch.batch_id);
      this.failed(0); // unknown outcome: resent later with the same ids, answered as duplicates
      return;
    }
    this.inflight.delete(batch.batch_id);
    this.learnClock(res, t0, Date.now());
    const outcome = classify(res.status, batch.events.length);
    if (outcome === "done") {
      this.store.remove(batch.batch_id);
      this.counters.sent += batch.events.length;
      this.backoff = { attempts: 0, retryAt: 0 };
      this.store.set("backoff", null);
      if (this.store.queue.batches.some((b) => !this.inflight.has(b.batch_id))) this.scheduleFlush();
    } else if (outcome === "split") {
      this.store.split(batch.batch_id, uuid4);
      this.scheduleFlush();
    } else if (outcome === "drop") {
      this.store.remove(batch.batch_id);
      this.counters.rejected += batch.events.length;
    } else {
      this.failed(retryAfterMs(res.headers.get("Retry-After"), Date.now()));
    }
  }

  /** Back off: full jitter, never sooner than the server's Retry-After.
   * @param {number} retryAfter ms */
  failed(retryAfter) {
    this.counters.retries++;
    const jitter = backoffDelay(this.backoff.attempts, this.config.retryBaseMs, this.config.retryMaxMs);
    const wait = Math.max(jitter, retryAfter);
    const retryAt = Math.max(this.backoff.retryAt, Date.now() + wait);
    this.backoff = { attempts: this.backoff.attempts + 1, retryAt };
    this.store.set("backoff", this.backoff);
    this.armRetry(retryAt - Date.now());
  }

  /** Server clock minus ours, from `X-Server-Time` (CORS exposes it), taking the midpoint of the round trip.
   * @param {Response} res @param {number} t0 @param {number} t1 */
  learnClock(res, t0, t1) {
    const server = Number(res.headers.get("X-Server-Time"));
    if (!Number.isFinite(server) || server <= 0) return;
    this.offset = Math.round(server - (t0 + t1) / 2);
    this.store.set("offset", this.offset);
  }

  // -- page lifecycle -----------------------------------------------------------------------

  /** @returns {boolean} */
  visible() {
    return typeof document === "undefined" || document.visibilityState !== "hidden";
  }

  tick() {
    this.store.save(); // heartbeat
    this.store.claimOrphans(this.staleMs);
    const s = this.session;
    if (s && s.announced && Date.now() - s.last > this.config.sessionTimeoutMs) this.endSession("timeout", s.last);
    if (this.store.size() > 0) this.flush().catch(() => {});
  }

  hidden() {
    if (this.isAnalyticsEnabled()) this.endSession("background", Date.now());
    this.flush({ keepalive: true }).catch(() => {});
  }

  listen() {
    if (typeof window === "undefined") return;
    /** @param {EventTarget} target @param {string} name @param {(e: any) => void} fn */
    const on = (target, name, fn) => {
      target.addEventListener(name, fn);
      this.listeners.push([target, name, fn]);
    };
    on(window, "online", () => this.flush().catch(() => {}));
    on(document, "visibilitychange", () => {
      if (document.visibilityState === "hidden") this.hidden();
      else if (this.isAnalyticsEnabled() && !this.session) this.beginSession(true);
    });
    on(window, "pagehide", () => {
      this.hidden();
      this.store.release();
    });
    on(window, "pageshow", (/** @type {PageTransitionEvent} */ e) => {
      if (!e.persisted) return;
      this.store.reclaim();
      if (this.isAnalyticsEnabled() && !this.session) this.beginSession(true);
    });
  }
}

/** Start a client. Several may live in one page; each persists under `storageKey`.
 * @param {Config} config
 * @returns {AnalyticsClient} */
export function init(config) {
  return new AnalyticsClient(config);
}
