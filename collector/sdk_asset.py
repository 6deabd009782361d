"""``GET /sdk.js``: the browser SDK, built from ``sdk/js`` by esbuild (one IIFE file defining the
global ``Analytics``), served by the collector itself so a page needs no CDN.

The file is a build output, not a committed artifact: ``scripts/run.sh`` and ``scripts/test.sh``
run ``npm ci && npm run build`` in ``sdk/js`` (esbuild pinned by its lockfile). Versioned by a
strong ``ETag`` (a hash of the bytes) and ``X-SDK-Version`` (the package's version); browsers keep
it ``SDK_MAX_AGE`` seconds and then revalidate (``If-None-Match`` -> 304).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from infra.service import error

SDK_DIR = Path(__file__).resolve().parent.parent / "sdk" / "js"
BUILT = {"/sdk.js": ("sdk.js", "text/javascript; charset=utf-8"),
         "/sdk.js.map": ("sdk.js.map", "application/json")}
SDK_MAX_AGE = 300


@dataclass(frozen=True)
class Built:
    stamp: tuple[int, int]
    body: bytes
    etag: str


_cache: dict[Path, Built] = {}


def _version() -> str:
    try:
        return str(json.loads((SDK_DIR / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def _load(path: Path) -> Built | None:
    try:
        st = path.stat()
    except OSError:
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _cache.get(path)
    if hit is not None and hit.stamp == stamp:
        return hit
    body = path.read_bytes()
    built = Built(stamp, body, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
    _cache[path] = built
    return built


async def sdk_js(request: Request) -> Response:
    """The browser SDK, one script defining the global Analytics (cacheable: ETag, 304 on If-None-Match)."""
    name, media_type = BUILT[request.url.path]
    built = _load(SDK_DIR / "dist" / name)
    if built is None:
        return error(503, "sdk_missing",
                     "the browser SDK is not built: run `npm ci && npm run build` in sdk/js "
                     "(scripts/run.sh and scripts/test.sh do)", headers={"Retry-After": "60"})
    headers = {"ETag": built.etag, "Cache-Control": f"public, max-age={SDK_MAX_AGE}",
               "X-SDK-Version": _version()}
    if built.etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(built.body, media_type=media_type, headers=headers)
