"""uvicorn's httptools protocol with the limits a server on the internet needs.

uvicorn alone waits for ever for a client that sends its headers and then stalls, or sends its
body a byte at a time, and buffers a header of any size. This subclass adds, per connection:

- a header size cap (``HTTP_MAX_HEADER_BYTES``): the request line and headers, counted as the bytes
  arrive, so an unfinished header can never hold more than about one read in memory: ``431``;
- a header deadline (``HTTP_HEADER_TIMEOUT_SECONDS``) from the connection's (or the request's)
  first byte to the end of its headers: ``408``;
- a body deadline (``HTTP_BODY_TIMEOUT_SECONDS``) from the end of the headers to the end of the
  body, whatever the pace: ``408``, and the application sees a disconnect;
- a cap on open connections (``HTTP_MAX_CONNECTIONS``): a connection over it is answered ``503``
  with ``Retry-After`` as soon as it opens.

Each refusal is ``{"error", "detail"}`` with ``Connection: close``; the connection is then
half-closed and closed after a short linger in which further input is discarded, so that the
client reads the answer instead of a reset. ``uvicorn.run(..., http=protocol_class(limits))``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from schemas.settings import Settings

log = logging.getLogger("infra.http_limits")
LINGER_S = 1.0  # how long a refused connection's input is read and dropped before it is closed
LINGER_MAX_BYTES = 1 << 20  # ... or until this much has been dropped
REFUSED = Counter(
    "http_connections_refused", "Connections answered by the HTTP limits and closed", ["reason"]
)


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(s.http_max_header_bytes, s.http_header_timeout_seconds,
                   s.http_body_timeout_seconds, s.http_max_connections)


def protocol_class(limits: Limits) -> type[HttpToolsProtocol]:
    """The protocol class to hand to uvicorn (``http=``), bound to these limits."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: Limits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._refused = False
        self._dropped = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # -- connection ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, "too_many_connections",
                         f"over HTTP_MAX_CONNECTIONS={self.limits.max_connections}, retry",
                         {"Retry-After": "1"})
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._dropped += len(data)
            if self._dropped > LINGER_MAX_BYTES:
                self.transport.close()
            return
        super().data_received(data)
        if self._in_head and not self._refused:
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse_head()

    # -- parser callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        self._cancel(self._header_timer)
        self._header_timer = None
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.limits.max_header_bytes:
            self._refuse_head()
            return
        super().on_headers_complete()
        self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_late)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel(self._body_timer)
        self._body_timer = None
        if not self._refused:
            super().on_message_complete()

    # -- limits ----------------------------------------------------------------------------
    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_late)

    def _head_late(self) -> None:
        self._header_timer = None
        if self._in_head and not self._refused and not self.transport.is_closing():
            self._refuse(408, "request_timeout",
                         f"headers not received within HTTP_HEADER_TIMEOUT_SECONDS="
                         f"{self.limits.header_timeout_s:g}")

    def _body_late(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body or self._refused or self.transport.is_closing():
            return
        started = cycle.response_started
        # the application waiting for the rest of the body sees the client go away
        cycle.disconnected = True
        cycle.message_event.set()
        if started:  # it has answered already: nothing more can be said on this connection
            REFUSED.labels("body_timeout").inc()
            self.transport.close()
            return
        self._refuse(408, "request_timeout",
                     f"body not received within HTTP_BODY_TIMEOUT_SECONDS={self.limits.body_timeout_s:g}")

    def _refuse_head(self) -> None:
        self._refuse(431, "header_too_large",
                     f"request line and headers over HTTP_MAX_HEADER_BYTES={self.limits.max_header_bytes}")

    def _refuse(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        """Answer, half-close, drop further input for a moment, then close."""
        self._refused = True
        self._cancel_timers()
        self.connections.discard(self)  # a lingering connection holds no place under the cap
        REFUSED.labels(code).inc()
        log.info("refused a connection: %s", code)
        body = json.dumps({"error": code, "detail": detail}).encode()
        head = [STATUS_LINE[status], b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body), b"connection: close\r\n"]
        head += [f"{k}: {v}\r\n".encode() for k, v in (headers or {}).items()]
        head += [b"%s: %s\r\n" % (n, v) for n, v in self.server_state.default_headers]
        self.transport.write(b"".join(head) + b"\r\n" + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self._close)

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()

    def _cancel_timers(self) -> None:
        self._cancel(self._header_timer)
        self._cancel(self._body_timer)
        self._header_timer = self._body_timer = None


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The ``uvicorn.run`` keyword arguments that put these limits on a server."""
    # not uvicorn's own limit_concurrency: its 503 is plain text; the cap is enforced above, as
    # each connection opens, and answered in JSON
    return {"http": protocol_class(Limits.from_settings(settings))}
