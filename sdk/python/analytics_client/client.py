"""The thread client: ``track()`` never blocks on the network; a daemon thread sends."""

from __future__ import annotations

import atexit
import threading
import time
from typing import Any

import httpx

from analytics_client.core import Config, Core, Stats


class Client:
    """``Client(endpoint, write_key, app_version=..., platform=..., flush_at=25, flush_interval=5.0,
    sample_rate=1.0, max_queue_size=10_000)``; see ``Config`` for the rest."""

    def __init__(self, endpoint: str, write_key: str, *, shutdown_timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None, **options: Any) -> None:
        self.config = Config(endpoint, write_key, **options)
        self._core = Core(self.config)
        self._cond = threading.Condition()
        self._flush_wanted = False
        self._closing = False
        self._busy = False
        self._shutdown_timeout = shutdown_timeout
        self._http = httpx.Client(timeout=self.config.timeout, headers=self.config.headers(),
                                  transport=transport)
        self._thread = threading.Thread(target=self._run, name="analytics-client", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- public API ----------------------------------------------------------------------------
    def identify(self, actor: str) -> None:
        if not actor:
            raise ValueError("identify needs a non-empty id")
        with self._cond:
            self._core.actor = actor

    def track(self, event_name: str, payload: dict[str, Any] | None = None, *, actor: str | None = None,
              session_id: str | None = None, version: int = 1, ts: float | None = None) -> str | None:
        """Queue one catalog event (``ts``: epoch seconds, default now); returns its event_id, or
        None when analytics is off or the actor is sampled out."""
        with self._cond:
            eid = self._core.add(event_name, payload, actor=actor, session_id=session_id,
                                 version=version, ts=ts)
            self._wake_if_full()
        return eid

    def enqueue(self, event: dict[str, Any]) -> str | None:
        """Queue a ready catalog event in wire form (its ``event_id`` and ``ts_utc`` are kept)."""
        with self._cond:
            eid = self._core.add_wire(event)
            self._wake_if_full()
        return eid

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued; True once the queue is empty (False: timed out, still queued)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flush_wanted = True
            self._cond.notify_all()
            while self._core.pending() or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def opt_out(self) -> None:
        """Nothing more is sent; what is queued is discarded."""
        with self._cond:
            self._core.opt_out()
            self._cond.notify_all()

    def opt_in(self) -> None:
        with self._cond:
            self._core.enabled = True

    def is_analytics_enabled(self) -> bool:
        return self._core.enabled

    @property
    def stats(self) -> Stats:
        with self._cond:
            return Stats(**{**vars(self._core.stats), "queued": self._core.pending()})

    def close(self, timeout: float | None = None) -> bool:
        """Flush (up to ``timeout``, default ``shutdown_timeout``) and stop the thread. Runs at exit."""
        if self._closing:
            return not self._core.pending()
        drained = self.flush(self._shutdown_timeout if timeout is None else timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(1.0)
        self._http.close()
        atexit.unregister(self.close)
        return drained

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the sender thread ---------------------------------------------------------------------
    def _wake_if_full(self) -> None:
        if len(self._core.queue) >= self.config.flush_at:
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                deadline = time.monotonic() + self.config.flush_interval
                while not (self._closing or self._flush_wanted or self._core.batch is not None
                           or len(self._core.queue) >= self.config.flush_at):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._closing:
                    return
                batch = self._core.next_batch()
                if batch is None:
                    self._flush_wanted = False
                    self._cond.notify_all()
                    continue
                body = self._core.body(batch)
                self._busy = True
                self._core.stats.requests += 1
            wait = self._send(batch, body)
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                if wait > 0:
                    self._cond.wait_for(lambda: self._closing, wait)

    def _send(self, batch: Any, body: bytes) -> float:
        t0 = time.time()
        try:
            resp = self._http.post(self.config.url, content=body)
        except httpx.HTTPError:
            with self._cond:
                return self._core.failed() if self._core.batch is batch else 0.0
        with self._cond:
            self._core.learn_clock(resp.headers.get("X-Server-Time"), t0, time.time())
            if self._core.batch is not batch:  # opted out meanwhile
                return 0.0
            return self._core.answered(batch, resp.status_code, resp.headers.get("Retry-After"))
