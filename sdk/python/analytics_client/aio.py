"""The asyncio client: ``track()`` is a plain call that queues; one task sends.

    async with AsyncClient("http://127.0.0.1:5000", "KEY", app_version="1.0") as client:
        client.identify("village-123")
        client.track("dialogue_open", {"dialogue_id": "elder"})
    # leaving the block flushes (asyncio has no atexit: use the block or await aclose())
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from analytics_client.core import Batch, Config, Core, Stats


class AsyncClient:
    def __init__(self, endpoint: str, write_key: str, *, transport: httpx.AsyncBaseTransport | None = None,
                 **options: Any) -> None:
        self.config = Config(endpoint, write_key, **options)
        self._core = Core(self.config)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._flush_wanted = False
        self._http = httpx.AsyncClient(timeout=self.config.timeout, headers=self.config.headers(),
                                       transport=transport)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsyncClient:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="analytics-client")

    def identify(self, actor: str) -> None:
        if not actor:
            raise ValueError("identify needs a non-empty id")
        self._core.actor = actor

    def track(self, event_name: str, payload: dict[str, Any] | None = None, *, actor: str | None = None,
              session_id: str | None = None, version: int = 1, ts: float | None = None) -> str | None:
        eid = self._core.add(event_name, payload, actor=actor, session_id=session_id, version=version, ts=ts)
        self._poke()
        return eid

    def enqueue(self, event: dict[str, Any]) -> str | None:
        eid = self._core.add_wire(event)
        self._poke()
        return eid

    async def flush(self, timeout: float | None = None) -> bool:
        self.start()
        self._flush_wanted = True
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                while self._core.pending() or not self._idle.is_set():
                    self._wake.set()
                    await asyncio.sleep(0.01)
        except TimeoutError:
            return False
        return True

    def opt_out(self) -> None:
        self._core.opt_out()

    def opt_in(self) -> None:
        self._core.enabled = True

    def is_analytics_enabled(self) -> bool:
        return self._core.enabled

    @property
    def stats(self) -> Stats:
        return Stats(**{**vars(self._core.stats), "queued": self._core.pending()})

    async def aclose(self, timeout: float = 10.0) -> bool:
        drained = await self.flush(timeout)
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._http.aclose()
        return drained

    def _poke(self) -> None:
        if len(self._core.queue) >= self.config.flush_at:
            self._wake.set()

    async def _run(self) -> None:
        while not self._closing:
            if not (self._flush_wanted or self._core.batch or len(self._core.queue) >= self.config.flush_at):
                try:
                    await asyncio.wait_for(self._wake.wait(), self.config.flush_interval)
                except TimeoutError:
                    pass
            self._wake.clear()
            batch = self._core.next_batch()
            if batch is None:
                self._flush_wanted = False
                continue
            self._idle.clear()
            wait = await self._send(batch)
            self._idle.set()
            if wait > 0:
                await asyncio.sleep(wait)

    async def _send(self, batch: Batch) -> float:
        body = self._core.body(batch)
        self._core.stats.requests += 1
        t0 = time.time()
        try:
            resp = await self._http.post(self.config.url, content=body)
        except httpx.HTTPError:
            return self._core.failed() if self._core.batch is batch else 0.0
        self._core.learn_clock(resp.headers.get("X-Server-Time"), t0, time.time())
        if self._core.batch is not batch:
            return 0.0
        return self._core.answered(batch, resp.status_code, resp.headers.get("Retry-After"))
