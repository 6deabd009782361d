"""Reading a request body under a cap, before any parsing, with gzip decoded under a cap too."""

from __future__ import annotations

import zlib

from starlette.requests import Request


class BodyError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyError(413, "body_too_large", f"body is {declared} bytes, over {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyError(413, "body_too_large", f"body is over {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise BodyError(415, "unsupported_encoding", f"Content-Encoding {encoding!r}: use gzip")
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BodyError(400, "malformed_gzip", f"gzip body could not be decoded: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyError(413, "body_too_large", f"decompressed body is over {limit} bytes")
    if not inflater.eof:
        raise BodyError(400, "malformed_gzip", "gzip body is truncated")
    return out
