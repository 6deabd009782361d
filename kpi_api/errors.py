"""Errors a KPI API route raises; ``guard`` turns them into ``{"error", "detail"}`` responses."""

from __future__ import annotations


class HTTPError(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers


class BadRequest(HTTPError):
    def __init__(self, detail: str) -> None:
        super().__init__(400, "bad_request", detail)
